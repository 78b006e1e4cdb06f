"""fattn.scaled_dot_product_attention on NumPy arrays against the float64
reference: layouts and strides, dtypes, masks, GQA, causal kinds, head dims,
fully masked rows, errors (with out= untouched), threads, no copies."""

import sys
import threading
import time
import tracemalloc

import numpy as np
import pytest

import fattn
from reference import attention, tolerance

rng = np.random.default_rng(7)


def rand(*shape, dtype=np.float32):
    return rng.standard_normal(shape).astype(dtype)


def check(out, ref, dtype_name="float32"):
    out64 = out.astype(np.float64)
    err = np.abs(out64 - ref).max() if out.size else 0.0
    tol = tolerance(dtype_name) * max(1.0, np.abs(ref).max())
    assert err <= tol, f"max |fattn - ref| = {err:.3g} > {tol:.3g}"
    assert out.size == 0 or np.abs(out64).max() > 0 or np.abs(ref).max() == 0, "all zeros"


# ---- layouts and strides ----------------------------------------------------------------


def bshd(b, s, h, d):
    """A (B, H, S, D) view of (B, S, H, D) storage: the layout of a fused QKV."""
    return rand(b, s, h, d).transpose(0, 2, 1, 3)


@pytest.mark.parametrize("layout", ["bhsd", "bshd", "dim_major", "strided", "reversed"])
def test_layouts(layout):
    B, H, L, S, E = 2, 3, 13, 21, 16
    if layout == "bhsd":
        q, k, v = rand(B, H, L, E), rand(B, H, S, E), rand(B, H, S, E)
    elif layout == "bshd":
        q, k, v = bshd(B, L, H, E), bshd(B, S, H, E), bshd(B, S, H, E)
    elif layout == "dim_major":  # k stored as (B, H, E, S), the layout of a transposed cache
        q, v = rand(B, H, L, E), rand(B, H, S, E)
        k = rand(B, H, E, S).swapaxes(-1, -2)
    elif layout == "strided":  # every other element of every dim
        q = rand(2 * B, 2 * H, 2 * L, 2 * E)[::2, ::2, ::2, ::2]
        k = rand(2 * B, 2 * H, 2 * S, 2 * E)[::2, ::2, ::2, ::2]
        v = rand(B, H, S, 3 * E)[..., 1::3]
    else:  # heads and batch swapped in storage
        q = rand(H, B, L, E).swapaxes(0, 1)
        k, v = rand(H, B, S, E).swapaxes(0, 1), rand(H, B, S, E).swapaxes(0, 1)
    assert layout == "bhsd" or not q.flags.c_contiguous or not k.flags.c_contiguous
    out = fattn.scaled_dot_product_attention(q, k, v)
    assert out.shape == (B, H, L, E) and out.dtype == np.float32
    check(out, attention(q, k, v)[0])


@pytest.mark.parametrize("shape", [(9, 8), (3, 9, 8), (2, 3, 9, 8), (2, 2, 3, 9, 8)])
def test_ranks(shape):
    q = rand(*shape)
    k = rand(*shape[:-2], 11, 8)
    v = rand(*shape[:-2], 11, 5)
    out = fattn.scaled_dot_product_attention(q, k, v)
    assert out.shape == shape[:-1] + (5,)
    check(out, attention(q, k, v)[0])


def test_unmergeable_leading_dims():
    # (N, G, H, L, E) whose N and G cannot be merged into one stride: one call per N
    q = rand(3, 2, 4, 7, 8).swapaxes(0, 1)
    k = rand(3, 2, 4, 9, 8).swapaxes(0, 1)
    v = rand(3, 2, 4, 9, 8).swapaxes(0, 1)
    mask = rng.random((2, 3, 1, 7, 9)) > 0.3
    kv_lens = np.array([9, 5, 1, 0, 7, 3])
    out, lse = fattn.scaled_dot_product_attention(q, k, v, mask, kv_lens=kv_lens, return_lse=True)
    ref, ref_lse = attention(q.reshape(6, 4, 7, 8), k.reshape(6, 4, 9, 8), v.reshape(6, 4, 9, 8),
                             mask.repeat(4, axis=2).reshape(6, 4, 7, 9), kv_lens=kv_lens)
    check(out.reshape(6, 4, 7, 8), ref)
    np.testing.assert_allclose(lse.reshape(6, 4, 7), ref_lse, atol=1e-5)


# ---- dtypes -------------------------------------------------------------------------------


def test_float16():
    q, k, v = (rand(2, 4, 33, 64, dtype=np.float16) for _ in range(3))
    out = fattn.scaled_dot_product_attention(q, k, v, is_causal=True)
    assert out.dtype == np.float16
    check(out, attention(q, k, v, causal="top_left")[0], "float16")


def test_bfloat16_ml_dtypes():
    ml_dtypes = pytest.importorskip("ml_dtypes", reason="bfloat16 arrays need ml_dtypes")
    bf = ml_dtypes.bfloat16
    q, k, v = (rand(1, 2, 17, 32).astype(bf) for _ in range(3))
    out = fattn.scaled_dot_product_attention(q, k, v)
    assert out.dtype == bf
    check(out, attention(q.astype(np.float64), k.astype(np.float64), v.astype(np.float64))[0],
          "bfloat16")


def test_mixed_dtypes_out_follows_query():
    q = rand(1, 2, 5, 16)
    k, v = rand(1, 2, 6, 16, dtype=np.float16), rand(1, 2, 6, 16, dtype=np.float16)
    out = fattn.scaled_dot_product_attention(q, k, v)
    assert out.dtype == np.float32
    check(out, attention(q, k, v)[0], "float16")


# ---- masks, causal, GQA, head dims -----------------------------------------------------


@pytest.mark.parametrize("mask_shape", [(7, 10), (2, 1, 7, 10), (2, 1, 1, 10), (1, 3, 7, 10),
                                        (10,), (2, 3, 7, 10)])
@pytest.mark.parametrize("kind", ["bool", "float"])
def test_masks_broadcast(mask_shape, kind):
    q, k, v = rand(2, 3, 7, 16), rand(2, 3, 10, 16), rand(2, 3, 10, 16)
    if kind == "bool":
        mask = rng.random(mask_shape) > 0.4
    else:
        mask = np.where(rng.random(mask_shape) > 0.3, rand(*mask_shape), -np.inf).astype(np.float32)
    out = fattn.scaled_dot_product_attention(q, k, v, attn_mask=mask)
    check(out, attention(q, k, v, mask)[0])


def test_float_mask_other_precisions_converted():
    q, k, v = rand(1, 2, 5, 8), rand(1, 2, 6, 8), rand(1, 2, 6, 8)
    mask = rand(5, 6).astype(np.float64)
    out = fattn.scaled_dot_product_attention(q, k, v, attn_mask=mask)
    check(out, attention(q, k, v, mask.astype(np.float32))[0])


@pytest.mark.parametrize("L,S", [(9, 9), (5, 17), (17, 5), (1, 33), (77, 130)])
@pytest.mark.parametrize("causal", ["top_left", "bottom_right"])
def test_causal(L, S, causal):
    q, k, v = rand(1, 2, L, 32), rand(1, 2, S, 32), rand(1, 2, S, 24)
    out, lse = fattn.scaled_dot_product_attention(q, k, v, causal=causal, return_lse=True)
    ref, ref_lse = attention(q, k, v, causal=causal)
    check(out, ref)
    np.testing.assert_allclose(lse, ref_lse, atol=1e-5)
    if causal == "top_left":
        same = fattn.scaled_dot_product_attention(q, k, v, is_causal=True)
        np.testing.assert_array_equal(same, out)


def test_causal_with_mask():
    q, k, v = rand(1, 2, 8, 16), rand(1, 2, 12, 16), rand(1, 2, 12, 16)
    mask = rng.random((8, 12)) > 0.5
    out = fattn.scaled_dot_product_attention(q, k, v, mask, causal="bottom_right")
    check(out, attention(q, k, v, mask, causal="bottom_right")[0])


@pytest.mark.parametrize("hq,hkv", [(8, 2), (6, 3), (4, 1)])
def test_gqa(hq, hkv):
    q, k, v = rand(2, hq, 9, 32), rand(2, hkv, 14, 32), rand(2, hkv, 14, 32)
    out = fattn.scaled_dot_product_attention(q, k, v, enable_gqa=True)
    check(out, attention(q, k, v)[0])


@pytest.mark.parametrize("E,Ev", [(1, 1), (3, 5), (16, 16), (64, 64), (80, 80), (96, 64),
                                  (128, 128), (200, 72), (256, 256)])
def test_head_dims(E, Ev):
    q, k, v = rand(1, 2, 19, E), rand(1, 2, 23, E), rand(1, 2, 23, Ev)
    out = fattn.scaled_dot_product_attention(q, k, v, scale=0.7 / np.sqrt(E))
    check(out, attention(q, k, v, scale=0.7 / np.sqrt(E))[0])


def test_fully_masked_rows_give_zeros():
    q, k, v = rand(2, 2, 6, 8), rand(2, 2, 5, 8), rand(2, 2, 5, 8)
    mask = rng.random((2, 1, 6, 5)) > 0.5
    mask[:, :, 2] = False
    fmask = np.where(mask, 0.0, -np.inf).astype(np.float32)
    for m in (mask, fmask):
        out, lse = fattn.scaled_dot_product_attention(q, k, v, m, return_lse=True)
        assert np.all(out[:, :, 2] == 0) and np.all(np.isneginf(lse[:, :, 2]))
        check(out, attention(q, k, v, mask)[0])


def test_kv_lens():
    q, k, v = rand(3, 2, 4, 8), rand(3, 2, 9, 8), rand(3, 2, 9, 8)
    lens = [9, 0, 4]
    out = fattn.scaled_dot_product_attention(q, k, v, kv_lens=lens, causal="bottom_right")
    check(out, attention(q, k, v, causal="bottom_right", kv_lens=lens)[0])
    assert np.all(out[1] == 0)


@pytest.mark.parametrize("backend", ["reference", "scalar", "auto"])
def test_backends(backend):
    q, k, v = rand(1, 2, 30, 40), rand(1, 2, 50, 40), rand(1, 2, 50, 40)
    out = fattn.scaled_dot_product_attention(q, k, v, is_causal=True, backend=backend)
    check(out, attention(q, k, v, causal="top_left")[0])


# ---- out=, errors, nothing written --------------------------------------------------------


def test_out_is_written_in_place():
    q, k, v = rand(2, 2, 5, 8), rand(2, 2, 6, 8), rand(2, 2, 6, 8)
    out = np.full((2, 5, 2, 8), 7.0, dtype=np.float32).transpose(0, 2, 1, 3)  # a BSHD result
    r = fattn.scaled_dot_product_attention(q, k, v, out=out)
    assert r is out
    check(out, attention(q, k, v)[0])


def sentinel_out(shape=(1, 2, 5, 8)):
    return np.full(shape, 3.25, dtype=np.float32)


@pytest.mark.parametrize("case,exc,words", [
    ("e_mismatch", ValueError, "E"),
    ("s_mismatch", ValueError, "S"),
    ("heads_no_gqa", ValueError, "enable_gqa"),
    ("heads_not_multiple", ValueError, "multiple"),
    ("mask_shape", ValueError, "broadcast"),
    ("int_dtype", TypeError, "dtype"),
    ("int_mask", TypeError, "bool or floating"),
    ("dropout", ValueError, "dropout"),
    ("causal_and_mask", ValueError, "is_causal"),
    ("bad_causal", ValueError, "causal"),
    ("bad_backend", ValueError, "backend"),
    ("out_shape", ValueError, "shape"),
    ("kv_lens_range", ValueError, "kv_lens"),
    ("kv_lens_count", ValueError, "kv_lens"),
    ("scale_zero", ValueError, "scale"),
    ("scale_nan", ValueError, "scale"),
    ("overlap", ValueError, "overlap"),
    ("unknown_type", TypeError, "expected"),
])
def test_errors_leave_out_untouched(case, exc, words):
    q, k, v = rand(1, 2, 5, 8), rand(1, 2, 6, 8), rand(1, 2, 6, 8)
    out = sentinel_out()
    kw = {}
    args = [q, k, v]
    if case == "e_mismatch":
        args[1] = rand(1, 2, 6, 4)
    elif case == "s_mismatch":
        args[2] = rand(1, 2, 7, 8)
    elif case == "heads_no_gqa":
        args[0] = rand(1, 4, 5, 8)
        out = sentinel_out((1, 4, 5, 8))
    elif case == "heads_not_multiple":
        args[0] = rand(1, 3, 5, 8)
        kw["enable_gqa"] = True
        out = sentinel_out((1, 3, 5, 8))
    elif case == "mask_shape":
        kw["attn_mask"] = np.ones((5, 4), dtype=bool)
    elif case == "int_dtype":
        args[1] = np.ones((1, 2, 6, 8), dtype=np.int32)
    elif case == "int_mask":
        kw["attn_mask"] = np.ones((5, 6), dtype=np.int32)
    elif case == "dropout":
        kw["dropout_p"] = 0.1
    elif case == "causal_and_mask":
        kw.update(attn_mask=np.ones((5, 6), dtype=bool), is_causal=True)
    elif case == "bad_causal":
        kw["causal"] = "diagonal"
    elif case == "bad_backend":
        kw["backend"] = "cuda"
    elif case == "out_shape":
        out = sentinel_out((1, 2, 5, 7))
    elif case == "kv_lens_range":  # found by the C library: its message comes through
        kw["kv_lens"] = [7]
    elif case == "kv_lens_count":
        kw["kv_lens"] = [1, 2]
    elif case == "scale_zero":
        kw["scale"] = 0.0
    elif case == "scale_nan":
        kw["scale"] = float("nan")
    elif case == "overlap":  # out aliases an input: the C library refuses
        big = rand(1, 2, 6, 8)
        args[1] = big
        out = big[:, :, :5, :]
        before = out.copy()
    elif case == "unknown_type":
        args[2] = [[1.0]]
    before = out.copy()
    with pytest.raises(exc) as e:
        fattn.scaled_dot_product_attention(*args, out=out, **kw)
    assert words in str(e.value), str(e.value)
    np.testing.assert_array_equal(out, before)


def test_readonly_out():
    q, k, v = rand(1, 1, 2, 4), rand(1, 1, 2, 4), rand(1, 1, 2, 4)
    out = np.zeros((1, 1, 2, 4), dtype=np.float32)
    out.flags.writeable = False
    with pytest.raises(ValueError, match="read-only"):
        fattn.scaled_dot_product_attention(q, k, v, out=out)


# ---- threads, contexts, the GIL, copies ----------------------------------------------------


def test_threads_bitwise_identical():
    q, k, v = rand(2, 4, 100, 64), rand(2, 4, 300, 64), rand(2, 4, 300, 64)
    one = fattn.scaled_dot_product_attention(q, k, v, is_causal=True, num_threads=1)
    two = fattn.scaled_dot_product_attention(q, k, v, is_causal=True, num_threads=2)
    ctx = fattn.Context(num_threads=3, pin="none")
    three = fattn.scaled_dot_product_attention(q, k, v, is_causal=True, context=ctx)
    np.testing.assert_array_equal(one, two)
    np.testing.assert_array_equal(one, three)
    assert ctx.runtime_info()["num_threads"] == 3


def test_context_and_runtime_info():
    info = fattn.runtime_info()
    for key in ("version", "isa_detected", "isa_best", "isa_selected", "num_threads", "pin",
                "binding", "has_openmp", "has_hwloc", "l2_bytes"):
        assert key in info
    assert info["version"] == fattn.__version__
    ctx = fattn.Context(num_threads=1, isa="scalar")
    assert ctx.runtime_info()["isa_selected"] == "scalar"
    with pytest.raises(ValueError):
        fattn.Context(isa="sse9")
    with pytest.raises(ValueError):
        fattn.Context(num_threads=-1)
    # the matrix-engine policy: reported, and off runs no tile engine
    assert info["tiles"] in ("auto", "off", "bf16")
    off = fattn.Context(tiles="off").runtime_info()
    assert off["tiles"] == "off" and off["tile_engine"] == ""
    assert fattn.Context(tiles="bf16").runtime_info()["tiles"] == "bf16"
    with pytest.raises(ValueError):
        fattn.Context(tiles="sideways")
    with pytest.raises(ValueError, match="not both"):
        fattn.scaled_dot_product_attention(rand(1, 1, 2, 4), rand(1, 1, 2, 4), rand(1, 1, 2, 4),
                                           num_threads=1, context=ctx)


def test_gil_released_during_the_call():
    # With a switch interval far longer than the call, the main thread can run
    # while the worker is inside fattn only if the binding released the GIL.
    q, k, v = rand(1, 8, 512, 128), rand(1, 8, 2048, 128), rand(1, 8, 2048, 128)
    started = threading.Event()
    t0 = time.perf_counter()
    fattn.scaled_dot_product_attention(q, k, v, backend="scalar", num_threads=1)
    once = time.perf_counter() - t0

    def work():
        started.set()
        fattn.scaled_dot_product_attention(q, k, v, backend="scalar", num_threads=1)

    old = sys.getswitchinterval()
    sys.setswitchinterval(100.0)
    try:
        t = threading.Thread(target=work)
        t.start()
        started.wait()
        time.sleep(min(0.05, once / 4))  # gives up the GIL; back while the call runs
        alive = t.is_alive()
        t.join()
    finally:
        sys.setswitchinterval(old)
    assert alive, f"the main thread ran only after the {once:.2f} s call: GIL held"


def test_no_copies_of_inputs():
    # numpy reports its allocations to tracemalloc: a call on 48 MiB of
    # non-contiguous inputs, writing into out=, allocates almost nothing.
    q = rand(4, 256, 8, 64).transpose(0, 2, 1, 3)
    k = rand(4, 1024, 8, 64).transpose(0, 2, 1, 3)
    v = rand(4, 1024, 8, 64).transpose(0, 2, 1, 3)
    out = np.empty((4, 8, 256, 64), dtype=np.float32)
    mask = rng.random((256, 1024)) > 0.1
    fattn.scaled_dot_product_attention(q, k, v, mask, out=out)  # warm-up
    tracemalloc.start()
    fattn.scaled_dot_product_attention(q, k, v, mask, out=out)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert peak < 64 * 1024, f"{peak} bytes allocated during the call"
    check(out, attention(q, k, v, mask)[0])

"""fattn with torch tensors: against the float64 reference on any torch (Debian's
1.13 included); against torch.nn.functional.scaled_dot_product_attention, the
custom op, torch.compile and use_fattn where torch >= 2.4."""

import numpy as np
import pytest

torch = pytest.importorskip("torch", reason="torch is not installed")

import fattn  # noqa: E402
from fattn import _torch as ft  # noqa: E402
from reference import attention, to64, tolerance  # noqa: E402

TORCH_VERSION = tuple(int(x) for x in torch.__version__.split("+")[0].split(".")[:2])
modern = pytest.mark.skipif(
    TORCH_VERSION < (2, 4) or not hasattr(torch.nn.functional, "scaled_dot_product_attention"),
    reason=f"needs torch >= 2.4 (custom_op, SDPA with enable_gqa); this is {torch.__version__}")

DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}
gen = torch.Generator().manual_seed(11)


def rand(*shape, dtype=torch.float32):
    return torch.randn(*shape, generator=gen).to(dtype)


def check(out, ref, name="float32"):
    err = np.abs(to64(out) - ref).max()
    tol = tolerance(name) * max(1.0, np.abs(ref).max())
    assert err <= tol, f"max |fattn - ref| = {err:.3g} > {tol:.3g}"


# ---- any torch: tensors in and out -----------------------------------------------------------


@pytest.mark.parametrize("name", list(DTYPES))
@pytest.mark.parametrize("layout", ["bhsd", "bshd"])
def test_tensors_in_and_out(name, layout):
    dt = DTYPES[name]
    if layout == "bhsd":
        q, k, v = rand(2, 4, 37, 64, dtype=dt), rand(2, 2, 50, 64, dtype=dt), rand(2, 2, 50, 48,
                                                                                    dtype=dt)
    else:
        q = rand(2, 37, 4, 64, dtype=dt).transpose(1, 2)
        k, v = rand(2, 50, 2, 64, dtype=dt).transpose(1, 2), rand(2, 50, 2, 48,
                                                                   dtype=dt).transpose(1, 2)
    mask = torch.rand(2, 1, 37, 50, generator=gen) > 0.2
    out = fattn.scaled_dot_product_attention(q, k, v, mask, enable_gqa=True)
    assert isinstance(out, torch.Tensor) and out.dtype == dt and out.shape == (2, 4, 37, 48)
    check(out, attention(to64(q), to64(k), to64(v), mask.numpy())[0], name)


def test_float_mask_of_query_dtype_and_lse():
    q, k, v = (rand(1, 2, 9, 32, dtype=torch.bfloat16) for _ in range(3))
    mask = rand(9, 9, dtype=torch.bfloat16)
    out, lse = fattn.scaled_dot_product_attention(q, k, v, mask, return_lse=True)
    ref, ref_lse = attention(to64(q), to64(k), to64(v), to64(mask))
    check(out, ref, "bfloat16")
    assert lse.dtype == torch.float32 and lse.shape == (1, 2, 9)
    np.testing.assert_allclose(lse.numpy(), ref_lse, atol=1e-4)


def test_out_tensor_written_in_place_and_untouched_on_error():
    q, k, v = rand(1, 2, 5, 8), rand(1, 2, 6, 8), rand(1, 2, 6, 8)
    out = torch.empty(1, 5, 2, 8).transpose(1, 2)  # BSHD storage
    ptr = out.data_ptr()
    r = fattn.scaled_dot_product_attention(q, k, v, out=out)
    assert r is out and r.data_ptr() == ptr
    check(out, attention(to64(q), to64(k), to64(v))[0])
    before = out.clone()
    with pytest.raises(ValueError, match="kv_lens"):
        fattn.scaled_dot_product_attention(q, k, v, out=out, kv_lens=torch.tensor([9]))
    assert torch.equal(out, before)


def test_errors():
    q = rand(1, 2, 5, 8)
    with pytest.raises(TypeError, match="dtype"):
        fattn.scaled_dot_product_attention(q, q.double(), q)
    with pytest.raises(TypeError, match="all be torch tensors or all NumPy"):
        fattn.scaled_dot_product_attention(q, q.numpy(), q)
    with pytest.raises(TypeError, match="bool or floating"):
        fattn.scaled_dot_product_attention(q, q, q, torch.ones(5, 5, dtype=torch.int64))


@pytest.mark.parametrize("name", list(DTYPES))
def test_common_call_in_one_step_equals_the_general_path(name):
    """4-D torch tensors without mask or out= take fattn._C._sdpa_torch4; the
    same call with out= goes through the general path: the bits must agree
    (views, GQA, causal, scale, Dv != D), and what the one step refuses must
    get the general path's errors."""
    from fattn import _C

    dt = DTYPES[name]
    q = rand(2, 13, 4, 40, dtype=dt).transpose(1, 2)  # BSHD view
    k, v = rand(2, 2, 29, 40, dtype=dt), rand(2, 2, 29, 24, dtype=dt)
    for kw in ({}, {"is_causal": True}, {"scale": 0.3}, {"scale": 2}):
        fast = _C._sdpa_torch4(q, k, v, kw.get("is_causal", False), kw.get("scale"), True, None,
                               None)
        assert fast is not NotImplemented and fast.dtype == dt and fast.is_contiguous()
        one = fattn.scaled_dot_product_attention(q, k, v, enable_gqa=True, **kw)
        out = torch.empty(2, 4, 13, 24, dtype=dt)
        fattn.scaled_dot_product_attention(q, k, v, enable_gqa=True, out=out, **kw)
        general = torch.empty(2, 4, 13, 24, dtype=dt)  # kv_lens=S: the general path
        fattn.scaled_dot_product_attention(q, k, v, enable_gqa=True, out=general,
                                           kv_lens=[29, 29], **kw)
        assert torch.equal(fast, general) and torch.equal(one, general), kw
        assert torch.equal(out, general), kw
        ref = attention(to64(q), to64(k), to64(v), scale=kw.get("scale"),
                        causal="top_left" if kw.get("is_causal") else None)[0]
        check(one, ref, name)
    other = torch.float32 if dt != torch.float32 else torch.float16
    refused = [(q, k, v, False, None, False, None, None),  # GQA without enable_gqa
               (q, k.to(other), v, False, None, True, None, None),
               (q[0], k[0], v[0], False, None, True, None, None),  # 3-D
               (q, k, v, False, 0.0, True, None, None), (q, k, v, False, 1e-60, True, None, None),
               (q, k, v, False, float("nan"), True, None, None),
               (q, k, v, False, None, True, 3, None), (q, k, v[:, :, :5], False, None, True, None,
                                                       None),
               (q, k, v, False, None, True, None, torch.empty(2, 4, 13, 25, dtype=dt)),
               (q, k, v, False, None, True, None, torch.empty(2, 4, 13, 24, dtype=other))]
    for args in refused:
        assert _C._sdpa_torch4(*args) is NotImplemented
    bad_out = torch.zeros(2, 4, 13, 24, dtype=dt)
    with pytest.raises(ValueError, match="overlap|alias"):
        fattn.scaled_dot_product_attention(q, k, v, enable_gqa=True, out=q[..., :24])
    with pytest.raises(ValueError, match="shape"):
        fattn.scaled_dot_product_attention(q, k, v[:, :, :, :5], enable_gqa=True, out=bad_out)
    assert not bad_out.any()
    with pytest.raises(ValueError, match="enable_gqa"):
        fattn.scaled_dot_product_attention(q, k, v)
    for bad in (0.0, 1e-60, float("inf")):
        with pytest.raises(ValueError, match="scale"):
            fattn.scaled_dot_product_attention(q, k, v, scale=bad, enable_gqa=True)
    with pytest.raises(ValueError, match="differ"):
        fattn.scaled_dot_product_attention(q, k, v[:, :, :5], enable_gqa=True)


def test_inference_mode_and_no_grad():
    q, k, v = rand(1, 2, 7, 16), rand(1, 2, 7, 16), rand(1, 2, 7, 16)
    with torch.inference_mode():
        a = fattn.scaled_dot_product_attention(q, k, v, is_causal=True)
    with torch.no_grad():
        b = fattn.scaled_dot_product_attention(q, k, v, is_causal=True)
    assert torch.equal(a, b)


# ---- torch >= 2.4: equal to PyTorch's SDPA, the custom op, compile ----------------------------

CASES = {  # name: (q shape, k shape, v shape, mask shape or None, mask kind, is_causal, gqa)
    "plain": ((2, 4, 33, 64), (2, 4, 47, 64), (2, 4, 47, 64), None, None, False, False),
    "causal": ((1, 8, 77, 64), (1, 8, 77, 64), (1, 8, 77, 64), None, None, True, False),
    "causal_lq_lt_lk": ((1, 2, 9, 32), (1, 2, 40, 32), (1, 2, 40, 32), None, None, True, False),
    "bool_pad": ((3, 4, 16, 32), (3, 4, 16, 32), (3, 4, 16, 32), (3, 1, 1, 16), "bool", False,
                 False),
    "float_full": ((2, 2, 12, 80), (2, 2, 20, 80), (2, 2, 20, 80), (2, 2, 12, 20), "float",
                   False, False),
    "gqa": ((2, 8, 20, 128), (2, 2, 30, 128), (2, 2, 30, 128), None, None, False, True),
    "dv": ((1, 2, 10, 96), (1, 2, 10, 96), (1, 2, 10, 40), (10, 10), "bool", False, False),
    "rank3": ((4, 11, 16), (4, 13, 16), (4, 13, 16), None, None, False, False),
    "rank5": ((2, 3, 2, 6, 8), (2, 3, 2, 7, 8), (2, 3, 2, 7, 8), None, None, False, False),
}


def make_case(name, dt):
    qs, ks, vs, ms, mk, causal, gqa = CASES[name]
    q, k, v = rand(*qs, dtype=dt), rand(*ks, dtype=dt), rand(*vs, dtype=dt)
    mask = None
    if mk == "bool":
        mask = torch.rand(*ms, generator=gen) > 0.3
        mask[..., 0] = True  # no fully masked row: PyTorch's answer there varies by version
    elif mk == "float":
        mask = rand(*ms, dtype=dt)
    return q, k, v, mask, causal, gqa


@modern
@pytest.mark.parametrize("name", list(CASES))
@pytest.mark.parametrize("dtname", list(DTYPES))
def test_equals_torch_sdpa(name, dtname):
    dt = DTYPES[dtname]
    q, k, v, mask, causal, gqa = make_case(name, dt)
    ours = fattn.scaled_dot_product_attention(q, k, v, mask, is_causal=causal, enable_gqa=gqa)
    theirs = torch.nn.functional.scaled_dot_product_attention(q, k, v, mask, is_causal=causal,
                                                              enable_gqa=gqa)
    ref = attention(to64(q), to64(k), to64(v), None if mask is None else
                    (mask.numpy() if mask.dtype == torch.bool else to64(mask)),
                    causal="top_left" if causal else None)[0]
    tol = 2 * tolerance(dtname) * max(1.0, np.abs(ref).max())
    err = (ours.double() - theirs.double()).abs().max().item()
    assert err <= tol, f"fattn vs torch: {err:.3g} > {tol:.3g}"
    check(ours, ref, dtname)


@modern
def test_custom_op_opcheck():
    q, k, v, mask, _, _ = make_case("bool_pad", torch.float32)
    torch.library.opcheck(torch.ops.fattn.sdpa.default, (q, k, v, mask),
                          {"is_causal": False, "scale": None, "enable_gqa": False})
    q, k, v, _, _, _ = make_case("gqa", torch.bfloat16)
    torch.library.opcheck(torch.ops.fattn.sdpa.default, (q, k, v),
                          {"enable_gqa": True, "causal": "bottom_right"})


@modern
def test_custom_op_under_compile_fullgraph():
    def block(x, wq, wk, wv):
        b, l, e = x.shape
        q = (x @ wq).view(b, l, 4, e // 4).transpose(1, 2)  # BSHD storage, no copy
        k = (x @ wk).view(b, l, 4, e // 4).transpose(1, 2)
        v = (x @ wv).view(b, l, 4, e // 4).transpose(1, 2)
        o = torch.ops.fattn.sdpa(q, k, v, is_causal=True)
        return o.transpose(1, 2).reshape(b, l, e)

    x = rand(2, 24, 64)
    w = [rand(64, 64) * 0.1 for _ in range(3)]
    compiled = torch.compile(block, fullgraph=True)
    with torch.inference_mode():
        got = compiled(x, *w)
        want = block(x, *w)
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5)
    ref = torch.nn.functional.scaled_dot_product_attention(
        *((x @ wi).view(2, 24, 4, 16).transpose(1, 2) for wi in w), is_causal=True)
    torch.testing.assert_close(got, ref.transpose(1, 2).reshape(2, 24, 64), rtol=1e-4, atol=1e-5)


@modern
def test_use_fattn_redirects_sdpa():
    layer = torch.nn.TransformerEncoderLayer(64, 4, 128, batch_first=True, dropout=0.0).eval()
    x = rand(2, 10, 64)
    q, k, v = rand(1, 2, 8, 16), rand(1, 2, 8, 16), rand(1, 2, 8, 16)
    with torch.no_grad():
        want = torch.nn.functional.scaled_dot_product_attention(q, k, v, is_causal=True)
        with fattn.use_fattn() as mode:
            got = torch.nn.functional.scaled_dot_product_attention(q, k, v, is_causal=True)
            layer(x)  # nn.MultiheadAttention's fast path may bypass F.sdpa: either is fine
        assert mode.calls >= 1
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5)
    # a call that needs a gradient stays with PyTorch
    qg = q.clone().requires_grad_()
    with fattn.use_fattn() as mode:
        y = torch.nn.functional.scaled_dot_product_attention(qg, k, v)
    y.sum().backward()
    assert mode.fallbacks == 1 and mode.calls == 0 and qg.grad is not None


@modern
def test_zero_copy_no_input_sized_allocation():
    q = rand(2, 512, 8, 64).transpose(1, 2)
    k = rand(2, 512, 8, 64).transpose(1, 2)
    v = rand(2, 512, 8, 64).transpose(1, 2)
    out = torch.empty(2, 8, 512, 64)
    fattn.scaled_dot_product_attention(q, k, v, out=out)
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        r = fattn.scaled_dot_product_attention(q, k, v, out=out)
    assert r.data_ptr() == out.data_ptr()
    allocated = sum(max(e.cpu_memory_usage, 0) for e in prof.events())
    assert allocated < q.numel() * 4 // 16, f"{allocated} bytes allocated by torch"


def test_use_fattn_needs_sdpa():
    if hasattr(torch.nn.functional, "scaled_dot_product_attention"):
        pytest.skip("this torch has SDPA (covered by test_use_fattn_redirects_sdpa)")
    with pytest.raises(RuntimeError, match="scaled_dot_product_attention"):
        with fattn.use_fattn():
            pass
    assert ft.sdpa_op is None

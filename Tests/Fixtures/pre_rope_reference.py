#!/usr/bin/env python3
"""Independent numpy references for `fit-lowrank --keys pre-rope` (Tests/KVStatTests/PreRopeFitTests.swift).

    pre_rope_reference.py styles OUT.json
        Seeded random rows, rotated by RoPE in both styles through complex multiplication (rotate-half: channel
        i + 1j * channel i + d/2; interleaved: channel 2i + 1j * channel 2i+1), partial rotary dimension.
    pre_rope_reference.py fit DUMP OUT.json RANK QUERIES LAYER...
        On the valid tokens of each layer: per-layer uncentred PCA of key_pre_rope and value at RANK (numpy SVD,
        float64), rebuilt keys rotated (rotate-half, theta = the dump's rope_theta, position = token index), and
        the key errors before and after RoPE, the value error, and causal GQA attention-level errors over QUERIES
        evenly spread query positions per sequence (as docs/fit-lowrank.md defines them).
"""
import json
import sys

import numpy as np


def rope_complex(x, positions, theta, rotary_dim, style):
    """x [rows, heads, d]; returns RoPE(x) by complex rotation of the rotated pairs, in float64."""
    x = np.asarray(x, dtype=np.float64).copy()
    half = rotary_dim // 2
    freq = theta ** (-2.0 * np.arange(half) / rotary_dim)
    phase = np.exp(1j * np.asarray(positions, dtype=np.float64)[:, None, None] * freq[None, None, :])
    if style == "rotate-half":
        a, b = np.arange(half), np.arange(half) + half
    else:
        a, b = 2 * np.arange(half), 2 * np.arange(half) + 1
    z = (x[..., a] + 1j * x[..., b]) * phase
    x[..., a], x[..., b] = z.real, z.imag
    return x


def styles(out):
    rng = np.random.default_rng(20250301)
    rows, heads, d, rotary, theta = 6, 2, 8, 6, 500.0
    x = rng.standard_normal((rows, heads, d)).astype(np.float32)
    positions = [0, 1, 3, 7, 100, 12345]
    result = {"rows": rows, "heads": heads, "head_dim": d, "rotary_dim": rotary, "theta": theta,
              "positions": positions, "x": x.reshape(-1).tolist()}
    for style in ("rotate-half", "interleaved"):
        result[style] = rope_complex(x, positions, theta, rotary, style).reshape(-1).tolist()
    json.dump(result, open(out, "w"))


def rows_of(t, lengths):
    """[B, H, T, D] → [valid rows (b-major, t), H, D] and the rows' positions."""
    x = np.asarray(t, dtype=np.float64).transpose(0, 2, 1, 3)
    return (np.concatenate([x[b, :n] for b, n in enumerate(lengths)]),
            np.concatenate([np.arange(n) for n in lengths]))


def fit(dump, out, rank, queries, layers):
    import h5py
    f = h5py.File(dump, "r")
    theta = float(f.attrs["rope_theta"])
    lengths = [int(n) for n in np.asarray(f["attention_mask"]).sum(axis=1)]
    result = {"theta": theta, "layers": layers, "key_before": [], "key_after": [], "value": [], "logits": [],
              "outputs": []}
    for layer in layers:
        g = f[f"layers/{layer}"]
        pre, positions = rows_of(g["key_pre_rope"], lengths)
        key, _ = rows_of(g["key"], lengths)
        value, _ = rows_of(g["value"], lengths)
        query, _ = rows_of(g["query"], lengths)
        n, kv, d = pre.shape
        qh = query.shape[1]

        def pca(x):
            flat = x.reshape(n, -1)
            basis = np.linalg.svd(flat, full_matrices=False)[2][:rank].T
            return (flat @ basis @ basis.T).reshape(x.shape)
        pre_hat, value_hat = pca(pre), pca(value)
        key_hat = rope_complex(pre_hat, positions, theta, d, "rotate-half")
        rel = lambda a, b: float(np.linalg.norm(a - b) / np.linalg.norm(a))  # noqa: E731
        result["key_before"].append(rel(pre, pre_hat))
        result["key_after"].append(rel(key, key_hat))
        result["value"].append(rel(value, value_hat))
        le = ln = oe = on = 0.0
        start = 0
        for length in lengths:
            m = min(queries, length)
            sampled = [length - 1] if m == 1 else [(i * (length - 1)) // (m - 1) for i in range(m)]
            for p in sampled:
                for h in range(qh):
                    kvh = h // (qh // kv)
                    q = query[start + p, h]
                    k, kh = key[start:start + p + 1, kvh], key_hat[start:start + p + 1, kvh]
                    v, vh = value[start:start + p + 1, kvh], value_hat[start:start + p + 1, kvh]
                    s, sh = k @ q / np.sqrt(d), kh @ q / np.sqrt(d)
                    le += float(((s - sh) ** 2).sum())
                    ln += float((s ** 2).sum())
                    w, wh = np.exp(s - s.max()), np.exp(sh - sh.max())
                    o, oh = w @ v / w.sum(), wh @ vh / wh.sum()
                    oe += float(((o - oh) ** 2).sum())
                    on += float((o ** 2).sum())
            start += length
        result["logits"].append((le / ln) ** 0.5)
        result["outputs"].append((oe / on) ** 0.5)
    json.dump(result, open(out, "w"))


if __name__ == "__main__":
    if sys.argv[1] == "styles":
        styles(sys.argv[2])
    else:
        fit(sys.argv[2], sys.argv[3], int(sys.argv[4]), int(sys.argv[5]), [int(x) for x in sys.argv[6:]])

#!/usr/bin/env python3
"""Independent numpy reference for analyze's attention-mass sinks (Tests/KVStatTests/AttentionSinkTests.swift).

    attention_sinks_reference.py share DUMP OUT.json QUERIES CAUSAL(0|1)
        For every layer of DUMP (kvstat.dump/1, axes bhtd, `lengths`): per sequence, the query positions are its
        valid tokens >= 16 when causal and the sequence has such tokens (else all its valid tokens), of which
        QUERIES are taken evenly (index i*(m-1)//(n-1), n = min(QUERIES, m); n = 1 takes the last). Query head h
        attends to KV head h // (Hq/Hkv) with softmax(q.k / sqrt(d)) (float64) over the valid keys (those at or
        before the query when causal). Writes per layer the overall share per key position (sum of weights over
        every (query, head) row / rows), the per-head share, the uniform share (1/v per query, v the keys it sees,
        / queries), and the mean key and value norm per position over the sequences holding it.
    attention_sinks_reference.py degenerate FOLDER
        Writes small dumps for the degenerate cases: one.h5 (one sequence of one token), zero_keys.h5 (all keys
        zero: uniform attention), no_queries.h5 (keys and values only).
"""
import json
import os
import sys

import h5py
import numpy as np


def sampled(positions, count):
    n = min(count, len(positions))
    return [positions[len(positions) - 1 if n == 1 else (i * (len(positions) - 1)) // (n - 1)] for i in range(n)]


def query_positions(length, queries, causal):
    """The sampled query positions of a sequence of `length` valid tokens (>= 16 when causal and it has them)."""
    positions = list(range(length))
    late = [p for p in positions if p >= 16]
    return sampled(late if causal and late else positions, queries)


def softmax_weights(keys, query):
    """softmax(keys @ query / sqrt(d)) in float64: keys [seen, d], query [d]."""
    logits = keys @ query / np.sqrt(query.shape[0])
    w = np.exp(logits - logits.max())
    return w / w.sum()


def share(dump, out, queries, causal):
    f = h5py.File(dump, "r")
    lengths = [int(x) for x in f["lengths"][:]]
    result = {"layers": []}
    for name in sorted(f["layers"], key=int):
        g = f["layers"][name]
        q = np.asarray(g["query"][...], dtype=np.float64)  # b, hq, t, d
        k = np.asarray(g["key"][...], dtype=np.float64)
        v = np.asarray(g["value"][...], dtype=np.float64)
        _, hq, tokens, d = q.shape
        hkv = k.shape[1]
        per = hq // hkv
        weight = np.zeros((hq, tokens))
        rows = np.zeros(hq)
        uniform = np.zeros(tokens)
        count = 0
        key_norm = np.zeros(tokens)
        value_norm = np.zeros(tokens)
        norm_count = np.zeros(tokens)
        for b, length in enumerate(lengths):
            chosen = query_positions(length, queries, causal)
            key_norm[:length] += np.sqrt((k[b, :, :length, :] ** 2).sum(axis=(0, 2)))
            value_norm[:length] += np.sqrt((v[b, :, :length, :] ** 2).sum(axis=(0, 2)))
            norm_count[:length] += 1
            for p in chosen:
                seen = p + 1 if causal else length
                for h in range(hq):
                    weight[h, :seen] += softmax_weights(k[b, h // per, :seen, :], q[b, h, p, :])
                    rows[h] += 1
                uniform[:seen] += 1.0 / seen
                count += 1
        overall = weight.sum(axis=0) / rows.sum()
        result["layers"].append({
            "layer": int(name),
            "share": overall.tolist(),
            "head_share": (weight / rows[:, None]).tolist(),
            "uniform": (uniform / count).tolist(),
            "key_norm": np.where(norm_count > 0, key_norm / np.maximum(norm_count, 1), 0).tolist(),
            "value_norm": np.where(norm_count > 0, value_norm / np.maximum(norm_count, 1), 0).tolist(),
        })
    with open(out, "w") as handle:
        json.dump(result, handle)


def write(path, tensors, lengths):
    with h5py.File(path, "w") as f:
        f.attrs["kvstat_format"] = "kvstat.dump/1"
        f["lengths"] = np.asarray(lengths, dtype=np.int64)
        for layer, kinds in tensors.items():
            for kind, x in kinds.items():
                dataset = f.create_dataset(f"layers/{layer}/{kind}", data=x.astype(np.float32))
                dataset.attrs["axes"] = "bhtd"


def degenerate(folder):
    os.makedirs(folder, exist_ok=True)
    rng = np.random.default_rng(16)
    one = {0: {kind: rng.standard_normal((1, 2, 1, 4)) for kind in ("key", "value", "query")}}
    write(os.path.join(folder, "one.h5"), one, [1])
    zero = {0: {"key": np.zeros((2, 2, 20, 4)), "value": rng.standard_normal((2, 2, 20, 4)),
                "query": rng.standard_normal((2, 4, 20, 4))}}
    write(os.path.join(folder, "zero_keys.h5"), zero, [20, 12])
    none = {0: {kind: rng.standard_normal((1, 2, 20, 4)) for kind in ("key", "value")}}
    write(os.path.join(folder, "no_queries.h5"), none, [20])


if __name__ == "__main__":
    if sys.argv[1] == "share":
        share(sys.argv[2], sys.argv[3], int(sys.argv[4]), sys.argv[5] == "1")
    else:
        degenerate(sys.argv[2])

#!/usr/bin/env python3
"""Independent numpy references for `fit-lowrank --keep-sinks` (Tests/KVStatTests/KeepSinksTests.swift).

    keep_sinks_reference.py mass DUMP OUT.json QUERIES K CAUSAL(0|1)
        Per sequence of DUMP (kvstat.dump/1, axes bhtd, `lengths`), the K key positions with the largest attention
        weight summed over every layer, query head and sampled query: query positions are the sequence's valid
        tokens >= 16 when causal and it has such tokens (else all), QUERIES of them taken evenly (index
        i*(m-1)//(n-1), n = min(QUERIES, m); n = 1 takes the last); query head h attends to KV head h // (Hq/Hkv)
        with softmax(q.k / sqrt(d)) in float64 over the valid keys (at or before the query when causal). Ties go to
        the lower position. Writes {"positions": [[...] per sequence, increasing], "shares": [[...]]}, a share
        being the summed weight / the (query, head) rows summed.
    keep_sinks_reference.py recon FOLDER
        Writes FOLDER/small.h5 (2 layers, 2 KV heads, head_dim 8, keys and values, no queries, 2 sequences of 40
        and 25 valid tokens, a large planted first token) and FOLDER/reference.json: for K = 3 sinks (the first
        three tokens of each sequence: no queries) and rank 4 per layer and kind (layer granularity), the
        projection P = top-4 eigenvectors of the Gram of the non-sink rows, and the relative error
        sqrt(sum over non-sink rows ||x - x P P^T||^2 / sum over all rows ||x||^2) per layer and kind; also for
        cskv with a window of 10 (P the same; the window rows exact too).
    keep_sinks_reference.py attn DUMP OUT.json QUERIES K KEEP LAYER
        For one layer of DUMP: sinks by `mass` (all layers, causal); pca per kind at rank round(KEEP * C) fitted
        on the non-sink rows; attention outputs of QUERIES evenly sampled queries over all valid tokens of each
        sequence (causal, GQA) with the exact cache, with the rebuilt cache keeping the sink rows exact, and
        with every row rebuilt. Writes {"with": e1, "without": e2, "logits_with": l1, "logits_without": l2},
        relative Frobenius errors over every sampled query and head.
"""
import json
import os
import sys

import h5py
import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from attention_sinks_reference import query_positions, sampled, softmax_weights, write  # noqa: E402


def mass(dump, queries, k, causal):
    f = h5py.File(dump, "r")
    lengths = [int(x) for x in f["lengths"][:]]
    layers = sorted(f["layers"], key=int)
    positions, shares = [], []
    for b, length in enumerate(lengths):
        weight = np.zeros(length)
        rows = 0
        for name in layers:
            g = f["layers"][name]
            q = np.asarray(g["query"][b, :, :length, :], dtype=np.float64)  # hq, t, d
            key = np.asarray(g["key"][b, :, :length, :], dtype=np.float64)
            hq = q.shape[0]
            per = hq // key.shape[0]
            for p in query_positions(length, queries, causal):
                seen = p + 1 if causal else length
                for h in range(hq):
                    weight[:seen] += softmax_weights(key[h // per, :seen, :], q[h, p, :])
                    rows += 1
        order = sorted(range(length), key=lambda p: (-weight[p], p))[:k]
        kept = sorted(order)
        positions.append(kept)
        shares.append([weight[p] / rows for p in kept])
    return positions, shares


def rows_of(x, lengths):
    """[b, h, t, d] -> per sequence the [valid t, h*d] rows (heads side by side, as kvstat's channels)."""
    return [x[b, :, :n, :].transpose(1, 0, 2).reshape(n, -1) for b, n in enumerate(lengths)]


def projection(rows, rank):
    gram = rows.T @ rows
    values, vectors = np.linalg.eigh(gram)
    return vectors[:, np.argsort(values)[::-1][:rank]]


def recon(folder):
    os.makedirs(folder, exist_ok=True)
    rng = np.random.default_rng(1616)
    lengths = [40, 25]
    tensors = {}
    for layer in (0, 1):
        tensors[layer] = {}
        for kind in ("key", "value"):
            basis = rng.standard_normal((6, 16))
            x = rng.standard_normal((2, 40, 6)) @ basis + 0.3 * rng.standard_normal((2, 40, 16))
            x[:, 0, :] = 8 * rng.standard_normal((2, 16))  # a planted large first token
            tensors[layer][kind] = x.reshape(2, 40, 2, 8).transpose(0, 2, 1, 3)
    write(os.path.join(folder, "small.h5"), tensors, lengths)
    k, rank, window = 3, 4, 10
    result = {"k": k, "rank": rank, "window": window, "pca": {}, "cskv": {}}
    for layer, kinds in tensors.items():
        for kind, x in kinds.items():
            per_sequence = rows_of(x, lengths)
            kept = np.concatenate([r[k:] for r in per_sequence])
            p = projection(kept, rank)
            norm = sum(float((r ** 2).sum()) for r in per_sequence)
            error = float(((kept - kept @ p @ p.T) ** 2).sum())
            result["pca"][f"{kind}/{layer}"] = np.sqrt(error / norm)
            old = np.concatenate([r[k:len(r) - window] for r in per_sequence])
            error = float(((old - old @ p @ p.T) ** 2).sum())
            result["cskv"][f"{kind}/{layer}"] = np.sqrt(error / norm)
    with open(os.path.join(folder, "reference.json"), "w") as handle:
        json.dump(result, handle)


def attn(dump, out, queries, k, keep, layer):
    positions, _ = mass(dump, 64, k, True)
    f = h5py.File(dump, "r")
    lengths = [int(x) for x in f["lengths"][:]]
    g = f["layers"][str(layer)]
    data = {kind: np.asarray(g[kind][...], dtype=np.float64) for kind in ("key", "value", "query")}
    rebuilt = {}
    for kind in ("key", "value"):
        per_sequence = rows_of(data[kind], lengths)
        kept = np.concatenate([np.delete(r, positions[b], axis=0) for b, r in enumerate(per_sequence)])
        p = projection(kept, int(round(keep * kept.shape[1])))
        rebuilt[kind] = [r @ p @ p.T for r in per_sequence]
    hq, d = data["query"].shape[1], data["query"].shape[3]
    hkv = data["key"].shape[1]
    per = hq // hkv
    totals = {"with": [0.0, 0.0], "without": [0.0, 0.0], "logits_with": [0.0, 0.0], "logits_without": [0.0, 0.0]}
    for b, length in enumerate(lengths):
        exact = {kind: rows_of(data[kind], lengths)[b].reshape(length, hkv, d) for kind in ("key", "value")}
        without = {kind: rebuilt[kind][b].reshape(length, hkv, d) for kind in ("key", "value")}
        with_sinks = {kind: without[kind].copy() for kind in ("key", "value")}
        for kind in ("key", "value"):
            with_sinks[kind][positions[b]] = exact[kind][positions[b]]
        for p in sampled(list(range(length)), queries):
            for h in range(hq):
                q = data["query"][b, h, p, :]
                kv = h // per
                outputs, logits = {}, {}
                for name, cache in (("exact", exact), ("with", with_sinks), ("without", without)):
                    l = cache["key"][:p + 1, kv, :] @ q / np.sqrt(d)
                    w = np.exp(l - l.max())
                    outputs[name] = (w / w.sum()) @ cache["value"][:p + 1, kv, :]
                    logits[name] = l
                for name in ("with", "without"):
                    totals[name][0] += float(((outputs["exact"] - outputs[name]) ** 2).sum())
                    totals[name][1] += float((outputs["exact"] ** 2).sum())
                    totals["logits_" + name][0] += float(((logits["exact"] - logits[name]) ** 2).sum())
                    totals["logits_" + name][1] += float((logits["exact"] ** 2).sum())
    with open(out, "w") as handle:
        json.dump({name: np.sqrt(e / n) for name, (e, n) in totals.items()}, handle)


if __name__ == "__main__":
    if sys.argv[1] == "mass":
        found, found_shares = mass(sys.argv[2], int(sys.argv[4]), int(sys.argv[5]), sys.argv[6] == "1")
        with open(sys.argv[3], "w") as handle:
            json.dump({"positions": found, "shares": found_shares}, handle)
    elif sys.argv[1] == "recon":
        recon(sys.argv[2])
    elif sys.argv[1] == "attn":
        attn(sys.argv[2], sys.argv[3], int(sys.argv[4]), int(sys.argv[5]), float(sys.argv[6]), int(sys.argv[7]))
    else:
        sys.exit(f"unknown mode {sys.argv[1]}")

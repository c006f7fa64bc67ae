#!/usr/bin/env python3
"""Dumps whose channel axis merges heads × head_dim, and Hugging Face's hook/cache pair (generated at test time).

Usage: make_layout_dumps.py OUT_DIR

Writes small HDF5 files, the layout files that describe some of them, and for each readable file
`NAME.rows.json`: the token rows kvstat must return for layer 0 of each kind (computed here with numpy alone, so
the Swift tests compare against an independent reshape). Tests/KVStatTests/MergedHeadsTests.swift and
Tests/Faults/make_corpus.py say what each file must give. Seeds are fixed.
"""
import json
import os
import sys

import h5py
import numpy as np

OUT = sys.argv[1]
os.makedirs(OUT, exist_ok=True)
rng = np.random.default_rng(12)
B, T, H, D, QH = 2, 6, 3, 4, 6  # batch, tokens, kv heads, head_dim, query heads (GQA, 2 per kv head)


def path(name):
    return os.path.join(OUT, name)


def rows_bhtd(x):
    """[b, h, t, d] -> token rows [b * t, h * d] (sequence-major)."""
    return x.transpose(0, 2, 1, 3).reshape(x.shape[0] * x.shape[2], -1)


def rows_btc(x):
    return x.reshape(-1, x.shape[-1])


def write_rows(name, rows):
    with open(path(name + ".rows.json"), "w") as f:
        json.dump({kind: np.asarray(r, dtype=np.float64).ravel().tolist() for kind, r in rows.items()}, f)


def rotate(x):
    """Any position-dependent rotation of pairs of dimensions: the cache's keys differ from k_proj's."""
    angle = np.arange(x.shape[2])[None, None, :, None] * 0.3
    half = x.shape[-1] // 2
    a, b = x[..., :half], x[..., half:]
    return np.concatenate([a * np.cos(angle) - b * np.sin(angle), a * np.sin(angle) + b * np.cos(angle)], -1)


# 1. Hugging Face's pair: forward-hook outputs of k_proj/v_proj/q_proj ([batch, tokens, heads·head_dim], before
#    RoPE) beside the cache's post-RoPE keys and values ([batch, kv_heads, tokens, head_dim]).
with h5py.File(path("hf_pair.h5"), "w") as f:
    truth = {}
    for layer in range(2):
        pre = rng.standard_normal((B, H, T, D)).astype("f4")
        value = rng.standard_normal((B, H, T, D)).astype("f4")
        query = rng.standard_normal((B, QH, T, D)).astype("f4")
        merged = lambda x: x.transpose(0, 2, 1, 3).reshape(B, T, -1)  # noqa: E731
        f[f"model.layers.{layer}.self_attn.k_proj"] = merged(pre)
        f[f"model.layers.{layer}.self_attn.v_proj"] = merged(value)
        f[f"model.layers.{layer}.self_attn.q_proj"] = merged(query)
        f[f"past_key_values.{layer}.key"] = rotate(pre).astype("f4")
        f[f"past_key_values.{layer}.value"] = value
        if layer == 0:
            truth = {"key": rows_bhtd(rotate(pre).astype("f4")), "value": rows_bhtd(value),
                     "key_pre_rope": rows_btc(merged(pre))}
    write_rows("hf_pair", truth)

# 2. Merged channels with the head count in a `heads` attribute (and one layer's keys in float16).
with h5py.File(path("merged_heads_attr.h5"), "w") as f:
    truth = {}
    for layer in range(2):
        for kind in ("key", "value"):
            x = rng.standard_normal((B, T, H * D)).astype("f2" if kind == "key" else "f4")
            f[f"layer_{layer:02d}/{kind}"] = x
            f[f"layer_{layer:02d}/{kind}"].attrs["axes"] = "btc"
            f[f"layer_{layer:02d}/{kind}"].attrs["heads"] = H
            if layer == 0:
                truth[kind] = rows_btc(x.astype("f4"))
    write_rows("merged_heads_attr", truth)

# 3. Merged channels, no head count anywhere: refused unless a layout file gives kv_heads.
with h5py.File(path("merged_heads_unknown.h5"), "w") as f:
    rows = {}
    for kind in ("key", "value"):
        x = rng.standard_normal((T, H * D)).astype("f4")
        f[f"layer_00/{kind}"] = x
        f[f"layer_00/{kind}"].attrs["axes"] = "tc"
        rows[kind] = x
    write_rows("merged_heads_unknown", rows)
with open(path("kv_heads_hint.json"), "w") as f:
    json.dump({"kv_heads": H}, f)
with open(path("kv_heads_wrong.json"), "w") as f:
    json.dump({"kv_heads": 5}, f)

# 4. A `heads` attribute that does not divide the channels, and one that is not an integer.
with h5py.File(path("merged_heads_bad_count.h5"), "w") as f:
    for kind in ("key", "value"):
        f[f"layer_00/{kind}"] = rng.standard_normal((1, T, H * D)).astype("f4")
        f[f"layer_00/{kind}"].attrs["axes"] = "btc"
        f[f"layer_00/{kind}"].attrs["heads"] = 5
with h5py.File(path("merged_heads_float_attr.h5"), "w") as f:
    for kind in ("key", "value"):
        f[f"layer_00/{kind}"] = rng.standard_normal((1, T, H * D)).astype("f4")
        f[f"layer_00/{kind}"].attrs["axes"] = "btc"
        f[f"layer_00/{kind}"].attrs["heads"] = 1.5

# 5. A custom layout with one axis order per kind: keys/values [b, h, t, d], pre-RoPE keys [b, t, h·d] without a
#    head count (it comes from the keys' head_dim).
with h5py.File(path("custom_per_kind.h5"), "w") as f:
    rows = {}
    for layer in range(2):
        key = rng.standard_normal((B, H, T, D)).astype("f4")
        value = rng.standard_normal((B, H, T, D)).astype("f4")
        pre = rng.standard_normal((B, T, H * D)).astype("f4")
        f[f"cache/L{layer}/K"], f[f"cache/L{layer}/V"], f[f"hooks/L{layer}/Kpre"] = key, value, pre
        if layer == 0:
            rows = {"key": rows_bhtd(key), "value": rows_bhtd(value), "key_pre_rope": rows_btc(pre)}
    write_rows("custom_per_kind", rows)
layout = {"key": "/cache/L{layer}/K", "value": "/cache/L{layer}/V", "key_pre_rope": "/hooks/L{layer}/Kpre",
          "axes": {"key": "bhtd", "value": "bhtd", "key_pre_rope": "btc"}}
with open(path("custom_per_kind.layout.json"), "w") as f:
    json.dump(layout, f)
with open(path("per_kind_missing.layout.json"), "w") as f:
    json.dump({**layout, "axes": {"key": "bhtd", "value": "bhtd"}}, f)
with open(path("hints_with_key.layout.json"), "w") as f:
    json.dump({"key": "/cache/L{layer}/K", "kv_heads": 3}, f)
with open(path("bad_c_axes.layout.json"), "w") as f:
    json.dump({**layout, "axes": "bhtc"}, f)

# 6. One dataset that a layout file reads as two kinds under different axis orders: each reading is checked.
with h5py.File(path("shared_dataset.h5"), "w") as f:
    f["x0"] = rng.standard_normal((1, T, H * D)).astype("f4")
with open(path("shared_two_orders.layout.json"), "w") as f:
    json.dump({"key": "/x{layer}", "value": "/x{layer}", "axes": {"key": "btc", "value": "dbht"}, "kv_heads": H}, f)

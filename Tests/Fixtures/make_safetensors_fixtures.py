#!/usr/bin/env python3
"""Safetensors inputs for the Swift tests (SafetensorsInputTests, SafetensorsCLITests), written by the
`safetensors` Python package at test time: `make_safetensors_fixtures.py DIR`.

DIR/single.safetensors   per-layer names layer_{i}.key / layer_{i}.value, [1, 4, 96, 16] float16, 3 layers,
                         __metadata__ {"model": "toy", "revision": "r1"}
DIR/single.h5            the same arrays as an HDF5 dump (h5py): layer_{i}/key, layer_{i}/value
DIR/vllm/                vLLM's KV connector shape: model.layers.{i}.self_attn.attn.safetensors holding
                         kv_cache [2, 80, 4*16] bfloat16 (keys then values, heads merged), 4 layers,
                         __metadata__ {"num_kv_heads": "4"}
DIR/vllm/layer{i}.f32    numpy's float32 of that layer's keys then values, each [80, 64] row-major
DIR/vllm4d/              kv_cache [2, 40, 2, 8] float16 (heads kept apart), 2 layers, no metadata
DIR/vllm4d/layer{i}.f32  keys then values as float32, each [40, 16]
DIR/f32.safetensors      layer_{i}.key / .value [1, 2, 33, 8] float32 with -0, subnormals, the largest float,
                         2 layers; DIR/f32.f32 holds them as read rows: per layer, key then value, [33, 16]
DIR/bad/                 one bad input per entry of BAD (also the fault corpus's list), with its exit code
                         and message words, in DIR/bad.json: [{"path", "code", "contains": [...]}]
"""
import json
import os
import struct
import sys

import h5py
import numpy as np
import safetensors
from safetensors.numpy import TensorSpec, save_file


# Each bad input (a file or folder in DIR/bad), the exit code kvstat must give, and words its one error line holds.
BAD = [
    ("truncated.safetensors", 65, ("truncated.safetensors", "truncated")),
    ("absurd-length.safetensors", 65, ("absurd-length.safetensors", "header length")),
    ("not-json.safetensors", 65, ("not-json.safetensors", "not valid JSON")),
    ("not-object.safetensors", 65, ("not-object.safetensors", "not a JSON object")),
    ("overlap.safetensors", 65, ("overlap.safetensors", "overlap")),
    ("size-mismatch.safetensors", 65, ("size-mismatch.safetensors", "layer_0.key", "takes 128 bytes")),
    ("negative-shape.safetensors", 65, ("negative-shape.safetensors", "negative")),
    ("duplicate.safetensors", 65, ("duplicate.safetensors", "twice")),
    ("trailing.safetensors", 65, ("trailing.safetensors", "72 bytes after")),
    ("int8.safetensors", 65, ("int8.safetensors", "/layer_0.key", "int8")),
    ("float8.safetensors", 65, ("float8.safetensors", "F8_E4M3")),
    ("mla", 65, ("model.layers.0.self_attn.attn.safetensors", "kv_cache", "MLA")),
    ("empty-folder", 66, ("empty-folder", "no .safetensors files")),
    ("hdf5-folder", 66, ("hdf5-folder", "pass one of them")),
    ("heads-metadata.safetensors", 65, ("heads-metadata.safetensors", "num_kv_heads")),
]


def bfloat16_file(path, tensors, metadata=None):
    """Writes uint16 arrays holding bfloat16 bits as BF16 tensors, through the safetensors package itself."""
    specs = {
        name: TensorSpec(dtype="bfloat16", shape=array.shape, data_ptr=array.ctypes.data, data_len=array.nbytes)
        for name, array in tensors.items()
    }
    safetensors.serialize_file(specs, path, metadata)


def rows(array):
    """[1, heads, tokens, head_dim] → [tokens, heads*head_dim] float32 (kvstat's row order)."""
    _, h, t, d = array.shape
    return array[0].transpose(1, 0, 2).reshape(t, h * d).astype(np.float32)


def header_file(path, header, data):
    """A file with a hand-written header (for inputs the package refuses to write)."""
    text = json.dumps(header).encode() if not isinstance(header, bytes) else header
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(text)) + text + data)


def main(out):
    rng = np.random.default_rng(20240611)
    os.makedirs(out, exist_ok=True)

    # (a) single file, per-layer names, float16; the same arrays as HDF5.
    tensors = {}
    for i in range(3):
        tensors[f"layer_{i}.key"] = (rng.standard_normal((1, 4, 96, 16)) * (1 + i)).astype(np.float16)
        tensors[f"layer_{i}.value"] = (rng.standard_normal((1, 4, 96, 16)) + 0.5).astype(np.float16)
    save_file(tensors, f"{out}/single.safetensors", metadata={"model": "toy", "revision": "r1"})
    with h5py.File(f"{out}/single.h5", "w") as f:
        f.attrs["model"] = "toy"
        f.attrs["revision"] = "r1"
        for name, array in tensors.items():
            f[name.replace(".", "/")] = array

    # (b) vLLM folder: [2, tokens, kv_heads*head_dim] bfloat16, heads in the metadata.
    os.makedirs(f"{out}/vllm", exist_ok=True)
    for i in range(4):
        values = rng.standard_normal((2, 80, 64)).astype(np.float32)
        bits = (values.view(np.uint32) >> 16).astype(np.uint16)  # truncation: an exact bfloat16 value
        bfloat16_file(f"{out}/vllm/model.layers.{i}.self_attn.attn.safetensors", {"kv_cache": bits},
                      {"num_kv_heads": "4"})
        expected = (bits.astype(np.uint32) << 16).view(np.float32)
        expected.tofile(f"{out}/vllm/layer{i}.f32")

    # vLLM-shaped with heads kept apart: [2, tokens, heads, head_dim] float16.
    os.makedirs(f"{out}/vllm4d", exist_ok=True)
    for i in range(2):
        kv = rng.standard_normal((2, 40, 2, 8)).astype(np.float16)
        save_file({"kv_cache": kv}, f"{out}/vllm4d/model.layers.{i}.self_attn.attn.safetensors")
        kv.astype(np.float32).reshape(2, 40, 16).tofile(f"{out}/vllm4d/layer{i}.f32")

    # (c) float32 read back bit for bit.
    special = np.array([-0.0, 1e-45, -3e-39, np.finfo(np.float32).max, -np.finfo(np.float32).max, 1.0],
                       dtype=np.float32)
    f32 = {}
    expected = []
    for i in range(2):
        for kind in ("key", "value"):
            a = rng.standard_normal((1, 2, 33, 8)).astype(np.float32)
            a.reshape(-1)[: special.size] = special
            f32[f"layer_{i}.{kind}"] = a
            expected.append(rows(a))
    save_file(f32, f"{out}/f32.safetensors")
    np.concatenate(expected).tofile(f"{out}/f32.f32")

    # (d) bad inputs.
    bad = f"{out}/bad"
    os.makedirs(bad, exist_ok=True)
    small = {f"layer_{i}.{k}": rng.standard_normal((1, 2, 8, 4)).astype(np.float16)
             for i in range(2) for k in ("key", "value")}
    save_file(small, f"{bad}/good.safetensors")
    whole = open(f"{bad}/good.safetensors", "rb").read()
    open(f"{bad}/truncated.safetensors", "wb").write(whole[:-10])
    open(f"{bad}/absurd-length.safetensors", "wb").write(struct.pack("<Q", 1 << 60) + whole[8:])
    header_file(f"{bad}/not-json.safetensors", b"{this is not json}", b"")
    header_file(f"{bad}/not-object.safetensors", b"[1, 2, 3]", b"")
    entry = {"dtype": "F16", "shape": [1, 2, 8, 4], "data_offsets": [0, 128]}
    header_file(f"{bad}/overlap.safetensors",
                {"layer_0.key": entry, "layer_0.value": {**entry, "data_offsets": [64, 192]}}, bytes(192))
    header_file(f"{bad}/size-mismatch.safetensors", {"layer_0.key": {**entry, "data_offsets": [0, 100]}}, bytes(100))
    header_file(f"{bad}/negative-shape.safetensors", {"layer_0.key": {**entry, "shape": [1, -2, 8, 4]}}, bytes(128))
    header_file(f"{bad}/duplicate.safetensors", b'{"layer_0.key": %s, "layer_0.key": %s}'
                % (json.dumps(entry).encode(), json.dumps(entry).encode()), bytes(128))
    header_file(f"{bad}/trailing.safetensors", {"layer_0.key": entry}, bytes(200))
    ints = {f"layer_{i}.{k}": rng.integers(-100, 100, (1, 2, 8, 4)).astype(np.int8)
            for i in range(2) for k in ("key", "value")}
    save_file(ints, f"{bad}/int8.safetensors")
    header_file(f"{bad}/float8.safetensors",
                {"layer_0.key": {"dtype": "F8_E4M3", "shape": [4], "data_offsets": [0, 4]}}, bytes(4))
    os.makedirs(f"{bad}/mla", exist_ok=True)
    for i in range(2):
        save_file({"kv_cache": rng.standard_normal((16, 576)).astype(np.float16)},
                  f"{bad}/mla/model.layers.{i}.self_attn.attn.safetensors")
    os.makedirs(f"{bad}/empty-folder", exist_ok=True)
    os.makedirs(f"{bad}/hdf5-folder", exist_ok=True)
    with h5py.File(f"{bad}/hdf5-folder/d.h5", "w") as f:
        f["layer_0/key"] = np.zeros((1, 2, 8, 4), np.float16)
    header_file(f"{bad}/heads-metadata.safetensors", {"__metadata__": {"num_kv_heads": "three"},
                "kv_cache": {"dtype": "F16", "shape": [2, 4, 6], "data_offsets": [0, 96]}}, bytes(96))
    missing = [path for path, _, _ in BAD if not os.path.exists(f"{bad}/{path}")]
    assert not missing, missing
    with open(f"{out}/bad.json", "w") as f:
        json.dump([{"path": p, "code": c, "contains": list(w)} for p, c, w in BAD], f, indent=1)


if __name__ == "__main__":
    main(sys.argv[1])

#!/usr/bin/env python3
"""Odd and hostile dumps for the reader's refusal tests (generated at test time, not committed).

Usage: make_odd_dumps.py OUT_DIR

Each file below is small (the largest, `changing.h5`, is a few MB). The Swift tests
(Tests/KVStatTests/OddDumpTests.swift, Tests/kvstatTests/OddDumpCLITests.swift) say what each must give.
Seeds are fixed; h5py's default libver keeps the files readable by HDF5 1.10.
"""
import json
import os
import sys

import h5py
import numpy as np

OUT = sys.argv[1]
os.makedirs(OUT, exist_ok=True)
rng = np.random.default_rng(10)


def tensor(b=1, h=2, t=6, d=4, dtype="f4"):
    return rng.standard_normal((b, h, t, d)).astype(dtype)


def path(name):
    return os.path.join(OUT, name)


def per_layer(f, layers, t=6, **kw):
    for i in layers:
        f[f"layer_{i:02d}/key"] = tensor(t=t, **kw)
        f[f"layer_{i:02d}/value"] = tensor(t=t, **kw)


# 1. Layer numbers with gaps: layers 0, 5, 7 (not 0, 1, 2).
with h5py.File(path("gaps_layers.h5"), "w") as f:
    per_layer(f, [0, 5, 7])

# 2. Stacked tensors that disagree on the number of layers.
with h5py.File(path("stacked_layer_mismatch.h5"), "w") as f:
    f["keys"] = rng.standard_normal((2, 1, 2, 6, 4)).astype("f4")
    f["values"] = rng.standard_normal((3, 1, 2, 6, 4)).astype("f4")
with h5py.File(path("stacked_query_mismatch.h5"), "w") as f:
    f["keys"] = rng.standard_normal((2, 1, 2, 6, 4)).astype("f4")
    f["values"] = rng.standard_normal((2, 1, 2, 6, 4)).astype("f4")
    f["queries"] = rng.standard_normal((3, 1, 4, 6, 4)).astype("f4")
with h5py.File(path("stacked_zero_layers.h5"), "w") as f:
    f["keys"] = np.zeros((0, 1, 2, 6, 4), "f4")
    f["values"] = np.zeros((0, 1, 2, 6, 4), "f4")

# 3. Both stacked and per-layer tensors.
with h5py.File(path("ambiguous.h5"), "w") as f:
    f["keys"] = rng.standard_normal((2, 1, 2, 6, 4)).astype("f4")
    f["values"] = rng.standard_normal((2, 1, 2, 6, 4)).astype("f4")
    per_layer(f, [0])

# 4. Layout files with an unknown key, a bad placeholder, a negative layer count (for custom_thd.h5).
good = {"key": "/cache/L{layer}/K", "value": "/cache/L{layer}/V", "axes": "thd"}
with open(path("typo.layout.yaml"), "w") as out:
    out.write("key: /cache/L{layer}/K\nvalue: /cache/L{layer}/V\naxes: thd\nlenghts: /lengths\n")
with open(path("typo.layout.json"), "w") as out:
    json.dump({**good, "lenghts": "/lengths", "atention_mask": "/m"}, out)
with open(path("wide.layout.yaml"), "w") as out:
    out.write("key: /cache/L{layer:09999999}/K\nvalue: /cache/L{layer:09999999}/V\naxes: thd\n")
with open(path("negative.layout.json"), "w") as out:
    json.dump({**good, "layers": -1}, out)
with open(path("mixed.layout.json"), "w") as out:
    json.dump({**good, "value": "/cache/V"}, out)

# 5. Padding: masks must hold 0/1, lengths must be integers of the right shape.
with h5py.File(path("mask_half.h5"), "w") as f:
    per_layer(f, [0])
    f["attention_mask"] = np.array([[1, 1, 0.5, 1, 0, 0]], "f4")
with h5py.File(path("mask_bool.h5"), "w") as f:
    per_layer(f, [0], b=2)
    f["attention_mask"] = np.array([[0, 1, 1, 1, 1, 0], [1, 1, 1, 0, 0, 0]], bool)
with h5py.File(path("mask_float.h5"), "w") as f:
    per_layer(f, [0], b=2)
    f["attention_mask"] = np.array([[0, 1, 1, 1, 1, 0], [1, 1, 1, 0, 0, 0]], "f2")
with h5py.File(path("mask_int_two.h5"), "w") as f:
    per_layer(f, [0])
    f["attention_mask"] = np.array([[1, 1, 2, 1, 0, 0]], "i8")
with h5py.File(path("mask_huge.h5"), "w") as f:
    per_layer(f, [0])
    f.create_dataset("attention_mask", shape=(1, 2**40), dtype="u1", chunks=(1, 1024))
with h5py.File(path("mask_unwritten.h5"), "w") as f:
    per_layer(f, [0])
    f.create_dataset("attention_mask", shape=(1, 6), dtype="u1", chunks=True)
with h5py.File(path("lengths_fraction.h5"), "w") as f:
    per_layer(f, [0], t=12)
    f["lengths"] = np.array([10.5], "f8")
with h5py.File(path("lengths_float_ok.h5"), "w") as f:
    per_layer(f, [0], b=2)
    f["lengths"] = np.array([5.0, 3.0], "f4")
with h5py.File(path("lengths_rank2.h5"), "w") as f:
    per_layer(f, [0], b=2)
    f["lengths"] = np.array([[5], [3]], "i8")

# 6. Declared but never written; partly written chunks (an error unless only padding is unwritten).
with h5py.File(path("never_written.h5"), "w") as f:
    f.create_dataset("layer_00/key", shape=(1, 2, 6, 4), dtype="f4", chunks=True)
    f["layer_00/value"] = tensor()
with h5py.File(path("never_written_contiguous.h5"), "w") as f:
    f.create_dataset("layer_00/key", shape=(1, 2, 6, 4), dtype="f4")
    f["layer_00/value"] = tensor()
with h5py.File(path("huge_unwritten.h5"), "w") as f:
    for name in ("key", "value"):
        f.create_dataset(f"layer_00/{name}", shape=(1, 2, 2**40, 4), dtype="f2", chunks=(1, 2, 4096, 4))
for name, lengths in (("partial_chunks.h5", None), ("partial_padding_ok.h5", [4]), ("partial_padding_bad.h5", [8])):
    with h5py.File(path(name), "w") as f:
        for kind in ("key", "value"):
            d = f.create_dataset(f"layer_00/{kind}", shape=(1, 2, 12, 4), dtype="f4", chunks=(1, 2, 4, 4),
                                 compression="gzip")
            d[:, :, :4, :] = tensor(t=4)
        if lengths is not None:
            f["lengths"] = np.array(lengths, "i8")

# 7. A group hard-linked into itself (and a soft link to a parent): the walk must not loop.
with h5py.File(path("cycle.h5"), "w") as f:
    per_layer(f, [0])
    f["layers/0/key"] = tensor()
    f["layers/0/value"] = tensor()
    del f["layer_00"]
    f["layers/0/sub"] = f["layers"]
    f["layers/0/up"] = h5py.SoftLink("/layers")

# 8. Virtual datasets: a missing source file is refused, a present one is read.
for name, keep in (("vds_missing.h5", False), ("vds_present.h5", True)):
    source = path(name.replace(".h5", "_source.h5"))
    data = tensor()
    with h5py.File(source, "w") as s:
        s["data"] = data
    layout = h5py.VirtualLayout(shape=data.shape, dtype="f4")
    layout[...] = h5py.VirtualSource(os.path.basename(source), "data", shape=data.shape)
    with h5py.File(path(name), "w") as f:
        f.create_virtual_dataset("layer_00/key", layout, fillvalue=0)
        f["layer_00/value"] = tensor()
    if not keep:
        os.remove(source)

# 10. Odd shapes and types.
with h5py.File(path("scalar_root_key.h5"), "w") as f:
    f["key"] = np.float32(1)
    f["value"] = np.float32(2)
with h5py.File(path("scalar_layer_key.h5"), "w") as f:
    f["layer_00/key"] = np.float32(1)
    f["layer_00/value"] = tensor()
with h5py.File(path("zero_heads.h5"), "w") as f:
    f["layer_00/key"] = np.zeros((1, 0, 6, 4), "f4")
    f["layer_00/value"] = np.zeros((1, 0, 6, 4), "f4")
with h5py.File(path("huge_rank.h5"), "w") as f:
    f["layer_00/key"] = np.zeros((1,) * 32, "f4")
    f["layer_00/value"] = tensor()
with h5py.File(path("string_key.h5"), "w") as f:
    f["layer_00/key"] = np.full((1, 2, 6, 4), b"x")
    f["layer_00/value"] = tensor()
with h5py.File(path("axes_not_string.h5"), "w") as f:
    per_layer(f, [0])
    f["layer_00/key"].attrs["axes"] = np.array([0, 1, 2, 3])
with h5py.File(path("duplicate_kinds.h5"), "w") as f:
    per_layer(f, [0])
    f["layer_00/k"] = tensor()
with h5py.File(path("only_key.h5"), "w") as f:
    f["layer_00/key"] = tensor()
with h5py.File(path("root_one_layer.h5"), "w") as f:
    f["key"], f["value"] = tensor()[0].transpose(1, 0, 2), tensor()[0].transpose(1, 0, 2)  # [t, h, d]
    f["key"].attrs["axes"] = "thd"
    f["value"].attrs["axes"] = "thd"
with h5py.File(path("bfloat16_float_type.h5"), "w") as f:
    # bfloat16 declared as an HDF5 float type (sign 15, exponent 7..14, mantissa 0..6, bias 127).
    bf16 = h5py.h5t.IEEE_F32LE.copy()
    bf16.set_fields(15, 7, 8, 0, 7)
    bf16.set_size(2)
    bf16.set_ebias(127)
    values = tensor()
    bits = (values.view(np.uint32) >> 16).astype(np.uint16)  # truncated: exactly representable
    for name in ("key", "value"):
        space = h5py.h5s.create_simple(values.shape)
        f.require_group("layer_00")
        ds = h5py.h5d.create(f.id, f"layer_00/{name}".encode(), bf16, space)
        ds.write(h5py.h5s.ALL, h5py.h5s.ALL, bits, mtype=bf16)  # the raw bits, no conversion
    np.save(path("bfloat16_float_type.npy"), (bits.astype(np.uint32) << 16).view(np.float32))

# 9. A dump big enough that analyze takes a while (the test rewrites it while it runs).
with h5py.File(path("changing.h5"), "w") as f:
    for i in range(4):
        f[f"layer_{i:02d}/key"] = tensor(h=4, t=2048, d=32, dtype="f2")
        f[f"layer_{i:02d}/value"] = tensor(h=4, t=2048, d=32, dtype="f2")

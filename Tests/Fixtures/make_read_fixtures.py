#!/usr/bin/env python3
"""Dumps for the tensor reader's tests (Tests/KVStatTests/TensorReaderTests.swift), written at test time.

`make_read_fixtures.py OUT_DIR` writes, for each case NAME, OUT_DIR/NAME.h5 and OUT_DIR/NAME.f32: the values numpy
reads back from the file (h5py), as little-endian float32 rows, for each layer in order and each of key, value:
one row per (sequence, token), sequence-major, and one column per channel h * head_dim + d. bfloat16 stored as
uint16 is widened by numpy (bits << 16). OUT_DIR/cases.json lists the cases with what the test checks:
{"name", "layers", "sequences", "heads", "tokens", "head_dim", "direct"}; "direct" says whether kvstat should
decode the chunks itself (chunked, filters gzip/shuffle only, not float64) or read through libhdf5.

Covers: every axis order kvstat reads (bhtd, bthd, thd, htd, bhdt with tokens innermost, stacked lbhtd);
float16, bfloat16 (uint16 + dtype attribute), float32, float64; little- and big-endian; contiguous, chunked,
gzip, shuffle + gzip, gzip + fletcher32 (libhdf5's pipeline); chunks that do not line up with reads or heads;
chunks written with a filter mask that skips filters (H5Dwrite_chunk); float16 subnormals, ±0, ±inf and NaN.
OUT_DIR/corrupt.json lists dumps whose layers/0/value has a corrupt gzip chunk (gzip; shuffle + gzip).
Seeded: the same bytes on every run with the same numpy.
"""
import json
import os
import sys
import zlib

import h5py
import numpy as np

OUT = sys.argv[1]
os.makedirs(OUT, exist_ok=True)
CASES = []
CORRUPT = []
rng = np.random.default_rng(20261130)


def values(shape):
    """Normal values with some float16 specials (a subnormal, ±0, ±inf, NaN) in fixed places."""
    x = rng.standard_normal(shape).astype(np.float32) * 3
    flat = x.reshape(-1)
    flat[[3, 50, 77, 91, 120, 200]] = [6.0e-8, -0.0, np.inf, -np.inf, np.nan, 1.0e-6]
    return x


def bf16_bits(x):
    """bfloat16 bit patterns of float32 `x`, rounded to nearest even (NaN kept quiet)."""
    u = x.astype(np.float32).view(np.uint32).astype(np.uint64)
    rounded = ((u + 0x7FFF + ((u >> 16) & 1)) >> 16).astype(np.uint16)
    rounded[np.isnan(x)] = 0x7FC0
    return rounded


def rows(stored, axes, widen):
    """The reader's contract from numpy's view of the stored array: [sequences * tokens, heads * head_dim]."""
    x = widen(stored).astype(np.float32)
    letters = list(axes)
    for axis in "bh":
        if axis not in letters:
            x = np.expand_dims(x, 0)
            letters.insert(0, axis)
    x = np.transpose(x, [letters.index(a) for a in "bthd"])
    b, t, h, d = x.shape
    return x.reshape(b * t, h * d)


def add(name, axes, dtype="f2", layers=2, B=2, H=4, T=300, D=16, stacked=False, bf16=False, direct=True,
        writer=None, **create):
    path = f"{OUT}/{name}.h5"
    shape = {"b": B, "h": H, "t": T, "d": D}
    out = []
    with h5py.File(path, "w") as f:
        f.attrs["kvstat_format"] = "kvstat.dump/1"
        if stacked:
            data = {}
            for kind in ("key", "value"):
                x = values([layers] + [shape[a] for a in axes if a != "l"])
                stored = bf16_bits(x).astype(dtype) if bf16 else x.astype(dtype)
                ds = f.create_dataset(kind + "s", data=stored, **create)
                ds.attrs["axes"] = axes
                if bf16:
                    ds.attrs["dtype"] = "bfloat16"
                data[kind] = ds[...]
            for l in range(layers):
                for kind in ("key", "value"):
                    out.append(rows(data[kind][l], axes.replace("l", ""), widen(bf16)))
        else:
            for l in range(layers):
                for kind in ("key", "value"):
                    x = values([shape[a] for a in axes])
                    stored = bf16_bits(x).astype(dtype) if bf16 else x.astype(dtype)
                    if writer:
                        ds = writer(f, f"layers/{l}/{kind}", stored)
                    else:
                        ds = f.create_dataset(f"layers/{l}/{kind}", data=stored, **create)
                    ds.attrs["axes"] = axes
                    if bf16:
                        ds.attrs["dtype"] = "bfloat16"
                    out.append(rows(ds[...], axes, widen(bf16)))
    np.concatenate([r.reshape(-1) for r in out]).astype("<f4").tofile(f"{OUT}/{name}.f32")
    CASES.append({"name": name, "layers": layers, "sequences": B if "b" in axes else 1,
                  "heads": H if "h" in axes else 1, "tokens": T, "head_dim": D, "direct": direct})


def widen(bf16):
    if bf16:
        return lambda a: (a.astype(np.uint32) << 16).view(np.float32)
    return lambda a: a


def masked_chunks(f, name, stored):
    """A gzip + shuffle dataset whose chunks are written raw with every filter mask: 0 (both filters), 1 (shuffle
    skipped: gzip of the plain bytes), 2 (gzip skipped: shuffled bytes), 3 (both skipped: the plain bytes)."""
    chunks = (1, 2, 64, 16)
    ds = f.create_dataset(name, shape=stored.shape, dtype=stored.dtype, chunks=chunks, compression="gzip",
                          shuffle=True)
    width = stored.dtype.itemsize
    index = 0
    for b in range(stored.shape[0]):
        for h in range(0, stored.shape[1], chunks[1]):
            for t in range(0, stored.shape[2], chunks[2]):
                block = np.zeros(chunks, dtype=stored.dtype)  # edge chunks are stored whole
                part = stored[b:b + 1, h:h + chunks[1], t:t + chunks[2], :]
                block[:, :part.shape[1], :part.shape[2], :] = part
                plain = block.tobytes()
                shuffled = np.frombuffer(plain, np.uint8).reshape(-1, width).T.tobytes()
                mask = index % 4
                payload = {0: zlib.compress(shuffled), 1: zlib.compress(plain), 2: shuffled, 3: plain}[mask]
                # Filter 0 of the pipeline is shuffle, filter 1 gzip: bit 0 skips shuffle, bit 1 skips gzip.
                ds.id.write_direct_chunk((b, h, t, 0), payload, filter_mask=mask)
                index += 1
    assert np.array_equal(ds[...].view(np.uint16), stored.view(np.uint16)), "libhdf5 reads the masked chunks back"
    return ds


def corrupt(name, **create):
    """A one-layer gzip dump whose second chunk of layers/0/value has garbage in the middle of its stored bytes."""
    path = f"{OUT}/{name}.h5"
    with h5py.File(path, "w") as f:
        f.attrs["kvstat_format"] = "kvstat.dump/1"
        for kind in ("key", "value"):
            f.create_dataset(f"layers/0/{kind}", data=values((1, 4, 300, 16)).astype("f2"), chunks=(1, 4, 64, 16),
                             **create)
        info = f["layers/0/value"].id.get_chunk_info(1)
    with open(path, "r+b") as raw:
        raw.seek(info.byte_offset + info.size // 2)
        raw.write(b"\xff" * 64)
    CORRUPT.append(name)


gz = {"compression": "gzip"}
gzs = {"compression": "gzip", "shuffle": True}
add("bhtd_f16_chunked", "bhtd", chunks=(1, 4, 64, 16))
add("bhtd_f16_gzip_odd_chunks", "bhtd", chunks=(1, 3, 50, 16), **gz)
add("bhtd_f16_shuffle_gzip", "bhtd", chunks=(1, 2, 64, 8), **gzs)
add("bthd_bf16_shuffle_gzip", "bthd", "<u2", bf16=True, chunks=(1, 64, 4, 16), **gzs)
add("thd_f32_shuffle_gzip", "thd", "f4", chunks=(100, 2, 16), **gzs)
add("htd_f16_gzip_level9", "htd", chunks=(4, 37, 16), compression="gzip", compression_opts=9)
add("bhdt_f16_gzip_tokens_innermost", "bhdt", chunks=(1, 2, 16, 64), **gz)
add("bhtd_f16_big_endian_shuffle_gzip", "bhtd", ">f2", chunks=(1, 4, 64, 16), **gzs)
add("bthd_f32_big_endian_gzip", "bthd", ">f4", chunks=(1, 32, 4, 16), **gz)
add("bthd_bf16_big_endian_shuffle_gzip", "bthd", ">u2", bf16=True, chunks=(1, 32, 4, 16), **gzs)
add("bhtd_f32_big_endian_contiguous", "bhtd", ">f4", direct=False)
add("bhtd_f16_contiguous", "bhtd", direct=False)
add("bhtd_bf16_contiguous", "bhtd", "<u2", bf16=True, direct=False)
add("bhtd_f64_gzip", "bhtd", "f8", chunks=(1, 4, 64, 16), direct=False, **gz)
add("bhtd_f16_gzip_fletcher32", "bhtd", chunks=(1, 4, 64, 16), fletcher32=True, direct=False, **gz)
add("lbhtd_f16_stacked_gzip", "lbhtd", stacked=True, layers=3, chunks=(1, 1, 2, 64, 16), **gzs)
add("bhtd_f16_filter_masks", "bhtd", writer=masked_chunks)
add("bhtd_f16_one_chunk", "bhtd", chunks=(2, 4, 300, 16), **gzs)
# Large enough (> 65536 elements per read) that whole-sequence reads run on several worker threads.
big = {"layers": 1, "B": 1, "H": 8, "T": 1024, "D": 32}
add("bhtd_f16_shuffle_gzip_parallel", "bhtd", chunks=(1, 4, 96, 32), **big, **gzs)
add("bhtd_f16_chunked_parallel", "bhtd", chunks=(1, 8, 256, 32), **big)
add("bthd_f16_contiguous_parallel", "bthd", direct=False, **big)
# Unfiltered chunks that do not line up with reads, heads or layers: parts of them are read straight from the file.
add("bhtd_f16_chunked_odd", "bhtd", chunks=(1, 3, 50, 16))
add("bthd_f32_big_endian_chunked", "bthd", ">f4", chunks=(1, 64, 3, 16))
add("bhdt_f16_chunked_tokens_innermost", "bhdt", chunks=(1, 2, 16, 64))
add("lbhtd_bf16_stacked_chunked", "lbhtd", "<u2", bf16=True, stacked=True, layers=3, chunks=(2, 1, 3, 40, 16))
corrupt("corrupt_gzip", **gz)
corrupt("corrupt_shuffle_gzip", **gzs)
json.dump(CASES, open(f"{OUT}/cases.json", "w"), indent=1)
json.dump(CORRUPT, open(f"{OUT}/corrupt.json", "w"))

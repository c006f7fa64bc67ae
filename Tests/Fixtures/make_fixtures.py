#!/usr/bin/env python3
"""Deterministic generator for the kvstat HDF5 test fixtures.

Run `python3 Tests/Fixtures/make_fixtures.py` from anywhere; it (re)creates every
file under Tests/Fixtures/dumps/ plus Tests/Fixtures/bad_inputs.json.

Files are written with h5py's DEFAULT libver (superblock v0), so Debian's
libhdf5 1.10.8 (used by the Swift reader) can open them.  Never pass
libver='latest' here.

For every good fixture NAME.h5 this writes:
  NAME.truth.json  -- shape/dtype/layout metadata + "expect" block
  NAME.truth.f32   -- little-endian float32; for layer l, for kind in "kinds":
                      rows = valid (b, t) b-major/t-ascending, cols = h*D + d
See Tests/Fixtures/README.md for the per-fixture description.
"""

import json
import zlib
from pathlib import Path

import h5py
import numpy as np

HERE = Path(__file__).resolve().parent
OUT = HERE / "dumps"

# Value written into padded (invalid) token positions: finite, exact in
# float16/bfloat16, and far outside the data range, so a reader that fails to
# drop padding produces visibly wrong statistics.
PAD_FILL = 512.0

GZIP = dict(compression="gzip", compression_opts=4)


# --------------------------------------------------------------------------
# numeric helpers
# --------------------------------------------------------------------------

def rng_for(name):
    """Return a numpy Generator seeded from a stable hash of the fixture name."""
    return np.random.default_rng(zlib.crc32(name.encode("utf-8")))


def f32_to_bf16_bits(x):
    """Round float32 values to bfloat16 (nearest-even) and return uint16 bit patterns."""
    x = np.asarray(x, dtype=np.float32)
    assert np.all(np.isfinite(x)), "bfloat16 fixtures must be finite"
    u = x.view(np.uint32).astype(np.uint64)
    r = (u + 0x7FFF + ((u >> 16) & 1)) >> 16
    return r.astype(np.uint16)


def bf16_bits_to_f32(bits):
    """Expand uint16 bfloat16 bit patterns to exact float32 values."""
    return (np.asarray(bits, dtype=np.uint16).astype(np.uint32) << 16).view(np.float32)


def quantize(x, dtype, to_bf16=None):
    """Return (array to store in HDF5, exact float32 image of the stored value) for dtype.

    `to_bf16` rounds float32 to bfloat16 bit patterns (default `f32_to_bf16_bits`, finite values only)."""
    x = np.asarray(x, dtype=np.float64)
    if dtype == "float16":
        s = x.astype(np.float16)
        return s, s.astype(np.float32)
    if dtype == "float32":
        s = x.astype(np.float32)
        return s, s.copy()
    if dtype == "float64":
        return x.copy(), x.astype(np.float32)
    if dtype == "bfloat16":
        bits = (to_bf16 or f32_to_bf16_bits)(x.astype(np.float32))
        return bits, bf16_bits_to_f32(bits)
    raise ValueError(dtype)


def make_tensor(rng, shape_bhtd, scale, offset=0.0):
    """Random normal [B,H,T,D] float64 tensor with per-channel scales and means."""
    d = shape_bhtd[-1]
    chan_scale = np.geomspace(0.25, 4.0, d)          # varied per-dim scales
    chan_mean = offset * np.linspace(-1.0, 1.0, d)   # non-zero per-dim means
    x = rng.standard_normal(shape_bhtd) * scale * chan_scale + chan_mean
    # give one head a different overall magnitude ("outlier head")
    x[:, -1] *= 3.0
    return x


def apply_padding(x_bhtd, valid_bt):
    """Overwrite padded (b, t) positions of a [B,H,T,D] tensor with PAD_FILL."""
    return np.where(valid_bt[:, None, :, None], x_bhtd, PAD_FILL)


def lengths_mask(lengths, t):
    """Right-padding validity mask [B,T] from per-sequence lengths."""
    return np.arange(t)[None, :] < np.asarray(lengths)[:, None]


def to_rows(x_bhtd, valid_bt):
    """[B,H,T,D] -> [valid tokens, H*D] rows, b-major then t ascending, col = h*D + d."""
    b, h, t, d = x_bhtd.shape
    btc = np.transpose(x_bhtd, (0, 2, 1, 3)).reshape(b, t, h * d)
    return btc[valid_bt]


def bhtd_to(x_bhtd, axes):
    """Transpose a logical [B,H,T,D] array into the on-disk axis order `axes` (letters of bhtd)."""
    if "b" not in axes:
        assert x_bhtd.shape[0] == 1
        x_bhtd = x_bhtd[0]
        src = "htd"
    else:
        src = "bhtd"
    return np.transpose(x_bhtd, [src.index(a) for a in axes])


# --------------------------------------------------------------------------
# writing helpers
# --------------------------------------------------------------------------

def new_file(name):
    """Open OUT/name for writing with h5py's default (1.8-compatible) file format."""
    return h5py.File(OUT / name, "w")


def put(f, path, data, **kw):
    """Create dataset `path` (intermediate groups created) without timestamps."""
    return f.create_dataset(path, data=data, track_times=False, **kw)


class Truth:
    """Collects the logical tensors of one good fixture and writes its truth files."""

    def __init__(self, name, *, layers, kv_heads, query_heads, head_dim, batch,
                 max_tokens, kinds, dtype, layout, valid=None, padding=None):
        """Record fixture metadata; valid is the [B,T] bool mask (None = all valid)."""
        self.name = name
        self.meta = dict(layers=layers, kv_heads=kv_heads, query_heads=query_heads,
                         head_dim=head_dim, sequences=batch, max_tokens=max_tokens,
                         kinds=list(kinds), dtype=dtype, layout=layout)
        self.valid = (np.ones((batch, max_tokens), bool) if valid is None
                      else np.asarray(valid, bool))
        self.padding = padding or {"kind": "none"}
        self.tensors = {}
        self.sources = {}
        self.expect = {}

    def heads(self, kind):
        """Number of heads of a tensor kind (query_heads for query, kv_heads otherwise)."""
        return self.meta["query_heads"] if kind == "query" else self.meta["kv_heads"]

    def new(self, rng, layer, kind, scale, offset=0.0):
        """Draw the logical float64 [B,H,T,D] tensor for (layer, kind) with padding applied."""
        shape = (self.meta["sequences"], self.heads(kind), self.meta["max_tokens"],
                 self.meta["head_dim"])
        return apply_padding(make_tensor(rng, shape, scale, offset), self.valid)

    def add(self, layer, kind, x_bhtd, path, axes, layer_index=None):
        """Quantize x to the fixture dtype, remember it, and return the array to store (on-disk axes)."""
        stored, f32 = quantize(x_bhtd, self.meta["dtype"])
        self.tensors[(layer, kind)] = f32
        src = {"path": path, "axes": axes}
        if layer_index is not None:
            src["layer_index"] = layer_index
        self.sources.setdefault(str(layer), {})[kind] = src
        return bhtd_to(stored, axes.replace("l", ""))   # stacked: per-layer slice

    def add_raw(self, layer, kind, stored_bhtd, path, axes):
        """Remember an already-quantized stored tensor (used for planted NaN/Inf) and return it on-disk."""
        assert self.meta["dtype"] == "float32"
        self.tensors[(layer, kind)] = np.asarray(stored_bhtd, np.float32)
        self.sources.setdefault(str(layer), {})[kind] = {"path": path, "axes": axes}
        return bhtd_to(np.asarray(stored_bhtd, np.float32), axes)

    def write(self):
        """Write NAME.truth.json and NAME.truth.f32 next to the .h5 file."""
        m = self.meta
        chunks = []
        for layer in range(m["layers"]):
            for kind in m["kinds"]:
                rows = to_rows(self.tensors[(layer, kind)], self.valid)
                assert rows.shape == (int(self.valid.sum()), self.heads(kind) * m["head_dim"])
                chunks.append(rows.astype("<f4").tobytes())
        expect = {
            "padding": self.padding,
            "sequence_lengths": [int(v) for v in self.valid.sum(axis=1)],
            "nonfinite": {},
        }
        expect.update(self.expect)
        doc = dict(m)
        doc["tokens"] = int(self.valid.sum())
        doc["expect"] = expect
        doc["sources"] = self.sources
        order = ["layers", "kv_heads", "query_heads", "head_dim", "sequences", "tokens",
                 "max_tokens", "kinds", "dtype", "layout", "expect", "sources"]
        doc = {k: doc[k] for k in order}
        (OUT / f"{self.name}.truth.json").write_text(json.dumps(doc, indent=2) + "\n")
        (OUT / f"{self.name}.truth.f32").write_bytes(b"".join(chunks))


# --------------------------------------------------------------------------
# good fixtures
# --------------------------------------------------------------------------

def fx_perlayer_layer_nn():
    """1: layer_NN/{key,value} groups, float16, contiguous, two planted f16 subnormals."""
    name = "perlayer_layer_nn"
    rng = rng_for(name)
    tr = Truth(name, layers=3, kv_heads=2, query_heads=None, head_dim=4, batch=1,
               max_tokens=6, kinds=["key", "value"], dtype="float16", layout="per-layer")
    with new_file(name + ".h5") as f:
        for l in range(3):
            k = tr.new(rng, l, "key", scale=1.0 + l, offset=2.0)
            if l == 0:
                k[0, 0, 1, 0] = 3.0e-6      # float16 subnormal
                k[0, 1, 4, 3] = -4.5e-5     # float16 subnormal
            v = tr.new(rng, l, "value", scale=0.25)
            put(f, f"layer_{l:02d}/key", tr.add(l, "key", k, f"/layer_{l:02d}/key", "bhtd"))
            put(f, f"layer_{l:02d}/value", tr.add(l, "value", v, f"/layer_{l:02d}/value", "bhtd"))
    tr.expect["float16_subnormals"] = {"layer0.key": 2}
    tr.write()


def fx_perlayer_layers_slash():
    """2: layers/<i>/{k,v,q}, 11 layers (numeric order), GQA queries, float32, /lengths."""
    name = "perlayer_layers_slash"
    rng = rng_for(name)
    L, B, H, Hq, T, D = 11, 2, 2, 4, 5, 4
    lengths = np.array([5, 3], dtype=np.int64)
    tr = Truth(name, layers=L, kv_heads=H, query_heads=Hq, head_dim=D, batch=B,
               max_tokens=T, kinds=["key", "value", "query"], dtype="float32",
               layout="per-layer", valid=lengths_mask(lengths, T),
               padding={"kind": "lengths", "path": "/lengths"})
    with new_file(name + ".h5") as f:
        for l in range(L):
            for kind, short, scale, off in (("key", "k", 1.5, 1.0), ("value", "v", 0.5, 0.0),
                                            ("query", "q", 2.0, -0.5)):
                x = tr.new(rng, l, kind, scale=scale * (1 + 0.1 * l), offset=off)
                p = f"layers/{l}/{short}"
                put(f, p, tr.add(l, kind, x, "/" + p, "bhtd"))
        put(f, "lengths", lengths)
    tr.expect["note"] = "layers 0..10: lexicographic order (0,1,10,2,...) differs from numeric"
    tr.write()


def fx_perlayer_hf_names():
    """3a: root datasets model.layers.<i>.self_attn.{k_proj,v_proj} (dots in names), float64."""
    name = "perlayer_hf_names"
    rng = rng_for(name)
    L, B, H, T, D = 2, 1, 2, 5, 4
    tr = Truth(name, layers=L, kv_heads=H, query_heads=None, head_dim=D, batch=B,
               max_tokens=T, kinds=["key", "value"], dtype="float64", layout="per-layer")
    with new_file(name + ".h5") as f:
        for l in range(L):
            for kind, short, scale in (("key", "k_proj", 3.0), ("value", "v_proj", 0.1)):
                x = tr.new(rng, l, kind, scale=scale, offset=0.5)
                p = f"model.layers.{l}.self_attn.{short}"
                put(f, p, tr.add(l, kind, x, "/" + p, "bhtd"))
    tr.write()


def fx_perlayer_hf_groups():
    """3b: nested groups model/layers/<i>/self_attn/{k_proj,v_proj,key_pre_rope}, float64, B=2."""
    name = "perlayer_hf_groups"
    rng = rng_for(name)
    L, B, H, T, D = 2, 2, 2, 5, 4
    tr = Truth(name, layers=L, kv_heads=H, query_heads=None, head_dim=D, batch=B,
               max_tokens=T, kinds=["key", "value", "key_pre_rope"], dtype="float64",
               layout="per-layer")
    with new_file(name + ".h5") as f:
        for l in range(L):
            for kind, short, scale in (("key", "k_proj", 2.0), ("value", "v_proj", 0.3),
                                       ("key_pre_rope", "key_pre_rope", 1.2)):
                x = tr.new(rng, l, kind, scale=scale, offset=1.0)
                p = f"model/layers/{l}/self_attn/{short}"
                put(f, p, tr.add(l, kind, x, "/" + p, "bhtd"))
    tr.write()


def fx_perlayer_keys_values():
    """4: layer_<i>/{keys,values}, bfloat16 (uint16 + dataset attr), chunked along T, gzip+shuffle."""
    name = "perlayer_keys_values"
    rng = rng_for(name)
    L, B, H, T, D = 2, 1, 2, 10, 4
    tr = Truth(name, layers=L, kv_heads=H, query_heads=None, head_dim=D, batch=B,
               max_tokens=T, kinds=["key", "value"], dtype="bfloat16", layout="per-layer")
    with new_file(name + ".h5") as f:
        for l in range(L):
            for kind, plural, scale in (("key", "keys", 4.0), ("value", "values", 0.05)):
                x = tr.new(rng, l, kind, scale=scale, offset=3.0)
                p = f"layer_{l}/{plural}"
                ds = put(f, p, tr.add(l, kind, x, "/" + p, "bhtd"),
                         chunks=(B, H, 4, D), shuffle=True, **GZIP)
                ds.attrs["dtype"] = "bfloat16"       # variable-length UTF-8 string
    tr.expect["bfloat16_attribute"] = {"on": "dataset", "name": "dtype",
                                       "string": "variable-length UTF-8"}
    tr.write()


def fx_stacked_5d():
    """5: root /keys,/values,/queries [L,B,H,T,D] float16, chunked gzip+shuffle, left-padded mask."""
    name = "stacked_5d"
    rng = rng_for(name)
    L, B, H, T, D = 2, 2, 2, 9, 4
    mask = np.ones((B, T), dtype=np.uint8)
    mask[0, :3] = 0                                  # sequence 0 left-padded by 3
    tr = Truth(name, layers=L, kv_heads=H, query_heads=H, head_dim=D, batch=B,
               max_tokens=T, kinds=["key", "value", "query"], dtype="float16",
               layout="stacked", valid=mask.astype(bool),
               padding={"kind": "attention_mask", "path": "/attention_mask",
                        "style": "left-padded"})
    stacks = {}
    for kind, path, scale in (("key", "/keys", 2.0), ("value", "/values", 0.5),
                              ("query", "/queries", 1.0)):
        per_layer = []
        for l in range(L):
            x = tr.new(rng, l, kind, scale=scale, offset=1.5)
            per_layer.append(tr.add(l, kind, x, path, "lbhtd", layer_index=l))
        stacks[path] = np.stack(per_layer)           # [L,B,H,T,D]
    with new_file(name + ".h5") as f:
        for path, arr in stacks.items():
            put(f, path.lstrip("/"), arr, chunks=(1, 1, H, 4, D), shuffle=True, **GZIP)
        put(f, "attention_mask", mask)
    tr.write()


def fx_stacked_4d():
    """6: root /keys,/values [L,H,T,D] (batch 1 implied), bfloat16 via FILE attribute dtype."""
    name = "stacked_4d"
    rng = rng_for(name)
    L, H, T, D = 3, 2, 7, 4
    tr = Truth(name, layers=L, kv_heads=H, query_heads=None, head_dim=D, batch=1,
               max_tokens=T, kinds=["key", "value"], dtype="bfloat16", layout="stacked")
    stacks = {}
    for kind, path, scale in (("key", "/keys", 6.0), ("value", "/values", 0.02)):
        per_layer = []
        for l in range(L):
            x = tr.new(rng, l, kind, scale=scale, offset=-2.0)
            per_layer.append(tr.add(l, kind, x, path, "lhtd", layer_index=l))
        stacks[path] = np.stack(per_layer)           # [L,H,T,D]
    with new_file(name + ".h5") as f:
        for path, arr in stacks.items():
            put(f, path.lstrip("/"), arr)
        # fixed-length (8 byte) ASCII, NULLPAD string -- deliberately NOT the
        # vlen UTF-8 that fixture 4 uses, so the reader must handle both.
        f.attrs["dtype"] = np.bytes_(b"bfloat16")
    tr.expect["bfloat16_attribute"] = {"on": "file root", "name": "dtype",
                                       "string": "fixed-length 8-byte ASCII, NULLPAD"}
    tr.write()


def fx_custom_thd():
    """7: /cache/L{layer}/{K,V,Q} stored [T,H,D] + custom_thd.layout.json/.yaml layout files."""
    name = "custom_thd"
    rng = rng_for(name)
    L, H, Hq, T, D = 2, 2, 4, 9, 4
    tr = Truth(name, layers=L, kv_heads=H, query_heads=Hq, head_dim=D, batch=1,
               max_tokens=T, kinds=["key", "value", "query"], dtype="float32", layout="custom")
    with new_file(name + ".h5") as f:
        for l in range(L):
            for kind, short, scale in (("key", "K", 1.0), ("value", "V", 0.7), ("query", "Q", 1.3)):
                x = tr.new(rng, l, kind, scale=scale, offset=0.25)
                p = f"cache/L{l}/{short}"
                put(f, p, tr.add(l, kind, x, "/" + p, "thd"))
    layout = {"key": "/cache/L{layer}/K", "value": "/cache/L{layer}/V",
              "query": "/cache/L{layer}/Q", "axes": "thd"}
    (OUT / f"{name}.layout.json").write_text(json.dumps(layout, indent=2) + "\n")
    (OUT / f"{name}.layout.yaml").write_text(
        "".join(f"{k}: {v}\n" for k, v in layout.items()))
    tr.expect["layout_files"] = [f"{name}.layout.json", f"{name}.layout.yaml"]
    tr.write()


def fx_axes_attr_bthd():
    """8: layer_NN/{key,value} stored [B,T,H,D] with dataset attribute axes="bthd"."""
    name = "axes_attr_bthd"
    rng = rng_for(name)
    L, B, H, T, D = 2, 2, 2, 6, 4
    tr = Truth(name, layers=L, kv_heads=H, query_heads=None, head_dim=D, batch=B,
               max_tokens=T, kinds=["key", "value"], dtype="float32", layout="per-layer")
    with new_file(name + ".h5") as f:
        for l in range(L):
            for kind, scale in (("key", 1.0), ("value", 0.4)):
                x = tr.new(rng, l, kind, scale=scale, offset=0.75)
                p = f"layer_{l:02d}/{kind}"
                ds = put(f, p, tr.add(l, kind, x, "/" + p, "bthd"))
                ds.attrs["axes"] = "bthd"            # variable-length UTF-8 string
    tr.write()


def fx_nan_inf():
    """9: like fixture 1 but float32 with NaN/+Inf/-Inf planted in layer 0 keys."""
    name = "nan_inf"
    rng = rng_for(name)
    L, B, H, T, D = 2, 1, 2, 6, 4
    tr = Truth(name, layers=L, kv_heads=H, query_heads=None, head_dim=D, batch=B,
               max_tokens=T, kinds=["key", "value"], dtype="float32", layout="per-layer")
    plants = [((0, 0, 1, 2), np.nan), ((0, 1, 4, 0), np.nan), ((0, 0, 3, 3), np.inf),
              ((0, 1, 0, 1), -np.inf), ((0, 1, 5, 3), -np.inf)]
    with new_file(name + ".h5") as f:
        for l in range(L):
            k = tr.new(rng, l, "key", scale=1.0, offset=1.0).astype(np.float32)
            v = tr.new(rng, l, "value", scale=0.5).astype(np.float32)
            if l == 0:
                for idx, val in plants:
                    k[idx] = val
            put(f, f"layer_{l:02d}/key", tr.add_raw(l, "key", k, f"/layer_{l:02d}/key", "bhtd"))
            put(f, f"layer_{l:02d}/value",
                tr.add_raw(l, "value", v, f"/layer_{l:02d}/value", "bhtd"))
    positions = []
    for (b, h, t, d), val in plants:
        kind = "nan" if np.isnan(val) else ("+inf" if val > 0 else "-inf")
        positions.append({"row": b * T + t, "col": h * D + d, "value": kind})
    positions.sort(key=lambda p: (p["row"], p["col"]))
    tr.expect["nonfinite"] = {"layer0.key": 5}
    tr.expect["nan"] = {"layer0.key": 2}
    tr.expect["posinf"] = {"layer0.key": 1}
    tr.expect["neginf"] = {"layer0.key": 2}
    tr.expect["nonfinite_positions"] = {"layer0.key": positions}
    tr.write()


def fx_large_block_tokens():
    """10: L=1,B=2,H=2,T=300,D=8 float16 chunked (1,2,64,8) gzip, /lengths=[300,137]."""
    name = "large_block_tokens"
    rng = rng_for(name)
    L, B, H, T, D = 1, 2, 2, 300, 8
    lengths = np.array([300, 137], dtype=np.int64)
    tr = Truth(name, layers=L, kv_heads=H, query_heads=None, head_dim=D, batch=B,
               max_tokens=T, kinds=["key", "value"], dtype="float16", layout="per-layer",
               valid=lengths_mask(lengths, T), padding={"kind": "lengths", "path": "/lengths"})
    with new_file(name + ".h5") as f:
        for kind, scale in (("key", 2.0), ("value", 0.5)):
            x = tr.new(rng, 0, kind, scale=scale, offset=1.0)
            p = f"layer_00/{kind}"
            put(f, p, tr.add(0, kind, x, "/" + p, "bhtd"), chunks=(1, 2, 64, 8), **GZIP)
        put(f, "lengths", lengths)
    tr.write()


# --------------------------------------------------------------------------
# bad fixtures
# --------------------------------------------------------------------------

def f16(rng, shape):
    """Small random float16 array for bad fixtures."""
    return rng.standard_normal(shape).astype(np.float16)


def bad_not_hdf5():
    """Plain text file with a .h5 extension."""
    (OUT / "bad_not_hdf5.h5").write_text(
        "this is not an HDF5 file\nkey,value\n1.0,2.0\n")


def bad_truncated():
    """Valid per-layer float16 dump with large contiguous data, truncated to 60% of its bytes."""
    rng = rng_for("bad_truncated")
    path = OUT / "bad_truncated.h5"
    with new_file(path.name) as f:
        for l in range(2):
            put(f, f"layer_{l:02d}/key", f16(rng, (1, 2, 64, 8)))
            put(f, f"layer_{l:02d}/value", f16(rng, (1, 2, 64, 8)))
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * 0.6)])


def bad_missing_value():
    """layer_00 has key+value, layer_01 has only key."""
    rng = rng_for("bad_missing_value")
    with new_file("bad_missing_value.h5") as f:
        put(f, "layer_00/key", f16(rng, (1, 2, 6, 4)))
        put(f, "layer_00/value", f16(rng, (1, 2, 6, 4)))
        put(f, "layer_01/key", f16(rng, (1, 2, 6, 4)))


def bad_shape_mismatch():
    """layer_00 key [1,2,8,4] vs value [1,2,7,4]."""
    rng = rng_for("bad_shape_mismatch")
    with new_file("bad_shape_mismatch.h5") as f:
        put(f, "layer_00/key", f16(rng, (1, 2, 8, 4)))
        put(f, "layer_00/value", f16(rng, (1, 2, 7, 4)))


def bad_zero_tokens():
    """Every tensor has T = 0 (shape [1,2,0,4])."""
    with new_file("bad_zero_tokens.h5") as f:
        for l in range(2):
            put(f, f"layer_{l:02d}/key", np.zeros((1, 2, 0, 4), np.float16))
            put(f, f"layer_{l:02d}/value", np.zeros((1, 2, 0, 4), np.float16))


def bad_all_padded():
    """Well-formed tensors but /lengths = [0, 0]."""
    rng = rng_for("bad_all_padded")
    with new_file("bad_all_padded.h5") as f:
        put(f, "layer_00/key", f16(rng, (2, 2, 5, 4)))
        put(f, "layer_00/value", f16(rng, (2, 2, 5, 4)))
        put(f, "lengths", np.zeros(2, np.int64))


def bad_lzf():
    """/layer_00/key compressed with h5py's LZF filter (id 32000); everything else gzip."""
    rng = rng_for("bad_lzf")
    with new_file("bad_lzf.h5") as f:
        # h5py registers LZF as an OPTIONAL filter: a chunk that does not shrink is
        # stored raw (filter-mask bit set) and stays readable without the plugin.
        # Repeat each token 8x so every chunk really is LZF-encoded.
        key = np.repeat(f16(rng, (1, 2, 2, 4)), 8, axis=2)          # [1,2,16,4]
        put(f, "layer_00/key", key, chunks=(1, 2, 8, 4), compression="lzf")
        put(f, "layer_00/value", f16(rng, (1, 2, 16, 4)), chunks=(1, 2, 8, 4), **GZIP)


def bad_absurd_shape():
    """/layer_00/key is 6-D [2,1,2,6,4,3] (no singleton-squeeze can rescue it); value is fine."""
    rng = rng_for("bad_absurd_shape")
    with new_file("bad_absurd_shape.h5") as f:
        put(f, "layer_00/key", f16(rng, (2, 1, 2, 6, 4, 3)))
        put(f, "layer_00/value", f16(rng, (1, 2, 6, 4)))


def bad_int_dtype():
    """/layer_00/key stored as int32 with no bfloat16 attribute."""
    rng = rng_for("bad_int_dtype")
    with new_file("bad_int_dtype.h5") as f:
        put(f, "layer_00/key", rng.integers(-100, 100, (1, 2, 6, 4)).astype(np.int32))
        put(f, "layer_00/value", f16(rng, (1, 2, 6, 4)))


def bad_no_kv():
    """Valid HDF5 with unrelated datasets only."""
    rng = rng_for("bad_no_kv")
    with new_file("bad_no_kv.h5") as f:
        put(f, "weights/embedding", rng.standard_normal((16, 4)).astype(np.float32))
        put(f, "metadata/step", np.int64(1234))
        f.attrs["description"] = "model checkpoint, not a KV dump"


def bad_query_heads():
    """kv_heads = 2 but /layer_00/query has 3 heads (not a multiple)."""
    rng = rng_for("bad_query_heads")
    with new_file("bad_query_heads.h5") as f:
        put(f, "layer_00/key", f16(rng, (1, 2, 6, 4)))
        put(f, "layer_00/value", f16(rng, (1, 2, 6, 4)))
        put(f, "layer_00/query", f16(rng, (1, 3, 6, 4)))


# Expected failures.  Match each substring case-insensitively against the
# one-line error message.
BAD_INPUTS = [
    {"file": "bad_not_hdf5.h5", "category": "not_hdf5",
     "error_contains": ["bad_not_hdf5.h5", "not an HDF5 file"]},
    {"file": "bad_truncated.h5", "category": "truncated",
     "error_contains": ["bad_truncated.h5", "truncated"]},
    {"file": "bad_missing_value.h5", "category": "missing_tensor",
     "error_contains": ["/layer_01", "value"]},
    {"file": "bad_shape_mismatch.h5", "category": "shape_mismatch",
     "error_contains": ["/layer_00/key", "/layer_00/value", "shape"]},
    {"file": "bad_zero_tokens.h5", "category": "empty",
     "error_contains": ["/layer_00/key", "zero tokens"]},
    {"file": "bad_all_padded.h5", "category": "all_padded",
     "error_contains": ["/lengths", "no valid tokens"]},
    {"file": "bad_lzf.h5", "category": "unsupported_filter",
     "error_contains": ["/layer_00/key", "lzf", "h5repack -f GZIP=4"]},
    {"file": "bad_absurd_shape.h5", "category": "bad_shape",
     "error_contains": ["/layer_00/key", "shape"]},
    {"file": "bad_int_dtype.h5", "category": "unsupported_dtype",
     "error_contains": ["/layer_00/key", "int32"]},
    {"file": "bad_no_kv.h5", "category": "no_kv",
     "error_contains": ["key", "value", "found"]},
    {"file": "bad_query_heads.h5", "category": "query_heads",
     "error_contains": ["/layer_00/query", "heads", "multiple"]},
]


GOOD = [fx_perlayer_layer_nn, fx_perlayer_layers_slash, fx_perlayer_hf_names,
        fx_perlayer_hf_groups, fx_perlayer_keys_values, fx_stacked_5d, fx_stacked_4d,
        fx_custom_thd, fx_axes_attr_bthd, fx_nan_inf, fx_large_block_tokens]
BAD = [bad_not_hdf5, bad_truncated, bad_missing_value, bad_shape_mismatch, bad_zero_tokens,
       bad_all_padded, bad_lzf, bad_absurd_shape, bad_int_dtype, bad_no_kv, bad_query_heads]


def main():
    """Recreate Tests/Fixtures/dumps/ and Tests/Fixtures/bad_inputs.json from scratch."""
    OUT.mkdir(parents=True, exist_ok=True)
    for p in OUT.iterdir():
        if p.is_file():
            p.unlink()
    for fn in GOOD + BAD:
        fn()
    assert sorted(b["file"] for b in BAD_INPUTS) == sorted(
        p.name for p in OUT.glob("bad_*.h5")), "bad_inputs.json out of sync"
    (HERE / "bad_inputs.json").write_text(json.dumps(BAD_INPUTS, indent=2) + "\n")
    total = sum(p.stat().st_size for p in OUT.iterdir())
    print(f"wrote {len(list(OUT.iterdir()))} files to {OUT} ({total} bytes)")


if __name__ == "__main__":
    main()

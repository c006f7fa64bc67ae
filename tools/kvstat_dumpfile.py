# Writer for kvstat's canonical HDF5 KV-cache dump layout ("kvstat.dump/1").
# Shared by tools/kvdump.py (PyTorch/transformers models) and
# tools/kvdump_numpy_minilm.py (the numpy MiniLM sample), so both produce
# byte-for-byte the same structure. Needs only numpy and h5py.
#
# Layout written by write_canonical_dump():
#   /layers/{i}/{kind}   kind in key, value, query, key_pre_rope;
#                        shape [batch, heads, tokens, head_dim], attribute axes="bhtd"
#                        float16 / float32: native HDF5 floats;
#                        bfloat16: uint16 bit patterns, attribute dtype="bfloat16"
#                        chunked (1, heads, min(64, tokens), head_dim), gzip 4 + shuffle
#   /attention_mask      [batch, tokens] uint8, 1 = real token, right-padded
#   /lengths             [batch] int64, number of real tokens per sequence
#   root attributes      kvstat_format="kvstat.dump/1", dtype, plus the caller's
#                        attributes, all stored as strings

import h5py
import numpy as np

FORMAT = "kvstat.dump/1"
KINDS = ("key", "value", "query", "key_pre_rope")
DTYPES = ("float16", "bfloat16", "float32")
CHUNK_TOKENS = 64


def float32_to_bfloat16_bits(x):
    """bfloat16 bit patterns (uint16) of x: the upper 16 bits of float32,
    rounded to nearest, ties to even. NaNs stay NaN (quiet bit forced)."""
    bits = np.ascontiguousarray(x, dtype=np.float32).view(np.uint32)
    lsb = (bits >> 16) & 1
    rounded = ((bits + np.uint32(0x7FFF) + lsb) >> 16).astype(np.uint16)
    nan_bits = ((bits >> 16) | 0x0040).astype(np.uint16)
    return np.where(np.isnan(x), nan_bits, rounded)


def bfloat16_bits_to_float32(bits):
    """float32 values of bfloat16 bit patterns (exact)."""
    return (np.asarray(bits, dtype=np.uint16).astype(np.uint32) << 16).view(np.float32)


def encode(x, dtype):
    """x converted to the array stored for `dtype`; raises if finite values overflow."""
    x = np.asarray(x, dtype=np.float32)
    if dtype == "float16":
        with np.errstate(over="ignore"):  # overflow is reported below
            stored = x.astype(np.float16)
        decoded = stored
    elif dtype == "bfloat16":
        stored = float32_to_bfloat16_bits(x)
        decoded = bfloat16_bits_to_float32(stored)
    elif dtype == "float32":
        return x
    else:
        raise ValueError(f"dtype must be one of {DTYPES}, got {dtype!r}")
    if np.any(np.isfinite(x) & ~np.isfinite(decoded)):
        raise ValueError(f"values overflow {dtype} (max |x| = {np.nanmax(np.abs(x))})")
    return stored


def _check_inputs(layers, attention_mask, attrs, dtype):
    if dtype not in DTYPES:
        raise ValueError(f"dtype must be one of {DTYPES}, got {dtype!r}")
    if not layers:
        raise ValueError("no layers to write")
    for reserved in ("kvstat_format", "dtype"):
        if reserved in attrs:
            raise ValueError(f"attribute {reserved!r} is set by the writer")
    mask = np.asarray(attention_mask)
    if mask.ndim != 2:
        raise ValueError(f"attention_mask must be [batch, tokens], got shape {mask.shape}")
    batch, tokens = mask.shape
    lengths = mask.astype(bool).sum(axis=1)
    if not np.array_equal(mask, np.arange(tokens)[None, :] < lengths[:, None]):
        raise ValueError("attention_mask must be 0/1 and right-padded (real tokens first)")
    kinds = set(layers[0])
    for i, layer in enumerate(layers):
        if set(layer) != kinds:
            raise ValueError(f"layer {i} has kinds {sorted(layer)}, layer 0 has {sorted(kinds)}")
        for kind, array in layer.items():
            if kind not in KINDS:
                raise ValueError(f"unknown kind {kind!r}; expected one of {KINDS}")
            shape = np.shape(array)
            if len(shape) != 4 or shape[0] != batch or shape[2] != tokens:
                raise ValueError(
                    f"layer {i} {kind}: shape {shape} is not [{batch}, heads, {tokens}, head_dim]"
                )
    return lengths.astype(np.int64)


def write_canonical_dump(path, layers, attention_mask, attrs, dtype, layer_numbers=None):
    """Write a kvstat.dump/1 file.

    layers: one dict per layer, kind -> float array [batch, heads, tokens, head_dim]
    layer_numbers: the group name of each layer (/layers/{n}), increasing; default 0, 1, 2, ... (a dump of
        some of a model's layers keeps their real numbers, which kvstat reports)
    attention_mask: [batch, tokens], 1 for real tokens, right-padded
    attrs: extra root attributes (strings: model, revision, text_source, ...)
    dtype: storage dtype, "float16", "bfloat16" or "float32"
    """
    lengths = _check_inputs(layers, attention_mask, attrs, dtype)
    numbers = list(range(len(layers))) if layer_numbers is None else [int(n) for n in layer_numbers]
    if len(numbers) != len(layers) or any(n < 0 for n in numbers) or numbers != sorted(set(numbers)):
        raise ValueError(f"layer_numbers must be {len(layers)} increasing numbers >= 0, got {layer_numbers}")
    with h5py.File(path, "w") as f:
        f.attrs["kvstat_format"] = FORMAT
        f.attrs["dtype"] = dtype
        for name, value in attrs.items():
            f.attrs[name] = str(value)  # str() also unwraps str subclasses h5py rejects
        f.create_dataset("attention_mask", data=np.asarray(attention_mask, dtype=np.uint8))
        f.create_dataset("lengths", data=lengths)
        for i, layer in zip(numbers, layers):
            group = f.create_group(f"layers/{i}")
            for kind, array in layer.items():
                _, heads, tokens, head_dim = np.shape(array)
                dataset = group.create_dataset(
                    kind,
                    data=encode(array, dtype),
                    chunks=(1, heads, min(CHUNK_TOKENS, tokens), head_dim),
                    compression="gzip",
                    compression_opts=4,
                    shuffle=True,
                )
                dataset.attrs["axes"] = "bhtd"
                dataset.attrs["dtype"] = dtype

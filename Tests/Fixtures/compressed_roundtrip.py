"""Independent numpy checks of a kvstat compressed cache (docs/compressed-format.md), for CompressCLITests.

usage: compressed_roundtrip.py ORIGINAL.h5 COMPRESSED.h5 DECOMPRESSED.h5
Prints JSON: `error` (decompressed vs original: RMS over (kind, layer) of ‖X − X̂‖/‖X‖, as kvstat reports fit
errors; pre-RoPE keys counted after RoPE, as `key`), `per_kind` (the same RMS of each kind),
`numpy_vs_decompressed` (largest |difference| between the rebuild done here from the compressed file with h5py and
numpy, following the documented schema, and kvstat decompress's output, relative to the largest |value|), and
`schema_ok`.
"""
import json
import sys

import h5py
import numpy as np


def dequantize(unit, kind, bits, group, key_group_start):
    """The [latent_tokens, rank] latents of one unit: float16, or codes · scale + zero."""
    if "latent" in unit:
        return unit["latent"][()].astype(np.float32)
    codes = unit["codes"][()]
    rank = unit["proj"].shape[1]
    if bits == 4:  # two codes per byte, even column in the low nibble
        codes = np.stack([codes & 0x0F, codes >> 4], axis=-1).reshape(codes.shape[0], -1)[:, :rank]
    codes = codes.astype(np.float32)
    scale = unit["scale"][()].astype(np.float32)
    zero = unit["zero"][()].astype(np.float32)
    if kind == "value":  # per token, groups of `group` latent columns
        col = np.arange(rank) // group
        return codes * scale[:, col] + zero[:, col]
    # per latent column, groups of tokens starting at key_group_start
    g = np.searchsorted(key_group_start, np.arange(codes.shape[0]), side="right") - 1
    return codes * scale[g] + zero[g]


def main(original, compressed, decompressed):
    o, c, d = h5py.File(original, "r"), h5py.File(compressed, "r"), h5py.File(decompressed, "r")
    m = json.loads(c.attrs["manifest"])
    schema_ok = c.attrs["format"] == "kvstat.compressed/1" and m["schema"] == "kvstat.compressed/1"
    bits = {"none": 16, "int8": 8, "int4": 4}[m["quantization"]]
    starts = c["key_group_start"][()] if "key_group_start" in c else None
    lengths, window = c["lengths"][()], m["window"]
    # Row order: sequences in order, tokens in order; the last `window` of each sequence are window rows.
    is_window = np.concatenate([np.arange(n) >= n - window if window else np.zeros(n, bool) for n in lengths])
    worst, peak = 0.0, 0.0
    errors = []
    for name in m["units"]:
        unit = c["units"][name]
        kind, layers = unit.attrs["kind"], [int(x) for x in np.atleast_1d(unit.attrs["layers"])]
        lo, hi = (int(x) for x in unit.attrs["channels"])
        y = dequantize(unit, kind, bits, m["quant_group"], starts)
        proj = unit["proj"][()]
        mean = unit["mean"][()] if "mean" in unit else 0
        xhat = y @ proj.T + mean  # [latent_tokens, layers · width]
        width = hi - lo
        for i, layer in enumerate(layers):
            rows = d[f"layer_{layer}"][kind]  # [sequences, tokens, heads, head_dim]
            flat = np.concatenate([rows[s, :n].reshape(n, -1) for s, n in enumerate(lengths)]).astype(np.float32)
            mine = xhat[:, i * width:(i + 1) * width]
            theirs = flat[~is_window][:, lo:hi]
            worst = max(worst, float(np.abs(mine - theirs).max()) if mine.size else 0.0)
            peak = max(peak, float(np.abs(theirs).max()) if theirs.size else 0.0)
    per_kind = {}
    # Every kind the rebuilt dump holds: the stored ones, and `key` (RoPE of the rebuilt pre-RoPE keys) if any.
    kinds = sorted({k for name in d if name.startswith("layer_") for k in d[name]})
    for kind in kinds:
        kind_errors = []
        for layer in m["layers"]:
            x = o[f"layers/{layer}/{kind}"][()].astype(np.float64)  # [b, h, t, d]
            y = d[f"layer_{layer}"][kind][()].astype(np.float64).transpose(0, 2, 1, 3)
            seqs, starts = m["sequences"], m["starts"]
            parts = list(zip(seqs, starts, lengths))
            num = sum(((x[b, :, t:t + n] - y[s, :, :n]) ** 2).sum() for s, (b, t, n) in enumerate(parts))
            den = sum((x[b, :, t:t + n] ** 2).sum() for b, t, n in parts)
            kind_errors.append(np.sqrt(num / den))
        per_kind[kind] = float(np.sqrt(np.mean(np.square(kind_errors))))
        # Overall as kvstat reports it: pre-RoPE keys count once, after RoPE (`key`).
        if not (kind == "key_pre_rope" and "key" in kinds):
            errors += kind_errors
    print(json.dumps({
        "error": float(np.sqrt(np.mean(np.square(errors)))),
        "per_kind": per_kind,
        "numpy_vs_decompressed": worst / peak if peak else 0.0,
        "schema_ok": bool(schema_ok),
    }))


if __name__ == "__main__":
    main(*sys.argv[1:4])

#!/usr/bin/env python3
"""numpy/scipy baseline for `kvstat analyze`: the script a researcher would write.

Reads a kvstat.dump/1 file (/layers/{i}/{key,value}, [batch, heads, tokens,
head_dim], honouring an `axes` attribute) with h5py, one layer at a time, and
computes the statistics `kvstat analyze` reports. X is one tensor as float32
[valid tokens, heads*head_dim]: the valid tokens of every sequence, sequence by
sequence, tokens ascending (padding from /attention_mask, else /lengths, is
dropped), column c = h*head_dim + d.

  spectra    G = X.T @ X (float32), eigvalsh(G as float64), sigma = sqrt(max(lambda, 0))
             descending; effective rank at p = 0.90/0.95/0.99 = smallest r with
             sum_{i<=r} sigma_i^2 >= p * sum_i sigma_i^2; stable rank
             = sum_i sigma_i^2 / sigma_1^2 (= ||X||_F^2 / sigma_1^2). X is NOT centred.
  cka        linear CKA of adjacent layers (l, l+1), per kind, on column-centred
             Xc, Yc: ||Xc^T Yc||_F^2 / (||Xc^T Xc||_F ||Yc^T Yc||_F). The previous
             layer's centred matrix is kept in memory.
  channels   per column: max |x|, mean, RMS = sqrt(mean x^2), Pearson kurtosis
             E[(x-mu)^4] / E[(x-mu)^2]^2 (not excess; population moments; null in
             the JSON for a constant column).
  dct        per sequence, C = scipy.fft.dct(X_b, type=2, norm='ortho', axis=0) on
             the raw (uncentred) valid tokens; E_k = sum over columns of C[k]^2;
             for f = 1/16, 1/8, 1/4, 1/2: low = sum_{k < floor(f*T_b)} E_k. The
             reported fraction pools the sequences: sum_b low_b / sum_b total_b.

Float32 data and matmuls as a user would write them (OpenBLAS threads as
configured), float64 for eigvalsh and for every reduction. scipy.fft gets
workers=-1 so both sides use all cores.

Usage:
  python3 Benchmarks/numpy_analyze.py DUMP [--only spectra] [--json OUT] [--kinds key,value]
Prints one summary line per layer and kind, then the elapsed wall time (imports
included). --json writes every number (schema "kvstat.numpy_analyze/1").
"""

import time

_T0 = time.perf_counter()   # elapsed time includes the imports, like a process's wall time

import argparse  # noqa: E402
import json  # noqa: E402
import sys  # noqa: E402

import h5py  # noqa: E402
import numpy as np  # noqa: E402
import scipy.fft  # noqa: E402

ENERGY_LEVELS = (0.90, 0.95, 0.99)
DCT_FRACTIONS = (("1/16", 16), ("1/8", 8), ("1/4", 4), ("1/2", 2))


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("dump")
    p.add_argument("--only", choices=("spectra",), help="only read + X^T X + eigvalsh")
    p.add_argument("--json", metavar="OUT", help="write all numbers to this JSON file")
    p.add_argument("--kinds", default="key,value", help="comma-separated kinds (default key,value)")
    p.add_argument("--quiet", action="store_true", help="print only the elapsed time")
    return p.parse_args(argv)


def _str_attr(obj, name, default):
    v = obj.attrs.get(name, default)
    return v.decode() if isinstance(v, bytes) else str(v)


def valid_mask(f, batch, tokens):
    """[batch, tokens] bool: /attention_mask if present, else /lengths, else all valid."""
    if "attention_mask" in f:
        return f["attention_mask"][()].astype(bool).reshape(batch, tokens)
    if "lengths" in f:
        lengths = f["lengths"][()].astype(np.int64).reshape(batch)
        return np.arange(tokens)[None, :] < lengths[:, None]
    return np.ones((batch, tokens), bool)


def load(ds, mask):
    """Dataset -> float32 [valid tokens, heads*head_dim] (sequence-major, tokens ascending)."""
    axes = _str_attr(ds, "axes", "bhtd")
    a = ds[()]
    if "b" not in axes:
        a, axes = a[None], "b" + axes
    if a.dtype == np.uint16 and _str_attr(ds, "dtype", "") == "bfloat16":
        a = (a.astype(np.uint32) << 16).view(np.float32)
    a = a.transpose([axes.index(ch) for ch in "bthd"])      # [B, T, H, D] view
    rows = a[mask]                                            # [N, H, D] copy, padding dropped
    return rows.reshape(rows.shape[0], -1).astype(np.float32, copy=False)


def spectra(x):
    g = x.T @ x                                               # float32 Gram (BLAS syrk/gemm)
    lam = np.linalg.eigvalsh(g.astype(np.float64))
    sigma = np.sqrt(np.maximum(lam, 0.0))[::-1]
    energy = np.cumsum(sigma * sigma)
    total = energy[-1]
    eff = {f"{p:.2f}": int(np.searchsorted(energy, p * total, side="left") + 1)
           for p in ENERGY_LEVELS}
    return {
        "singular_values": sigma.tolist(),
        "frobenius_sq": float(total),
        "effective_rank": eff,
        "stable_rank": float(total / sigma[0] ** 2) if sigma[0] > 0 else None,
    }


def frob(m):
    return float(np.linalg.norm(m.astype(np.float64)))


def channel_stats(x, xc):
    sq = np.square(xc)
    m2 = sq.mean(axis=0, dtype=np.float64)
    np.square(sq, out=sq)
    m4 = sq.mean(axis=0, dtype=np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        kurt = np.where(m2 > 0, m4 / (m2 * m2), np.nan)
    return {
        "max_abs": np.abs(x).max(axis=0).astype(np.float64).tolist(),
        "mean": x.mean(axis=0, dtype=np.float64).tolist(),
        "rms": np.sqrt(np.square(x).mean(axis=0, dtype=np.float64)).tolist(),
        "kurtosis": [None if np.isnan(k) else float(k) for k in kurt],
    }


def dct_energy(x, seq_lengths):
    low = np.zeros(len(DCT_FRACTIONS))
    total = 0.0
    start = 0
    for n in seq_lengths:                                     # loop over sequences only
        if n == 0:
            continue
        c = scipy.fft.dct(x[start:start + n], type=2, norm="ortho", axis=0, workers=-1)
        e = np.cumsum(np.einsum("kc,kc->k", c, c, dtype=np.float64))
        total += e[-1]
        for i, (_, den) in enumerate(DCT_FRACTIONS):
            k = n // den
            low[i] += e[k - 1] if k > 0 else 0.0
        start += n
    return {name: float(low[i] / total) if total > 0 else None
            for i, (name, _) in enumerate(DCT_FRACTIONS)}


def layer_indices(f):
    return sorted(int(k) for k in f["layers"].keys() if k.isdigit())


def main(argv=None):
    args = parse_args(argv)
    kinds = [k for k in args.kinds.split(",") if k]
    full = args.only is None
    timing = dict.fromkeys(("read", "spectra", "cka", "channels", "dct"), 0.0)
    results, cka = [], {k: [] for k in kinds}
    prev = {}                                                 # kind -> (layer, Xc, ||Xc^T Xc||_F)

    with h5py.File(args.dump, "r") as f:
        layers = layer_indices(f)
        first = f[f"layers/{layers[0]}/{kinds[0]}"]
        axes = _str_attr(first, "axes", "bhtd")
        shape = dict(zip(axes, first.shape))
        batch, tokens = shape.get("b", 1), shape["t"]
        mask = valid_mask(f, batch, tokens)
        seq_lengths = mask.sum(axis=1).tolist()
        n_valid = int(mask.sum())
        if not args.quiet:
            print(f"{args.dump}: {len(layers)} layers, kinds {kinds}, {batch} sequences, "
                  f"{n_valid} valid tokens of {batch * tokens}")
        for l in layers:
            entry = {"layer": l}
            for kind in kinds:
                t = time.perf_counter()
                x = load(f[f"layers/{l}/{kind}"], mask)
                timing["read"] += time.perf_counter() - t

                t = time.perf_counter()
                r = spectra(x)
                timing["spectra"] += time.perf_counter() - t
                line = (f"layer {l:3d} {kind:6s} eff_rank90/95/99 "
                        + "/".join(str(v) for v in r["effective_rank"].values())
                        + f"  stable_rank {r['stable_rank']:.3f}")
                if full:
                    t = time.perf_counter()
                    xc = x - x.mean(axis=0, dtype=np.float64).astype(np.float32)
                    norm_self = frob(xc.T @ xc)
                    if kind in prev:
                        pl, pxc, pnorm = prev[kind]
                        value = frob(pxc.T @ xc) ** 2 / (pnorm * norm_self)
                        cka[kind].append({"layers": [pl, l], "cka": value})
                        line += f"  cka(prev) {value:.4f}"
                    timing["cka"] += time.perf_counter() - t

                    t = time.perf_counter()
                    r["channels"] = channel_stats(x, xc)
                    timing["channels"] += time.perf_counter() - t
                    kmax = max((k for k in r["channels"]["kurtosis"] if k is not None), default=float("nan"))
                    line += f"  kurt_max {kmax:.1f}"

                    t = time.perf_counter()
                    r["dct_low_energy_fraction"] = dct_energy(x, seq_lengths)
                    timing["dct"] += time.perf_counter() - t
                    line += f"  dct1/16 {r['dct_low_energy_fraction']['1/16']:.3f}"
                    prev[kind] = (l, xc, norm_self)
                del x
                entry[kind] = r
                if not args.quiet:
                    print(line, flush=True)
            results.append(entry)

    elapsed = time.perf_counter() - _T0
    breakdown = ", ".join(f"{k} {v:.2f}" for k, v in timing.items() if full or k in ("read", "spectra"))
    print(f"elapsed {elapsed:.2f} s wall ({'spectra only' if not full else 'full'}; {breakdown})")

    if args.json:
        doc = {
            "schema": "kvstat.numpy_analyze/1",
            "dump": args.dump,
            "only": args.only,
            "kinds": kinds,
            "layers": len(layers),
            "sequences": batch,
            "sequence_lengths": seq_lengths,
            "tokens": n_valid,
            "energy_levels": list(ENERGY_LEVELS),
            "dct_fractions": [name for name, _ in DCT_FRACTIONS],
            "per_layer": results,
            "cka_adjacent": cka if full else None,
            "elapsed_s": elapsed,
            "timing_s": timing,
            "versions": {"numpy": np.__version__, "h5py": h5py.__version__,
                         "scipy": __import__("scipy").__version__,
                         "hdf5": h5py.version.hdf5_version},
        }
        with open(args.json, "w") as out:
            json.dump(doc, out)
            out.write("\n")


if __name__ == "__main__":
    sys.exit(main())

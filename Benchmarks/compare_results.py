#!/usr/bin/env python3
"""Checks that `kvstat analyze` and `numpy_analyze.py` computed the same numbers before any ratio is printed.

Compares kvstat's stats.json with the baseline's JSON, layer by layer and kind by kind, for what both
computed (the baseline's `--only spectra` has spectra only):

| quantity | tolerance |
|---|---|
| singular values | |σ_k − σ'_k| ≤ 1e-5 · σ'_1 (float32 Gram products on both sides) |
| effective ranks | equal, or the baseline's cumulative energy at the smaller rank within 1e-5 of the level |
| stable rank | relative 1e-5 |
| adjacent-layer CKA | absolute 1e-5 |
| channel max |x| | equal (both exact) |
| channel mean, RMS | relative 1e-6 of the channel's RMS |
| kurtosis | relative 1e-5 where both are defined; undefined (null) on the same channels |
| DCT low-frequency fractions | absolute 1e-5 |

Prints one line per quantity (values checked, largest deviation) and exits 1 when any is out of tolerance.
Usage: compare_results.py KVSTAT_STATS_JSON NUMPY_JSON
"""
import json
import sys

import numpy as np


def main():
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    ours = json.load(open(sys.argv[1]))
    base = json.load(open(sys.argv[2]))
    worst = {}
    failures = []

    def check(name, deviation, tolerance, where):
        count, largest = worst.get(name, (0, 0.0))
        worst[name] = (count + 1, max(largest, deviation))
        if not deviation <= tolerance:
            failures.append(f"{name} at {where}: deviation {deviation:.3g} > {tolerance:g}")

    by_layer = {entry["layer"]: entry for entry in ours["layers"]}
    for entry in base["per_layer"]:
        layer = entry["layer"]
        for kind in base["kinds"]:
            b = entry.get(kind)
            k = by_layer.get(layer, {}).get(kind)
            if b is None or k is None:
                failures.append(f"layer {layer} {kind}: missing on one side")
                continue
            where = f"layer {layer} {kind}"
            sb = np.array(b["singular_values"])
            sk = np.array(k["singular_values"])
            check("singular values", float(np.max(np.abs(sb - sk[: len(sb)]))) / sb[0], 1e-5, where)
            energy = np.cumsum(sb**2) / np.sum(sb**2)
            for level, rank in b["effective_rank"].items():
                mine = k["effective_rank"][str(float(level))]
                low = min(mine, rank)
                off = 0.0 if mine == rank else abs(energy[low - 1] - float(level))
                check("effective ranks", off, 1e-5, f"{where} p={level} ({mine} vs {rank})")
            check("stable rank", abs(k["stable_rank"] / b["stable_rank"] - 1), 1e-5, where)
            if "channels" in b:
                cb, ck = b["channels"], k["channels"]
                check("channel max |x|", float(np.max(np.abs(np.array(cb["max_abs"]) - ck["max_abs"]))), 0, where)
                rms = np.array(cb["rms"])
                for name in ("mean", "rms"):
                    dev = np.abs(np.array(cb[name]) - np.array(ck[name], dtype=float)) / np.maximum(rms, 1e-300)
                    check(f"channel {name}", float(np.max(dev)), 1e-6, where)
                kb = [v for v in cb["kurtosis"]]
                kk = [v for v in ck["kurtosis"]]
                same_nulls = [x is None for x in kb] == [x is None for x in kk]
                check("kurtosis nulls", 0.0 if same_nulls else 1.0, 0, where)
                rel = [abs(x / y - 1) for x, y in zip(kk, kb) if x is not None and y is not None]
                check("kurtosis", max(rel, default=0.0), 1e-5, where)
            if "dct_low_energy_fraction" in b:
                fractions = k["frequency"]["low_energy"]
                for label, value in b["dct_low_energy_fraction"].items():
                    num, den = label.split("/")
                    key = str(int(num) / int(den))
                    check("DCT fractions", abs(fractions[key] - value), 1e-5, f"{where} f={label}")
    for kind, pairs in (base.get("cka_adjacent") or {}).items():
        mine = {(p["layer_a"], p["layer_b"]): p["cka"] for p in ours["similarity"].get(kind, [])}
        for pair in pairs:
            a, b = pair["layers"]
            check("CKA", abs(mine[(a, b)] - pair["cka"]), 1e-5, f"{kind} layers {a}-{b}")
    for name, (count, largest) in worst.items():
        print(f"  {name:<20} {count:5d} checked, largest deviation {largest:.2e}")
    if failures:
        for line in failures[:20]:
            print(f"  DISAGREE: {line}")
        print(f"agreement: FAILED ({len(failures)} out of tolerance)")
        sys.exit(1)
    print("agreement: ok")


if __name__ == "__main__":
    main()

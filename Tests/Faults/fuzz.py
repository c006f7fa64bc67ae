#!/usr/bin/env python3
"""Seeded byte-level mutation fuzzing of kvstat's HDF5 reading (see Tests/Faults/README.md).

    python3 Tests/Faults/fuzz.py [--kvstat .build/debug/kvstat] [--cases 600] [--seed 20240] [--only SEED]

Each case copies one source file (the bundled real dump notebooks-data/minilm-sample.h5, or a small fixture),
applies one seeded mutation (bit flips, byte overwrites, truncation, a duplicated chunk of bytes, a zeroed
range; half of the offsets land in the first 8 KiB, where the superblock and most object headers live) and runs
`kvstat inspect M.h5` and `kvstat analyze M.h5 --only spectra,outliers -o out` (the large sample with
`--layers 0`). A run passes when it ends within the time bound, by no signal and without Swift trap text, with
exit 0 (analyze: stats.json strict JSON within the documented bounds) or with exactly one stderr line
`kvstat: error: …` naming the file and a documented code (65 bad data, 66 unreadable, 69 too large); the mutated
file is not modified, no `*.tmp-*` is left, and a failed analyze leaves no output folder. Every case prints its
seed; `--only SEED` reruns one case (add `--keep DIR` to keep the mutated file). Last line: `N passed, N failed`.
"""

import argparse
import hashlib
import os
import random
import shutil
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from faultlib import Broken, check_stats, load_json  # noqa: E402
from run_corpus import TRAPS, run_command  # noqa: E402

ROOT = HERE.parents[1]
FIXTURES = ROOT / "Tests" / "Fixtures" / "dumps"
SAMPLE = ROOT / "notebooks-data" / "minilm-sample.h5"
# Small fixtures covering each storage form: contiguous f16, chunked+gzip bf16 (vlen string attribute),
# stacked chunked f16 with a mask, fixed-length string attribute, lengths and GQA, an axes attribute,
# NaN/Inf values, long chunked padding.
SMALL = ["perlayer_layer_nn.h5", "perlayer_keys_values.h5", "stacked_5d.h5", "stacked_4d.h5",
         "perlayer_layers_slash.h5", "axes_attr_bthd.h5", "nan_inf.h5", "large_block_tokens.h5"]
ALLOWED = {0, 65, 66, 69}
SAMPLE_CASES = 24


def mutate(data, rng):
    """One seeded mutation of `data`; returns (bytes, description)."""
    n = len(data)
    b = bytearray(data)

    def offset():
        return rng.randrange(min(n, 8192)) if rng.random() < 0.5 else rng.randrange(n)

    kind = rng.choice(["bitflip", "bitflip", "overwrite", "overwrite", "truncate", "duplicate", "insert", "zero"])
    if kind == "bitflip":
        k = rng.randint(1, 8)
        where = [offset() for _ in range(k)]
        for o in where:
            b[o] ^= 1 << rng.randrange(8)
        return bytes(b), f"bitflip×{k} at {where[:4]}"
    if kind == "overwrite":
        o, k = offset(), rng.randint(1, 16)
        fill = rng.choice(["random", "ff", "00", "7f"])
        for i in range(o, min(n, o + k)):
            b[i] = rng.randrange(256) if fill == "random" else int(fill, 16)
        return bytes(b), f"overwrite {k} bytes ({fill}) at {o}"
    if kind == "truncate":
        o = rng.randrange(1, n)
        return bytes(b[:o]), f"truncate to {o} of {n} bytes"
    if kind == "duplicate":
        k = rng.randint(16, 512)
        src, dst = offset(), offset()
        piece = b[src:src + k]
        b[dst:dst + len(piece)] = piece
        return bytes(b[:n]), f"copy {len(piece)} bytes from {src} over {dst}"
    if kind == "insert":
        k = rng.randint(16, 512)
        src, dst = offset(), offset()
        piece = bytes(b[src:src + k])
        return bytes(b[:dst]) + piece + bytes(b[dst:]), f"insert {len(piece)} bytes from {src} at {dst}"
    o, k = offset(), rng.randint(16, 4096)
    b[o:o + k] = bytes(len(b[o:o + k]))
    return bytes(b), f"zero {k} bytes at {o}"


def sha(path):
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def check_run(label, rc, err, hung, limit, fname):
    broken = []
    if hung:
        return [f"{label}: hang (> {limit:g} s)"]
    if rc < 0 or rc >= 128:
        broken.append(f"{label}: signal (exit {rc})")
    trap = [t for t in TRAPS if t in err.lower()]
    if trap:
        broken.append(f"{label}: trap text {trap}")
    if rc >= 0 and rc not in ALLOWED:
        broken.append(f"{label}: exit {rc}, expected 0 or one of 65, 66, 69")
    if rc != 0:
        lines = [ln for ln in err.splitlines() if ln.strip()]
        if len(lines) != 1 or not lines[0].startswith("kvstat: error:"):
            broken.append(f"{label}: {len(lines)} stderr lines, expected one `kvstat: error:` line")
        elif fname not in lines[0]:
            broken.append(f"{label}: the error line does not name {fname}")
    return broken


def plan(count, seed):
    """The (seed, source) of every case: a few on the real sample, the rest spread over the small fixtures."""
    cases = []
    for i in range(count):
        source = SAMPLE if i % max(1, count // SAMPLE_CASES) == 0 else FIXTURES / SMALL[i % len(SMALL)]
        cases.append((seed + i, source))
    return cases


def run_case(kvstat, case_seed, source, timeout, keep):
    rng = random.Random(case_seed)
    data, what = mutate(source.read_bytes(), rng)
    tmp = Path(tempfile.mkdtemp(prefix=f"kvfuzz-{case_seed}-"))
    broken, codes = [], []
    try:
        m = tmp / "m.h5"
        m.write_bytes(data)
        digest = sha(m)
        layers = ["--layers", "0"] if source == SAMPLE else []
        runs = [("inspect", ["inspect", "m.h5"]),
                ("analyze", ["analyze", "m.h5", "--only", "spectra,outliers", "-o", "out", "--quiet", *layers])]
        for label, args in runs:
            rc, out, err, seconds, hung = run_command([kvstat, *args], tmp, timeout)
            codes.append(str(rc))
            found = check_run(label, rc, err, hung, timeout, "m.h5")
            if found:
                found.append(f"{label} stderr: {err.strip()[:300]!r}")
            broken += found
            if label == "analyze" and rc == 0 and not hung:
                try:
                    check_stats(load_json(tmp / "out" / "stats.json"))
                except Broken as e:
                    broken.append(f"analyze result: {e}")
            if label == "analyze" and rc != 0 and (tmp / "out").exists():
                broken.append("analyze failed but left its output folder")
        if not m.exists() or sha(m) != digest:
            broken.append("the input file was modified")
        left = [str(p.relative_to(tmp)) for p in tmp.rglob("*.tmp-*")]
        if left:
            broken.append(f"temporary files left: {left[:3]}")
        return case_seed, source.name, what, codes, broken
    finally:
        if keep:
            dest = Path(keep) / f"seed-{case_seed}"
            if dest.exists():
                shutil.rmtree(dest)
            shutil.copytree(tmp, dest)
        shutil.rmtree(tmp, ignore_errors=True)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--kvstat", default=str(ROOT / ".build" / "debug" / "kvstat"))
    ap.add_argument("--cases", type=int, default=600)
    ap.add_argument("--seed", type=int, default=20240)
    ap.add_argument("--only", type=int, action="append", help="run only the case with this seed (repeatable)")
    ap.add_argument("--jobs", type=int, default=2)
    ap.add_argument("--timeout", type=float, default=30.0, help="time bound per kvstat run (default 30 s)")
    ap.add_argument("--keep", help="keep each case's folder (mutated file, outputs) here")
    a = ap.parse_args()
    kvstat = str(Path(a.kvstat).resolve())
    if not os.access(kvstat, os.X_OK):
        print(f"fuzz: no kvstat binary at {kvstat} (swift build first, or --kvstat PATH)", file=sys.stderr)
        return 2
    cases = plan(a.cases, a.seed)
    if a.only:
        cases = [c for c in cases if c[0] in a.only]
        if not cases:
            print(f"fuzz: no case with seed {a.only} among --cases {a.cases} from --seed {a.seed}", file=sys.stderr)
            return 2
    start = time.monotonic()
    passed = failed = 0
    with ThreadPoolExecutor(max_workers=a.jobs) as pool:
        futures = [pool.submit(run_case, kvstat, s, src, a.timeout, a.keep) for s, src in cases]
        for fut in futures:
            case_seed, name, what, codes, broken = fut.result()
            status = "FAIL" if broken else "ok  "
            print(f"{status} seed={case_seed} {name}: {what}; exit inspect {codes[0]}, analyze "
                  f"{codes[1] if len(codes) > 1 else '-'}", flush=True)
            for b in broken:
                print(f"       {b}")
            passed += not broken
            failed += bool(broken)
    print(f"({len(cases)} cases in {time.monotonic() - start:.0f} s; rerun one: fuzz.py --only SEED)", file=sys.stderr)
    print(f"{passed} passed, {failed} failed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())

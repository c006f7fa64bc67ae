#!/usr/bin/env python3
"""Seeded mutation fuzzing of kvstat's HDF5 reading: dumps, and kvstat's own state files and fit artifacts.

    python3 Tests/Faults/fuzz.py [--kvstat .build/debug/kvstat] [--cases 600] [--own-cases 120] [--seed 20240]
                                 [--family all|dumps|own] [--only SEED]... [--keep DIR]

Dumps (seeds SEED…SEED+599): each case copies one source file (the bundled real dump
notebooks-data/minilm-sample.h5, a small fixture, or one of two small safetensors dumps written at the start of
the run), applies one seeded byte-level mutation (bit flips, byte
overwrites, truncation, a duplicated chunk of bytes, a zeroed range; half of the offsets land in the first 8 KiB,
where the superblock and most object headers live) and runs `kvstat inspect M.h5` and
`kvstat analyze M.h5 --only spectra,outliers -o out` (the large sample with `--layers 0`).

Own files (seeds SEED+100000…): state files from `analyze --save-state` (sequence 0 of a small dump; a second
state, sequence 1, to merge with; one base also with `--xkv-groups 2`'s group Grams) and fit artifacts from
`fit-lowrank -o F`, made once per run by the binary under test, are copied and mutated: with h5py (root
`layers`/`pairs`, the `options`/`sources`/`manifest` JSON, group
`channels`/`head_dim`/`heads`/`layers`/`kind`, datasets deleted, resized, retyped, poisoned with NaN/Inf or absurd
counts, replaced by huge unwritten chunked ones, groups removed or added) or byte-level as above. A state goes
through `merge S -o m --quiet`, `merge S S2 -o m2` (either order) and `fit-lowrank S -o f --quiet`; an artifact
through `eval --artifact F g.h5`. These runs have their address space capped (half the RAM, at most 8 GiB).

A run passes when it ends within the time bound, by no signal and without Swift trap text, with exit 0 and sane
outputs (analyze/merge: stats.json strict JSON within the documented bounds, CSV/HTML/Markdown without nan/inf;
fit: the fit checker; eval: strict JSON, errors finite and ≥ 0, ≤ 1 where the projection is unaltered and
orthonormal; no "NaN"/"Infinity" strings in any JSON) or with exactly one stderr line `kvstat: error: …` naming an
input and a documented code (dumps: 65 bad data, 66 unreadable, 69 too large; own files also 64); no input is
modified, no `*.tmp-*` is left, and a failed run leaves no output folder. Every case prints its seed; `--only SEED`
reruns one case (add `--keep DIR` to keep its folder). Last line: `N passed, N failed` over both families.
"""

import argparse
import hashlib
import json
import os

# kvstat's libhdf5 metadata watchdog (10 s by default) within the fuzz's own time bound.
os.environ.setdefault("KVSTAT_HDF5_METADATA_TIMEOUT", "3")
import random
import re
import shutil
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import h5py
import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from faultlib import (Broken, check_fit_dir, check_stats, check_text_files, gaussian, load_json,  # noqa: E402
                      random_layers, rng_for, similarity_pairs, strict_json, write_perlayer)
from run_corpus import TRAPS, run_command, snapshot  # noqa: E402

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


def safetensors_sources(folder):
    """Small safetensors dumps, written at the start of a run with the safetensors package (seeded): per-layer
    float16 keys and values with a `lengths` tensor, and one layer of vLLM's `kv_cache` ([2, tokens, heads ×
    head_dim], bfloat16 bits with the head count in `__metadata__`). Mutations of their JSON headers and offsets
    exercise the safetensors reader."""
    from safetensors.numpy import save_file
    rng = np.random.default_rng(2025)
    small = {f"model.layers.{i}.self_attn.{k}": rng.standard_normal((2, 2, 16, 4)).astype(np.float16)
             for i in range(2) for k in ("key", "value")}
    small["lengths"] = np.array([16, 11], dtype=np.int64)
    save_file(small, str(folder / "small.safetensors"), metadata={"model": "fuzz/small"})
    bits = (rng.standard_normal((2, 24, 8)).astype(np.float32).view(np.uint32) >> 16).astype(np.uint16)
    save_file({"kv_cache": bits}, str(folder / "merged.safetensors"),
              metadata={"num_kv_heads": "2", "dtype": "bfloat16"})
    return [folder / "small.safetensors", folder / "merged.safetensors"]


def plan(count, seed, extra=()):
    """The (seed, source) of every case: a few on the real sample, the rest spread over the small fixtures and the
    `extra` sources (the safetensors dumps)."""
    small = [FIXTURES / name for name in SMALL] + list(extra)
    cases = []
    for i in range(count):
        source = SAMPLE if i % max(1, count // SAMPLE_CASES) == 0 else small[i % len(small)]
        cases.append((seed + i, source))
    return cases


def run_case(kvstat, case_seed, source, timeout, keep):
    rng = random.Random(case_seed)
    data, what = mutate(source.read_bytes(), rng)
    tmp = Path(tempfile.mkdtemp(prefix=f"kvfuzz-{case_seed}-"))
    broken, codes = [], []
    try:
        m = tmp / ("m" + source.suffix)
        m.write_bytes(data)
        digest = sha(m)
        layers = ["--layers", "0"] if source == SAMPLE else []
        runs = [("inspect", ["inspect", m.name]),
                ("analyze", ["analyze", m.name, "--only", "spectra,outliers", "-o", "out", "--quiet", *layers])]
        for label, args in runs:
            rc, out, err, seconds, hung = run_command([kvstat, *args], tmp, timeout)
            codes.append(str(rc))
            found = check_run(label, rc, err, hung, timeout, m.name)
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


# ============================================================================================================
# Family 2: kvstat's own files, which users also pass back in. State files (`analyze --save-state`) go through
# `merge S -o m`, `merge S S2 -o m2` (either order) and `fit-lowrank S -o f`; fit artifacts (`fit-lowrank -o F`)
# through `eval --artifact F g.h5`. The inputs are made once per run by the binary under test (bases), then
# each case copies one base and applies one seeded mutation: structural with h5py (attributes, the JSON of
# `options`, `sources` and `manifest`, datasets deleted, resized, retyped, filled with NaN/Inf, replaced by huge
# unwritten chunked ones, groups removed or added) or byte-level (mutate() above).
# ============================================================================================================

OWN_ALLOWED = {0, 64, 65, 66, 69}
OWN_SEED_OFFSET = 100000          # own-file case i has seed --seed + OWN_SEED_OFFSET + i
# Of every 20 cases: 11 state-file mutations, 7 artifact mutations, one byte-level of each.
OWN_PATTERN = ["state"] * 11 + ["artifact"] * 7 + ["state-bytes", "artifact-bytes"]
STATE_BASES = {
    "plain": [],
    "wide": ["--all-pairs", "--center", "--align-rank", "2", "--outlier-factor", "3", "--dct-window", "4"],
    "narrow": ["--only", "spectra,similarity"],
    "xkv": ["--xkv-groups", "2"],  # with xKV group Grams (xkv_group/{g})
}
ARTIFACT_BASES = {
    "pca": [], "head": ["--granularity", "head"], "center": ["--center"],
    "xkv": ["--method", "xkv", "--group-size", "3"], "mat": ["--method", "matryoshka"],
    "cskv": ["--method", "cskv", "--quant", "int4", "--window", "4"],
}
# Eval errors are in [0, 1] for an orthonormal projection of the data it was fitted on (centred: the mean of
# that data), unquantized; these bases keep that bound unless a mutation changes the projection's numbers.
EVAL_BOUNDED = {"pca", "head", "center", "xkv", "mat"}
NAN, INF = float("nan"), float("inf")
BIG = 2 ** 40                     # elements of a "huge" dataset: terabytes, beyond any machine


def mem_cap_kib():
    """Address-space cap for kvstat runs on mutated own files (half the RAM, at most 8 GiB): a mutation that
    talks kvstat into a multi-GiB allocation ends in a reported trap instead of the machine's OOM killer."""
    try:
        total = int(next(ln.split()[1] for ln in open("/proc/meminfo") if ln.startswith("MemTotal:")))
    except (OSError, StopIteration, ValueError):
        total = 16 << 20
    return max(2 << 20, min(8 << 20, total // 2))


MEM_CAP_KIB = mem_cap_kib()


def run_capped(kvstat, args, cwd, timeout):
    return run_command(["sh", "-c", f'ulimit -v {MEM_CAP_KIB} && exec "$0" "$@"', kvstat, *args], cwd, timeout)


def make_bases(kvstat, root, timeout):
    """Writes g.h5 (3 layers, 2 sequences, 2 kv heads, 4 query heads, head_dim 4, float16), for every state base
    `NAME.a.h5` (sequence 0) and `NAME.b.h5` (sequence 1), and for every artifact base `art-NAME/`, with the
    binary under test. Returns {base key: why it could not be made}."""
    rng = rng_for("fuzz-own/g.h5")
    layers = random_layers(rng, 3, 2, 2, 16, 4)
    for kinds in layers:
        kinds["query"] = gaussian(rng, (2, 4, 16, 4))
    write_perlayer(root / "g.h5", layers, dtype="float16")
    jobs = [(f"state:{n}", [["analyze", "g.h5", "--sequences", str(s), "-o", f"A-{n}-{s}", "--quiet",
                             "--save-state", f"{n}.{'ab'[s]}.h5", *o] for s in (0, 1)])
            for n, o in STATE_BASES.items()]
    jobs += [(f"artifact:{n}", [["fit-lowrank", "g.h5", "-o", f"art-{n}", "--quiet", *o]])
             for n, o in ARTIFACT_BASES.items()]
    errors = {}
    for key, runs in jobs:
        for args in runs:
            rc, _, err, _, hung = run_command([kvstat, *args], root, timeout)
            if rc != 0 or hung:
                errors[key] = f"`kvstat {' '.join(args)}` → {'hang' if hung else f'exit {rc}'}: {err.strip()[:200]}"
                break
    return errors


# --- helpers for the h5py mutations ---

class Draw(random.Random):
    """The seeded choices of one case. `pin` (a label, or a (key, value) JSON edit) forces the labelled choice
    where one is offered, so the plan can name the mutations that must be in every run."""

    def __init__(self, seed, pin=None):
        super().__init__(f"kvstat-own/{seed}")  # str seeds go through SHA-512: neighbouring seeds differ
        self.pin = pin

    def pick(self, labels):
        labels = list(labels)
        return self.pin if self.pin in labels else self.choice(labels)


def show(v):
    if isinstance(v, np.ndarray):
        v = v.tolist()
    s = json.dumps(v, allow_nan=True) if not isinstance(v, str) else repr(v)
    return s if len(s) <= 60 else s[:57] + "..."


def set_attr(obj, name, value):
    """value None removes the attribute; a str is written as a variable-length string (as kvstat writes them);
    an ndarray as it is; numbers and lists as float64 (as kvstat writes them)."""
    if name in obj.attrs:
        del obj.attrs[name]
    if value is None:
        return
    if isinstance(value, (str, np.ndarray)):
        obj.attrs[name] = value
    else:
        obj.attrs[name] = np.asarray(value, dtype=np.float64)


def pick_attr_edit(rng, obj, name, choices):
    label = rng.pick(sorted(choices))
    value = choices[label]
    set_attr(obj, name, value)
    return f"{obj.name.rstrip('/') or ''}@{name} {label}" + ("" if value is None else f" = {show(value)}")


DELETE = object()  # a JSON edit's value: remove the key


def edit_json_attr(obj, name, rng, edits, whole):
    """One edit of the JSON object (or list of objects, the first edited) in a string attribute. `edits` is a
    list of (dotted key, value) with the value DELETE to remove the key; `whole` maps labels to replacement
    texts (None: remove the attribute)."""
    pinned = rng.pin if isinstance(rng.pin, tuple) else None
    if rng.pin in whole or (pinned is None and rng.random() < 0.2):
        label = rng.pick(sorted(whole))
        set_attr(obj, name, whole[label])
        return f"@{name} {label}"
    doc = json.loads(obj.attrs[name])
    target = doc[0] if isinstance(doc, list) else doc
    key, value = pinned or edits[rng.randrange(len(edits))]
    *parents, last = key.split(".")
    for p in parents:
        if isinstance(target, list):
            target = target[rng.randrange(len(target))] if target else {}
        target = target.setdefault(p, {}) if isinstance(target, dict) else {}
    if isinstance(target, list):
        target = target[rng.randrange(len(target))] if target else {}
    if value is DELETE:
        target.pop(last, None)
    else:
        target[last] = value(target.get(last)) if callable(value) else value
    set_attr(obj, name, json.dumps(doc, allow_nan=True))
    return f"@{name} {key} " + ("removed" if value is DELETE else f"= {show(target.get(last))}")


def all_datasets(f):
    out = []
    f.visititems(lambda n, o: out.append(n) if isinstance(o, h5py.Dataset) else None)
    return sorted(out)


def pick_dataset(f, rng, prefer=(), where=None):
    """A dataset path: 2/3 of the time one named in `prefer` (if the file has one), else any."""
    names = [n for n in all_datasets(f) if where is None or where(f[n])]
    if not names:
        raise RuntimeError("no dataset to mutate")
    pinned = [n for n in names if n.rsplit("/", 1)[-1] == rng.pin]
    if pinned:
        return rng.choice(pinned)
    preferred = [n for n in names if n.rsplit("/", 1)[-1] in prefer]
    return rng.choice(preferred if preferred and rng.random() < 0.67 else names)


def replace_dataset(f, path, data=None, **kw):
    del f[path]
    if data is None:
        f.create_dataset(path, **kw)
    else:
        f.create_dataset(path, data=data, **kw)


def huge_dataset(f, path, rng):
    """Replace `path` by a chunked dataset of terabytes (or, one time in four, 10⁷ elements) that was never
    written: HDF5 reads it as fill values, so only kvstat's size checks stand between it and the allocation."""
    old = f[path]
    dtype, ndim = old.dtype if old.dtype.kind in "fiu" else np.float64, max(1, old.ndim)
    if rng.random() < 0.25:
        shape = (10 ** 7,) + tuple(old.shape[1:]) if ndim > 1 else (10 ** 7,)
    elif ndim == 1:
        shape = (rng.choice([BIG, 2 ** 62]),)
    elif rng.random() < 0.3:
        shape = (2 ** 31 + 1,) * ndim   # every axis huge: 2^62 elements for a matrix
    else:
        shape = [max(1, s) for s in old.shape]
        shape[rng.randrange(ndim)] = BIG
        shape = tuple(shape)
    chunks = tuple(min(64, s) for s in shape)
    replace_dataset(f, path, shape=shape, dtype=dtype, chunks=chunks)
    return f"{path} → unwritten chunked {dtype} {list(shape)}"


def resized(rng, data):
    """A differently shaped array from `data` (values repeated/cut)."""
    shape = list(data.shape) or [1]
    n = shape[0]
    choices = {"one short": [max(0, n - 1)] + shape[1:], "one long": [n + 1] + shape[1:], "empty": [0] + shape[1:],
               "doubled": [2 * n] + shape[1:]}
    if len(shape) >= 2:
        choices["last axis short"] = shape[:-1] + [max(0, shape[-1] - 1)]
        choices["last axis long"] = shape[:-1] + [shape[-1] + 3]
        choices["transposed"] = shape[::-1]
        choices["flattened"] = [int(np.prod(shape))]
    else:
        choices["2-D"] = [1, n]
        choices["scalar"] = []
    label = rng.pick(sorted(choices))
    new = tuple(choices[label])
    flat = np.asarray(data).reshape(-1)
    size = int(np.prod(new)) if new else 1
    values = np.resize(flat, size) if flat.size else np.zeros(size, dtype=data.dtype)
    return label, values.reshape(new).astype(data.dtype)


def poison(rng, data):
    """`data` with some entries made non-finite (floats) or out of any sane range (integers)."""
    a = np.array(data, copy=True)
    if a.size == 0:
        return "nothing (empty)", a
    flat = a.reshape(-1)
    k = rng.choice([1, 1, 2, flat.size])
    where = rng.sample(range(flat.size), min(k, flat.size))
    if a.dtype.kind == "f":
        label = rng.pick(["NaN", "+Inf", "-Inf", "1e308", "-1e308"] if a.dtype.itemsize == 8 else
                         ["NaN", "+Inf", "-Inf", "3.4e38", "-3.4e38"])
        v = {"NaN": NAN, "+Inf": INF, "-Inf": -INF}.get(label, float(label) if label[0] != "+" else INF)
    else:
        label = rng.pick(["-1", "-2^63", "2^62", "2^63-1"])
        v = {"-1": -1, "-2^63": -2 ** 63, "2^62": 2 ** 62, "2^63-1": 2 ** 63 - 1}[label]
        if a.dtype.kind == "u":
            v = np.iinfo(a.dtype).max
        v = np.array(v).astype(a.dtype)
    for i in where:
        flat[i] = v
    return f"{label} in {len(where)} of {flat.size} entries", a


# --- state-file mutations: each takes (f, rng) with f open read-write and returns what it did ---

STATE_PREFER = ("gram_sum", "gram_lower_packed", "norms_bins", "norms_largest_norm", "position_abs_sums", "cross")


def st_layers(f, rng):
    cur = np.asarray(f.attrs["layers"], dtype=np.float64)
    return pick_attr_edit(rng, f, "layers", {
        "shorter": cur[:-1], "longer": np.append(cur, cur.max() + 1), "NaN": np.where(cur == cur[-1], NAN, cur),
        "negative": np.append([-1.0], cur[1:]), "fraction": cur + 0.5, "1e300": np.append(cur[:-1], 1e300),
        "2^63": np.append(cur[:-1], 2.0 ** 63), "empty": np.zeros(0), "text": "0,1,2", "reversed": cur[::-1],
        "duplicate": np.append(cur[:1], cur[:-1]), "2-D": cur.reshape(1, -1), "removed": None,
        "int64": cur.astype(np.int64), "+Inf": np.append(cur[:-1], INF)})


def st_pairs(f, rng):
    cur = np.asarray(f.attrs["pairs"], dtype=np.float64)
    return pick_attr_edit(rng, f, "pairs", {
        "odd length": cur[:-1], "layer 99": np.append(cur[:-1], 99.0), "NaN": np.append(cur[:-1], NAN),
        "negative": np.append([-1.0], cur[1:]), "self pair": np.append(cur[:-2], [1.0, 1.0]),
        "reversed pair": np.append(cur[:-2], cur[-2:][::-1]), "extra pair": np.append(cur, [0.0, 2.0]),
        "fewer pairs": cur[:-2], "empty": np.zeros(0), "2^64": np.append(cur[:-1], 2.0 ** 64),
        "removed": None, "text": "0-1", "fraction": np.append(cur[:-1], 1.5)})


OPTION_EDITS = [
    ("align_rank", -5), ("align_rank", 0), ("align_rank", 1e300), ("align_rank", 2 ** 70), ("align_rank", NAN),
    ("align_rank", 2.5), ("align_rank", "32"), ("align_rank", DELETE),
    ("outlier_factor", NAN), ("outlier_factor", INF), ("outlier_factor", -1), ("outlier_factor", 0),
    ("outlier_factor", 1e308), ("outlier_factor", "NaN"), ("outlier_factor", "Infinity"),
    ("block_tokens", 0), ("block_tokens", -1), ("block_tokens", 2 ** 64),
    ("frequency_panel_bytes", -1), ("frequency_panel_bytes", 2 ** 63),
    ("pairs", "bogus"), ("pairs", "all"), ("pairs", 3),
    ("sections", []), ("sections", ["bogus"]), ("sections", ["spectra"]), ("sections", "spectra"),
    ("sections", DELETE), ("center", "yes"), ("center", lambda v: not v),
    ("sequences", [-1]), ("sequences", [99]), ("sequences", [0, 0]), ("sequences", "0"),
    ("dct_window", -3), ("dct_window", 0), ("dct_window", 10 ** 18), ("dct_window", NAN),
]
JSON_WHOLE = {"not JSON": "{", "a list": "[]", "null": "null", "empty text": "", "removed": None,
              "a number": "7"}


def st_options(f, rng):
    return edit_json_attr(f, "options", rng, OPTION_EDITS, JSON_WHOLE)


SOURCE_EDITS = [
    ("kv_heads", 4), ("kv_heads", 1), ("kv_heads", 0), ("kv_heads", -2), ("kv_heads", 1e12), ("kv_heads", NAN),
    ("head_dim", 8), ("head_dim", 2), ("head_dim", 0), ("head_dim", 3), ("head_dim", NAN), ("head_dim", 2 ** 62),
    ("query_heads", 3), ("query_heads", 0), ("query_heads", 10 ** 9),
    ("layers", 2), ("layers", 99), ("layer_numbers", [0, 1]), ("layer_numbers", [0, 1, 2, 3]),
    ("layer_numbers", [-1, 0, 1]), ("layer_numbers", [0, 0, 0]), ("layer_numbers", [2, 1, 0]),
    ("sequence_lengths", [16, 10 ** 15]), ("sequence_lengths", [-1, 0]), ("sequence_lengths", []),
    ("sequences", 0), ("sequences", 10 ** 12), ("sequences", -1), ("tokens", -5), ("tokens", 2 ** 63),
    ("tokens", 0), ("sha256", ""), ("sha256", "zz"), ("selected_sequences", [5]), ("selected_sequences", [-1]),
    ("selected_sequences", []), ("selected_sequences", DELETE), ("selection", DELETE), ("path", ""),
    ("kinds", ["key"]), ("kinds", []), ("kinds", ["bogus"]), ("dtype", "bogus"), ("kv_heads", DELETE),
    ("head_dim", DELETE),
]
SOURCE_WHOLE = dict(JSON_WHOLE, **{"empty list": "[]", "an object": "{}", "list of numbers": "[1]"})


def st_sources(f, rng):
    if rng.random() < 0.12:  # the same source twice in one state: its tokens twice
        doc = json.loads(f.attrs["sources"])
        set_attr(f, "sources", json.dumps(doc + doc))
        return "@sources the one source listed twice"
    return edit_json_attr(f, "sources", rng, SOURCE_EDITS, SOURCE_WHOLE)


def st_format(f, rng):
    if rng.random() < 0.7:
        return pick_attr_edit(rng, f, "format", {
            "state/1": "kvstat.state/1", "state/3": "kvstat.state/3", "fit/1": "kvstat.fit/1", "removed": None,
            "a number": np.float64(2.0), "empty": ""})
    return pick_attr_edit(rng, f, "kvstat_version", {"removed": None, "99.0": "99.0.0", "a number": 1.0})


def kind_groups(f):
    return [k for k in sorted(f.keys()) if isinstance(f[k], h5py.Group)]


def st_kind_attrs(f, rng):
    """pin: "channels:LABEL" or "head_dim:LABEL"."""
    g = f[rng.choice(kind_groups(f))]
    attr, _, rng.pin = (rng.pin or "").partition(":")
    if attr == "channels" or (attr != "head_dim" and rng.random() < 0.6):
        return pick_attr_edit(rng, g, "channels", {
            "16": 16.0, "0": 0.0, "-8": -8.0, "NaN": NAN, "+Inf": INF, "1e12": 1e12, "7.5": 7.5, "2^63": 2.0 ** 63,
            "4 (other heads)": 4.0, "text": "8", "2 values": np.array([8.0, 8.0]), "removed": None})
    return pick_attr_edit(rng, g, "head_dim", {
        "0": 0.0, "3": 3.0, "8": 8.0, "2": 2.0, "NaN": NAN, "-4": -4.0, "1e18": 1e18, "removed": None})


def st_ds_delete(f, rng):
    path = pick_dataset(f, rng, STATE_PREFER)
    del f[path]
    return f"{path} deleted"


def st_ds_resize(f, rng):
    path = pick_dataset(f, rng, STATE_PREFER)
    label, data = resized(rng, f[path][()])
    replace_dataset(f, path, data)
    return f"{path} resized ({label}) to {list(data.shape)}"


def st_ds_poison(f, rng):
    """pin: "DATASET" or "DATASET:LABEL" (a label of poison(), e.g. "gram_lower_packed:1e308")."""
    rng.pin, _, label = (rng.pin or "").partition(":")
    path = pick_dataset(f, rng, STATE_PREFER + ("gram_count", "rows_valid", "moments_central", "cosine_sum"))
    rng.pin = label
    label, data = poison(rng, f[path][()])
    f[path][...] = data
    return f"{path}: {label}"


def st_ds_retype(f, rng):
    """pin: "DATASET" or "DATASET:TYPE" (e.g. "moments_central:uint64")."""
    rng.pin, _, label = (rng.pin or "").partition(":")
    path = pick_dataset(f, rng, STATE_PREFER + ("gram_count", "rows_valid"))
    data = f[path][()]
    rng.pin = label
    label = rng.pick(["float16", "int8", "uint64", "bytes", "vlen string", "bool", "float32"])
    if label in ("bytes", "vlen string"):
        new = np.array([b"abc"] * max(1, data.size)) if label == "bytes" else "not numbers"
    else:
        with np.errstate(all="ignore"):
            new = np.asarray(data).astype(label)
    replace_dataset(f, path, new)
    return f"{path} rewritten as {label}"


def st_ds_huge(f, rng):
    return huge_dataset(f, pick_dataset(f, rng, STATE_PREFER + ("position_tokens", "frequency_bins")), rng)


def st_groups(f, rng):
    kinds = kind_groups(f)
    kind = rng.choice(kinds)
    pairs = sorted(f[kind].get("pair", {}).keys()) if "pair" in f[kind] else []
    layers = sorted(f[kind]["layer"].keys()) if "layer" in f[kind] else []
    ops = ["remove layer", "add layer", "remove kind", "extra kind", "stray dataset"]
    if pairs:
        ops += ["remove pair", "remove pair", "add pair", "rename pair"]
    op = rng.pick(ops)
    if op == "remove pair":
        p = rng.choice(pairs)
        del f[f"{kind}/pair/{p}"]
        return f"/{kind}/pair/{p} removed"
    if op == "add pair":
        f.copy(f[f"{kind}/pair/{pairs[0]}"], f"{kind}/pair/{len(pairs)}")
        return f"/{kind}/pair/{len(pairs)} added (a copy of pair {pairs[0]})"
    if op == "rename pair":
        f.move(f"{kind}/pair/{pairs[-1]}", f"{kind}/pair/7")
        return f"/{kind}/pair/{pairs[-1]} renamed pair/7"
    if op == "remove layer":
        i = rng.choice(layers)
        del f[f"{kind}/layer/{i}"]
        return f"/{kind}/layer/{i} removed"
    if op == "add layer":
        f.copy(f[f"{kind}/layer/{layers[0]}"], f"{kind}/layer/{len(layers)}")
        return f"/{kind}/layer/{len(layers)} added (a copy of layer {layers[0]})"
    if op == "remove kind":
        del f[kind]
        return f"/{kind} removed"
    if op == "extra kind":
        f.copy(f[kind], "key_pre_rope" if "key_pre_rope" not in f else "bogus")
        return f"/{kind} copied as an extra kind"
    i = rng.choice(layers)
    f[f"{kind}/layer/{i}/bogus"] = np.arange(3.0)
    return f"/{kind}/layer/{i}/bogus added"


def st_pair_attr(f, rng):
    kinds = [k for k in kind_groups(f) if "pair" in f[k] and len(f[k]["pair"])]
    if not kinds:
        return st_groups(f, rng)
    kind = rng.choice(kinds)
    g = f[f"{kind}/pair/{rng.choice(sorted(f[kind]['pair'].keys()))}"]
    return pick_attr_edit(rng, g, "layers", {
        "[0, 99]": [0.0, 99.0], "[NaN, 1]": [NAN, 1.0], "[1, 1]": [1.0, 1.0], "[1, 0]": [1.0, 0.0],
        "one value": [0.0], "empty": np.zeros(0), "three values": [0.0, 1.0, 2.0], "1e300": [0.0, 1e300],
        "[-1, 0]": [-1.0, 0.0], "removed": None})


def st_counts(f, rng):
    """pin: "PATH:VALUE" (e.g. "key/layer/1/gram_count:1": the count at PATH set to VALUE)."""
    pin_path, _, pin_value = (rng.pin or "").partition(":")
    if pin_path in f:
        f[pin_path][...] = int(pin_value)
        return f"{pin_path}[all] = {pin_value}"
    kind = rng.choice(kind_groups(f))
    base = f"{kind}/layer/{rng.choice(sorted(f[kind]['layer'].keys()))}"
    edits = {"gram_count": [0, -1, 2 ** 62, 1], "rows_valid": [0, 2 ** 62, -3], "moments_count": [0, -1, 2 ** 62],
             "norms_count": [-1, 0, 2 ** 62], "frequency_windows": [2 ** 62, -1], "position_tokens": [0, -1, 2 ** 62],
             "norms_bins": [10 ** 6, -5, 2 ** 62], "norms_largest_position": [-1, 2 ** 62],
             "rows_non_finite": [-1, 2 ** 62]}
    names = [n for n in edits if f"{base}/{n}" in f]
    if "pair" in f[kind] and len(f[kind]["pair"]):
        pair = f"{kind}/pair/{sorted(f[kind]['pair'].keys())[0]}"
        names += [f"../pair:{n}" for n in ("cosine_count",) if f"{pair}/{n}" in f]
    name = rng.choice(names)
    if name.startswith("../pair:"):
        path, value = f"{pair}/{name.split(':')[1]}", rng.choice([0, -1, 2 ** 62])
    else:
        path, value = f"{base}/{name}", rng.choice(edits[name])
    ds = f[path]
    data = np.array(ds[()], copy=True)
    if data.size == 0:
        return f"{path}: empty, left as it is"
    flat = data.reshape(-1)
    idx = rng.randrange(flat.size) if rng.random() < 0.5 else slice(None)
    flat[idx] = value
    ds[...] = data
    return f"{path}[{'all' if isinstance(idx, slice) else idx}] = {value}"


STATE_OPS = [st_layers, st_pairs, st_options, st_sources, st_format, st_kind_attrs, st_ds_delete, st_ds_resize,
             st_ds_poison, st_ds_retype, st_ds_huge, st_groups, st_pair_attr, st_counts]


# --- artifact mutations (F/projections.h5): (f, rng) like the state ones; some need a particular base ---

def needs(*bases):
    def mark(fn):
        fn.bases = bases
        return fn
    return mark


def units(f):
    return sorted(k for k in f.keys() if isinstance(f[k], h5py.Group))


def pick_unit(f, rng, where=None):
    names = [u for u in units(f) if where is None or where(f[u])]
    return f[rng.choice(names)]


def ar_channels(f, rng):
    g = pick_unit(f, rng)
    return pick_attr_edit(rng, g, "channels", {
        "[NaN, 16]": [NAN, 16.0], "[16, 0]": [16.0, 0.0], "[0, 10^9]": [0.0, 1e9], "[0, 16]": [0.0, 16.0],
        "[-8, 0]": [-8.0, 0.0], "[4, 4]": [4.0, 4.0], "one value": [0.0], "[0, 2^63]": [0.0, 2.0 ** 63],
        "[Inf, 8]": [INF, 8.0], "[3, 7]": [3.0, 7.0], "three values": [0.0, 8.0, 16.0], "[0.5, 8]": [0.5, 8.0],
        "removed": None, "text": "0:8", "[0, 7]": [0.0, 7.0], "[4, 12]": [4.0, 12.0]})


@needs("head", "mat")
def ar_heads(f, rng):
    g = pick_unit(f, rng, lambda u: "heads" in u.attrs)
    return pick_attr_edit(rng, g, "heads", {
        "one value": [0.0], "one value (other head)": [1.0], "[1, 0]": [1.0, 0.0], "[0, 100]": [0.0, 100.0],
        "[NaN, 1]": [NAN, 1.0], "[-1, 0]": [-1.0, 0.0], "[0, 2^40]": [0.0, 2.0 ** 40], "removed": None,
        "[0, 2]": [0.0, 2.0], "[1, 2] everywhere": [1.0, 2.0], "empty": np.zeros(0)})


def ar_layers(f, rng):
    g = pick_unit(f, rng)
    return pick_attr_edit(rng, g, "layers", {
        "99": 99.0, "NaN": NAN, "-1": -1.0, "empty": np.zeros(0), "1.5": 1.5, "[0, 1]": [0.0, 1.0],
        "removed": None, "2^63": 2.0 ** 63, "[0, 1, 2, 3]": [0.0, 1.0, 2.0, 3.0], "text": "0"})


def ar_kind(f, rng):
    g = pick_unit(f, rng)
    other = "value" if g.attrs.get("kind") == "key" else "key"
    return pick_attr_edit(rng, g, "kind", {"query": "query", "bogus": "bogus", "empty": "", "removed": None,
                                           "the other kind": other, "a number": 1.0})


UNIT_EDITS = [
    ("units.rank", lambda v: (v or 0) + 3), ("units.rank", lambda v: (v or 0) + 3), ("units.rank", 0),
    ("units.rank", -1), ("units.rank", NAN), ("units.rank", 1e300), ("units.rank", DELETE),
    ("units.dimension", 10 ** 12), ("units.dimension", 10 ** 12), ("units.dimension", 0), ("units.dimension", 3),
    ("units.stored_rank", 10 ** 9), ("units.stored_rank", 0), ("units.name", "nope"), ("units.kind", "bogus"),
    ("units.layers", [99]), ("units.layers", []), ("units.heads", [7]), ("units", DELETE), ("units", DELETE),
    ("units", []), ("units", lambda v: (v or [])[:-1]), ("units", lambda v: (v or []) + (v or [])[:1]),
]
MANIFEST_EDITS = [
    ("options.method", "bogus"), ("options.method", "xkv"), ("options.method", "cskv"), ("method", "bogus"),
    ("options.window", -1), ("options.window", 1e300), ("options.window", NAN), ("options.quantization", "int3"),
    ("options.quantization", "int4"), ("options.quant_group", 0), ("options.quant_group", -4),
    ("options.quant_group", 2 ** 40), ("options.center", lambda v: not v), ("options.granularity", "group:0"),
    ("model.head_dim", 0), ("model.head_dim", 8), ("model.kv_heads", 99), ("model.kv_heads", 0),
    ("model.channels.key", 16), ("layers", []), ("layers", [0, 1, 2, 3, 4]), ("layer_groups", [[0, 1, 2, 3]]),
    ("layer_groups", []), ("schema", "kvstat.fit/9"), ("options", DELETE), ("model", DELETE),
]


def ar_manifest_units(f, rng):
    return edit_json_attr(f, "manifest", rng, UNIT_EDITS, JSON_WHOLE)


def ar_manifest_other(f, rng):
    return edit_json_attr(f, "manifest", rng, MANIFEST_EDITS, JSON_WHOLE)


def proj_path(f, rng):
    return pick_unit(f, rng, lambda u: "proj" in u).name.lstrip("/") + "/proj"


def ar_proj_resize(f, rng):
    path = proj_path(f, rng)
    label, data = resized(rng, f[path][()])
    replace_dataset(f, path, data)
    return f"{path} resized ({label}) to {list(data.shape)}"


def ar_proj_values(f, rng):
    path = proj_path(f, rng)
    data = f[path][()]
    label = rng.pick(["poison", "poison", "zeros", "×1e30", "3.4e38", "subnormal", "duplicate column",
                      "float64", "float16", "int32", "text"])
    if label == "poison":
        what, new = poison(rng, data)
        f[path][...] = new
        return f"{path}: {what}"
    if label in ("float64", "float16", "int32"):
        replace_dataset(f, path, data.astype(label))
    elif label == "text":
        replace_dataset(f, path, "not numbers")
    else:
        new = {"zeros": np.zeros_like(data), "×1e30": data * np.float32(1e30),
               "3.4e38": np.full_like(data, 3.4e38), "subnormal": np.full_like(data, 1e-45)}.get(label)
        if label == "duplicate column":
            new = data.copy()
            if new.ndim == 2 and new.shape[1] > 1:
                new[:, 1] = new[:, 0]
            else:
                new = new * 2
        with np.errstate(all="ignore"):
            f[path][...] = new
    return f"{path}: {label}"


def ar_proj_huge(f, rng):
    return huge_dataset(f, proj_path(f, rng), rng)


@needs("center")
def ar_mean(f, rng):
    g = pick_unit(f, rng, lambda u: "mean" in u)
    path = g.name.lstrip("/") + "/mean"
    data = f[path][()]
    op = rng.pick(["short", "long", "empty", "NaN", "Inf", "2-D", "huge", "removed"])
    if op == "removed":
        del f[path]
    elif op == "huge":
        return huge_dataset(f, path, rng)
    elif op in ("NaN", "Inf"):
        data = data.copy()
        data[rng.randrange(data.size)] = NAN if op == "NaN" else INF
        f[path][...] = data
    else:
        new = {"short": data[:-1], "long": np.append(data, data[:1]), "empty": data[:0],
               "2-D": data.reshape(1, -1)}[op]
        replace_dataset(f, path, new)
    return f"{path}: {op}"


@needs("mat")
def ar_ladder(f, rng):
    ds = f["ladder_ranks"]
    op = rng.choice(["resize", "negative", "2^62", "beyond dimension", "removed", "keep_ratios NaN",
                     "keep_ratios removed", "keep_ratios short", "huge"])
    if op == "resize":
        label, data = resized(rng, ds[()])
        replace_dataset(f, "ladder_ranks", data)
        return f"/ladder_ranks resized ({label}) to {list(data.shape)}"
    if op == "huge":
        return huge_dataset(f, "ladder_ranks", rng)
    if op == "removed":
        del f["ladder_ranks"]
    elif op.startswith("keep_ratios"):
        kr = np.asarray(ds.attrs["keep_ratios"], dtype=np.float64)
        set_attr(ds, "keep_ratios", {"keep_ratios NaN": np.where(kr == kr[0], NAN, kr),
                                     "keep_ratios removed": None, "keep_ratios short": kr[:-1]}[op])
    else:
        data = ds[()].copy()
        data.reshape(-1)[rng.randrange(data.size)] = {"negative": -1, "2^62": 2 ** 62, "beyond dimension": 1000}[op]
        ds[...] = data
    return f"/ladder_ranks: {op}"


def ar_format(f, rng):
    return pick_attr_edit(rng, f, "format", {"fit/2": "kvstat.fit/2", "state/2": "kvstat.state/2",
                                             "removed": None, "a number": 1.0, "empty": ""})


def ar_groups(f, rng):
    names = units(f)
    op = rng.pick(["remove unit", "remove unit", "extra unit", "rename unit", "remove proj", "stray dataset",
                   "mean on an uncentred unit", "proj as a group"])
    name = rng.choice(names)
    if op == "remove unit":
        del f[name]
    elif op == "extra unit":
        f.copy(f[name], name + ".extra")
    elif op == "rename unit":
        f.move(name, name + ".renamed")
    elif op == "remove proj":
        if "proj" in f[name]:
            del f[f"{name}/proj"]
    elif op == "stray dataset":
        f[f"{name}/bogus"] = np.arange(3.0)
    elif op == "mean on an uncentred unit":
        if "mean" not in f[name] and "proj" in f[name]:
            f[f"{name}/mean"] = np.full(f[f"{name}/proj"].shape[0], 5.0, dtype=np.float32)
    else:
        if "proj" in f[name]:
            del f[f"{name}/proj"]
        f.create_group(f"{name}/proj")
    return f"/{name}: {op}"


def ar_eigen(f, rng):
    g = pick_unit(f, rng, lambda u: "eigenvalues" in u.attrs)
    ev = np.asarray(g.attrs["eigenvalues"], dtype=np.float64)
    return pick_attr_edit(rng, g, "eigenvalues", {
        "NaN": np.where(ev == ev[0], NAN, ev), "negative": -ev, "shorter": ev[:-1], "removed": None,
        "1e308": np.full_like(ev, 1e308), "empty": np.zeros(0), "+Inf": np.where(ev == ev[0], INF, ev)})


ARTIFACT_OPS = [ar_channels, ar_heads, ar_layers, ar_kind, ar_manifest_units, ar_manifest_other, ar_proj_resize,
                ar_proj_values, ar_proj_huge, ar_mean, ar_ladder, ar_format, ar_groups, ar_eigen]
# Mutations after which eval's errors may leave [0, 1] without kvstat being wrong: the projection's numbers
# (or the mean) are no longer the fitted orthonormal ones.
CHANGES_NUMBERS = {ar_proj_values, ar_mean, ar_groups}


# The mutations every run holds (the first cases of their family), then the operators in turn, drawn at random.
PINNED = {
    "state": [(st_options, ("align_rank", -5)), (st_options, ("outlier_factor", NAN)), (st_layers, "shorter"),
              (st_layers, "longer"), (st_sources, ("kv_heads", 4)), (st_sources, ("head_dim", 8)),
              (st_kind_attrs, "channels:16"), (st_kind_attrs, "head_dim:3"), (st_ds_delete, "gram_sum"),
              (st_ds_delete, "gram_lower_packed"), (st_ds_resize, "norms_bins"), (st_ds_resize, "norms_largest_norm"),
              (st_ds_resize, "position_abs_sums"), (st_ds_delete, "cross"), (st_ds_poison, "gram_lower_packed"),
              (st_ds_poison, "cross"), (st_groups, "remove pair"), (st_ds_huge, "gram_lower_packed"),
              (st_ds_huge, "cross"), (st_layers, "duplicate"), (st_ds_poison, "gram_lower_packed:1e308"),
              (st_ds_poison, "moments_central:-1e308"), (st_counts, "key/layer/1/gram_count:1"),
              (st_ds_retype, "moments_central:uint64")],
    "artifact": [(ar_channels, "[NaN, 16]"), (ar_channels, "[16, 0]"), (ar_channels, "[0, 10^9]"),
                 (ar_heads, "one value"), (ar_manifest_units, UNIT_EDITS[0]),
                 (ar_manifest_units, ("units.dimension", 10 ** 12)), (ar_manifest_units, ("units", DELETE)),
                 (ar_proj_resize, None), (ar_mean, "short"), (ar_mean, "long"),
                 (ar_manifest_other, ("options.quant_group", -4), "cskv")],
    # A zeroed object header in a global heap collection (where variable-length strings live): libhdf5 1.10
    # loops forever on it.
    "state-bytes": [(None, "gheap")],
    "artifact-bytes": [(None, "gheap")],
}


def mutate_own(data, rng):
    """mutate(), or (pin "gheap", or one time in four) damage to an object of a global heap collection."""
    collections = [m.start() for m in re.finditer(b"GCOL", data)]
    if not collections or (rng.pin != "gheap" and rng.random() >= 0.25):
        return mutate(data, rng)
    c = rng.choice(collections)
    size = int.from_bytes(data[c + 8:c + 16], "little")
    headers, o = [], c + 16
    while o + 16 <= min(len(data), c + size) and len(headers) < 64:  # objects: id, refs, 4 reserved, size, data
        headers.append(o)
        if int.from_bytes(data[o:o + 2], "little") == 0:  # id 0: the free space, always last
            break
        o += 16 + (int.from_bytes(data[o + 8:o + 16], "little") + 7) // 8 * 8
    if not headers:
        return mutate(data, rng)
    pinned = rng.pin == "gheap"
    h = headers[0] if pinned or rng.random() < 0.5 else rng.choice(headers)
    how = "zeroed" if pinned else rng.choice(["zeroed", "zeroed", "size 0", "size 2^62"])
    b = bytearray(data)
    if how == "zeroed":
        b[h:h + 16] = bytes(16)
    else:
        b[h + 8:h + 16] = (0 if how == "size 0" else 2 ** 62).to_bytes(8, "little")
    return bytes(b), f"global heap object header at {h} (collection at {c}): {how}"


def own_plan(count, seed):
    """(seed, family, operator, pin, base or None) of every own-file case."""
    cases, taken = [], {}
    for i in range(count):
        family = OWN_PATTERN[i % len(OWN_PATTERN)]
        k = taken.get(family, 0)
        taken[family] = k + 1
        pinned = PINNED.get(family, [])
        if k < len(pinned):
            op, pin, base = (pinned[k] + (None,))[:3]
        else:
            ops = STATE_OPS if family == "state" else ARTIFACT_OPS if family == "artifact" else [None]
            op, pin, base = ops[(k - len(pinned)) % len(ops)], None, None
        cases.append((seed + OWN_SEED_OFFSET + i, family, op, pin, base))
    return cases


# --- checks of one run ---

NONFINITE_WORD = re.compile(r"^[+-]?(nan|inf|infinity)$", re.IGNORECASE)


def no_nonfinite_strings(value, what, where=""):
    """A JSON value must not hold the strings "NaN", "Infinity", "-inf"… (a non-finite number in disguise)."""
    if isinstance(value, str) and NONFINITE_WORD.match(value.strip()):
        raise Broken(f"{what}: {where or 'the value'} is the string {value!r}")
    if isinstance(value, dict):
        for k, v in value.items():
            no_nonfinite_strings(v, what, f"{where}.{k}")
    elif isinstance(value, list):
        for i, v in enumerate(value):
            no_nonfinite_strings(v, what, f"{where}[{i}]")


def check_layer_identity(stats):
    """Each layer appears once, and each similarity pair joins two different layers that stats.json lists."""
    layers = [entry.get("layer") for entry in stats.get("layers", [])]
    numbers = stats.get("layer_numbers", layers)
    for what, values in (("layers[].layer", layers), ("layer_numbers", numbers)):
        if len(set(map(str, values))) != len(values):
            raise Broken(f"stats.json: {what} lists a layer twice: {values[:8]}")
    for kind in (stats.get("similarity") or {}):
        for (a, b) in similarity_pairs(stats, kind):
            if a == b or a not in layers or b not in layers:
                raise Broken(f"stats.json: similarity.{kind} pairs layers {a}, {b} (layers listed: {layers[:8]})")


def check_merge_out(d):
    stats = load_json(d / "stats.json")
    no_nonfinite_strings(stats, "stats.json")
    check_stats(stats)
    check_layer_identity(stats)
    check_text_files(d)


def check_fit_out(d):
    m = check_fit_dir(d)
    no_nonfinite_strings(m, "manifest.json")


def check_eval_out(stdout, bounded):
    doc = strict_json(stdout, "eval stdout")
    no_nonfinite_strings(doc, "eval stdout")

    def walk(v, where):
        if isinstance(v, dict):
            for k, w in v.items():
                if k not in ("tokens",):
                    walk(w, f"{where}.{k}")
        elif isinstance(v, list):
            for i, w in enumerate(v):
                walk(w, f"{where}[{i}]")
        elif isinstance(v, (int, float)) and not isinstance(v, bool):
            if v < 0:
                raise Broken(f"eval stdout: {where} = {v} is negative")
            if bounded and v > 1 + 1e-4:
                raise Broken(f"eval stdout: {where} = {v} > 1 for an unaltered orthonormal projection")
    walk(doc, "")


def named(line, names):
    return any(re.search(rf"(?<![\w.]){re.escape(n)}(?![\w])", line) for n in names)


def check_own_run(label, rc, err, hung, limit, names):
    if hung:
        return [f"{label}: hang (> {limit:g} s)"]
    broken = []
    if rc < 0 or rc >= 128:
        broken.append(f"{label}: signal (exit {rc}; address space capped at {MEM_CAP_KIB >> 20} GiB)")
    trap = [t for t in TRAPS if t in err.lower()]
    if trap:
        broken.append(f"{label}: trap text {trap}")
    if 0 <= rc < 128 and rc not in OWN_ALLOWED:
        broken.append(f"{label}: exit {rc}, expected 0 or one of 64, 65, 66, 69")
    if rc != 0:
        lines = [ln for ln in err.splitlines() if ln.strip()]
        if len(lines) != 1 or not lines[0].startswith("kvstat: error:"):
            broken.append(f"{label}: {len(lines)} stderr lines, expected one `kvstat: error:` line")
        elif not named(lines[0], names):
            broken.append(f"{label}: the error line names none of {names}")
    return broken


def run_own_case(kvstat, case, base_dir, base_errors, timeout, keep):
    """Copies a base, mutates it, runs the family's commands; returns (seed, label, what, codes, broken)."""
    case_seed, family, op, pin, base = case
    rng = Draw(case_seed, pin)
    is_state = family.startswith("state")
    pool = sorted(STATE_BASES if is_state else ARTIFACT_BASES)
    base = base or rng.choice(getattr(op, "bases", None) or pool)
    label = f"{family}:{base}" + (f" {op.__name__}" if op else "")
    key = f"{'state' if is_state else 'artifact'}:{base}"
    if key in base_errors:
        return case_seed, label, "-", [], [f"base {key} could not be made: {base_errors[key]}"]
    tmp = Path(tempfile.mkdtemp(prefix=f"kvfuzz-{case_seed}-"))
    broken, codes = [], []
    try:
        if is_state:
            shutil.copy(base_dir / f"{base}.a.h5", tmp / "s.h5")
            shutil.copy(base_dir / f"{base}.b.h5", tmp / "s2.h5")
            target = tmp / "s.h5"
        else:
            shutil.copytree(base_dir / f"art-{base}", tmp / "F")
            shutil.copy(base_dir / "g.h5", tmp / "g.h5")
            target = tmp / "F" / "projections.h5"
        try:
            if op is None:
                data, what = mutate_own(target.read_bytes(), rng)
                target.write_bytes(data)
            else:
                with h5py.File(target, "r+") as f:
                    what = op(f, rng)
        except Exception as e:  # a mutation that cannot be applied is the fuzz's bug, reported as such
            return case_seed, label, "-", [], [f"mutation failed: {type(e).__name__}: {e}"]
        if is_state:
            pair = ["s.h5", "s2.h5"] if rng.random() < 0.5 else ["s2.h5", "s.h5"]
            runs = [("merge", ["merge", "s.h5", "-o", "m", "--quiet"], "m", check_merge_out, ["s.h5"]),
                    ("merge2", ["merge", *pair, "-o", "m2"], "m2", check_merge_out, ["s.h5", "s2.h5"]),
                    ("fit", ["fit-lowrank", "s.h5", "-o", "f", "--quiet"], "f", check_fit_out, ["s.h5"])]
        else:
            bounded = base in EVAL_BOUNDED and op is not None and op not in CHANGES_NUMBERS
            runs = [("eval", ["eval", "--artifact", "F", "g.h5"], None,
                     lambda out, b=bounded: check_eval_out(out, b), ["projections.h5", "F", "g.h5"])]
        for name, args, out_dir, checker, names in runs:
            if any(c.endswith(" hang") for c in codes):  # the same file would hang the next command too
                codes.append(f"{name} skipped")
                continue
            before = snapshot(tmp)
            rc, out, err, seconds, hung = run_capped(kvstat, args, tmp, timeout)
            codes.append(f"{name} {'hang' if hung else rc}")
            found = check_own_run(name, rc, err, hung, timeout, names)
            if rc == 0 and not hung:
                try:
                    checker(tmp / out_dir) if out_dir else checker(out)
                except Broken as e:
                    found.append(f"{name} result: {e}")
                except Exception as e:  # output the checker cannot read is a failure too
                    found.append(f"{name} result: {type(e).__name__}: {e}")
            after = snapshot(tmp)
            changed = [rel for rel, h in before.items() if after.get(rel) != h]
            if changed:
                found.append(f"{name}: changed or removed files that existed before: {changed[:4]}")
            if rc != 0 and not hung:
                new = sorted(set(after) - set(before))
                if new:
                    found.append(f"{name}: a failed run left {new[:4]}")
            left = [rel for rel in after if ".tmp-" in Path(rel).name]
            if left:
                found.append(f"{name}: temporary files left: {left[:3]}")
            if found:
                found.append(f"{name} command: kvstat {' '.join(args)}")
                found.append(f"{name} stderr: {err.strip()[:300]!r}")
            broken += found
        return case_seed, label, what, codes, broken
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
    ap.add_argument("--cases", type=int, default=600, help="dump mutations (default 600)")
    ap.add_argument("--own-cases", type=int, default=120, help="state-file and artifact mutations (default 120)")
    ap.add_argument("--family", choices=["all", "dumps", "own"], default="all",
                    help="dumps: mutated dumps only; own: mutated state files and fit artifacts only")
    ap.add_argument("--seed", type=int, default=20240)
    ap.add_argument("--only", type=int, action="append", help="run only the case with this seed (repeatable)")
    ap.add_argument("--jobs", type=int, default=2)
    ap.add_argument("--timeout", type=float, default=30.0, help="time bound per kvstat run on a dump (default 30 s)")
    ap.add_argument("--own-timeout", type=float, default=10.0,
                    help="time bound per kvstat run on a state file or artifact (default 10 s; they take well "
                         "under one)")
    ap.add_argument("--keep", help="keep each case's folder (mutated file, outputs) here")
    a = ap.parse_args()
    kvstat = str(Path(a.kvstat).resolve())
    if not os.access(kvstat, os.X_OK):
        print(f"fuzz: no kvstat binary at {kvstat} (swift build first, or --kvstat PATH)", file=sys.stderr)
        return 2
    sources_dir = Path(tempfile.mkdtemp(prefix="kvfuzz-safetensors-"))
    cases = plan(a.cases, a.seed, safetensors_sources(sources_dir)) if a.family != "own" else []
    own = own_plan(a.own_cases, a.seed) if a.family != "dumps" else []
    if a.only:
        cases = [c for c in cases if c[0] in a.only]
        own = [c for c in own if c[0] in a.only]
        if not cases and not own:
            print(f"fuzz: no case with seed {a.only} among --cases {a.cases} / --own-cases {a.own_cases} from "
                  f"--seed {a.seed}", file=sys.stderr)
            return 2
    start = time.monotonic()
    passed = failed = 0

    def tally(broken):
        nonlocal passed, failed
        for b in broken:
            print(f"       {b}")
        passed += not broken
        failed += bool(broken)

    base_dir = Path(tempfile.mkdtemp(prefix="kvfuzz-bases-"))
    try:
        base_errors = make_bases(kvstat, base_dir, a.own_timeout) if own else {}
        for key, why in sorted(base_errors.items()):
            print(f"fuzz: base {key} could not be made: {why}", file=sys.stderr)
        with ThreadPoolExecutor(max_workers=a.jobs) as pool:
            futures = [pool.submit(run_case, kvstat, s, src, a.timeout, a.keep) for s, src in cases]
            own_futures = [pool.submit(run_own_case, kvstat, c, base_dir, base_errors, a.own_timeout, a.keep)
                           for c in own]
            for fut in futures:
                case_seed, name, what, codes, broken = fut.result()
                status = "FAIL" if broken else "ok  "
                print(f"{status} seed={case_seed} {name}: {what}; exit inspect {codes[0]}, analyze "
                      f"{codes[1] if len(codes) > 1 else '-'}", flush=True)
                tally(broken)
            for fut in own_futures:
                case_seed, label, what, codes, broken = fut.result()
                status = "FAIL" if broken else "ok  "
                print(f"{status} seed={case_seed} {label}: {what}; exit {', '.join(codes) or '-'}", flush=True)
                tally(broken)
    finally:
        shutil.rmtree(base_dir, ignore_errors=True)
        shutil.rmtree(sources_dir, ignore_errors=True)
    print(f"({len(cases) + len(own)} cases in {time.monotonic() - start:.0f} s; rerun one: fuzz.py --only SEED)",
          file=sys.stderr)
    print(f"{passed} passed, {failed} failed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())

#!/usr/bin/env python3
"""The kvstat fault corpus: every case's inputs, command and expected outcome (see Tests/Faults/README.md).

`python3 Tests/Faults/make_corpus.py DIR [--case GLOB] [--kvstat PATH]` writes each case's inputs into
DIR/<case>/ (some cases run kvstat to make their inputs, e.g. a state file to merge) and its description into
DIR/<case>.json. `run_corpus.py` imports CASES from here, builds each case in its own temporary folder, runs it
and checks the rules. Data are seeded by the CRC32 of the case name, so every run writes the same bytes.

A case expects either an error (`codes`: exit codes it may end with, `contains`: substrings its one error line
must hold, case-insensitively) or success (`codes=(0,)` and a `check` that verifies the documented result).
`guess` says where the expected outcome is our reading of the issue rather than something documented.
"""

import argparse
import fnmatch
import hashlib
import json
import os
import shutil
import subprocess
import sys
import zlib
from dataclasses import dataclass
from pathlib import Path

# The harness writes dumps in one thread while another forks kvstat: a forked child would inherit HDF5's
# flock on a file still open for writing and block the next open, so file locking is off here.
os.environ.setdefault("HDF5_USE_FILE_LOCKING", "FALSE")
import h5py
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from faultlib import (Broken, check_fit_dir, check_stats, check_text_files, dump_ref, expect_matches_ref,  # noqa: E402
                      expect_zero_energy, gaussian, layer_stats, load_json, put, random_layers, rng_for,
                      stored, strict_json, write_perlayer, fit_error, similarity_value, bf16_bits_to_f32)

ROOT = Path(__file__).resolve().parents[2]
FIXTURES = ROOT / "Tests" / "Fixtures" / "dumps"
SAMPLE = ROOT / "notebooks-data" / "minilm-sample.h5"
I64_MAX = "9223372036854775807"


class SetupError(Exception):
    """A case's inputs could not be made (e.g. the kvstat run that makes a state file failed)."""


class Ctx:
    """What a case's setup and check see: its folder, its seeded generator, kvstat, and the run's result."""

    def __init__(self, case, path, kvstat):
        self.case, self.path, self.kvstat_path = case, Path(path), kvstat
        self.rng = rng_for(case.name)
        self.ref = {}
        self.rc, self.stdout, self.stderr = None, "", ""

    def p(self, rel):
        return self.path / rel

    def kvstat(self, *args, timeout=120):
        """Run kvstat in the case folder while making inputs; a failure is a setup error."""
        r = subprocess.run([self.kvstat_path, *args], cwd=self.path, capture_output=True, text=True,
                           timeout=timeout, env=run_env())
        if r.returncode != 0:
            raise SetupError(f"setup `kvstat {' '.join(args)}` exited {r.returncode}: {r.stderr.strip()[:300]}")
        return r


def run_env():
    env = dict(os.environ, NO_COLOR="1", LC_ALL="C")
    env.pop("KVSTAT_DIE_WITH_PARENT", None)
    return env


@dataclass
class Case:
    name: str
    args: list
    setup: object
    codes: tuple = (0,)
    contains: tuple = ()
    check: object = None
    batch: bool = False
    mutable: tuple = ()     # globs (relative) of files made before the run that the command may change
    outputs: tuple = ()     # batch: paths that must not exist after an error exit
    timeout: float = None
    guess: str = ""
    group: str = ""
    error_check: bool = False  # run `check` on an expected error exit too (default: on exit 0 only)

    def describe(self):
        return {"name": self.name, "group": self.group, "command": ["kvstat", *self.args], "codes": list(self.codes),
                "contains": list(self.contains), "check": getattr(self.check, "__doc__", None) or None,
                "guess": self.guess or None}


CASES = []


def case(name, args, setup, **kw):
    if any(c.name == name for c in CASES):
        raise ValueError(f"duplicate case {name}")
    c = Case(name, [str(a) for a in args], setup, **kw)
    c.group = kw.get("group") or name.split("-")[0]
    CASES.append(c)
    return c


# ---------------------------------------------------------------------------------------------------------
# Setup helpers
# ---------------------------------------------------------------------------------------------------------

def require(condition, message):
    if not condition:
        raise Broken(message)


def copy_fixture(name, as_name=None):
    def setup(ctx):
        shutil.copy(FIXTURES / name, ctx.p(as_name or name))
    return setup


def chain(*steps):
    def setup(ctx):
        for s in steps:
            s(ctx)
    return setup


def good_dump(fname="g.h5", L=3, B=2, H=2, T=16, D=4, dtype="float16", queries=0, seed_name=None):
    """A small well-formed per-layer dump (queries: query heads, 0 for none)."""
    def setup(ctx):
        rng = rng_for(seed_name or f"{ctx.case.name}/{fname}")
        layers = random_layers(rng, L, B, H, T, D)
        if queries:
            for kinds in layers:
                kinds["query"] = gaussian(rng, (B, queries, T, D))
        write_perlayer(ctx.p(fname), layers, dtype=dtype)
    return setup


def user_files(folder, names=("notes.txt", "results.csv")):
    def setup(ctx):
        d = ctx.p(folder)
        d.mkdir(parents=True, exist_ok=True)
        for n in names:
            (d / n).write_text(f"the user's own {n}: not kvstat's to replace\n")
    return setup


def text_file(fname, text):
    def setup(ctx):
        ctx.p(fname).parent.mkdir(parents=True, exist_ok=True)
        ctx.p(fname).write_text(text)
    return setup


def kvstat_step(*args):
    def setup(ctx):
        ctx.kvstat(*args)
    return setup


def analyze_ok(out="out", extra=None):
    def check(ctx):
        """stats.json strict JSON within documented bounds; CSV/HTML/Markdown without nan/inf"""
        stats = load_json(ctx.p(out) / "stats.json")
        check_stats(stats)
        check_text_files(ctx.p(out))
        if extra:
            extra(ctx, stats)
    return check


def fit_ok(out="fit", extra=None, quantized=False, centred=False, sweep=False):
    def check(ctx):
        """fit outputs present, strict JSON, errors in [0, 1] or null with a note, orthonormal finite projections"""
        m = check_fit_dir(ctx.p(out), quantized=quantized, centred=centred)
        if sweep:
            if not ctx.p(out + "/sweep.csv").is_file():
                raise Broken("--sweep wrote no sweep.csv")
            if not m.get("sweep"):
                raise Broken("--sweep: manifest has no sweep entries")
        if extra:
            extra(ctx, m)
    return check


def inspect_json_ok(extra=None):
    def check(ctx):
        """inspect --json prints strict JSON"""
        value = strict_json(ctx.stdout, "inspect --json output")
        if extra:
            extra(ctx, value)
    return check


def stdout_json_ok(extra=None):
    def check(ctx):
        """stdout is strict JSON"""
        value = strict_json(ctx.stdout, "stdout")
        if extra:
            extra(ctx, value)
    return check


def file_ok(rel):
    def check(ctx):
        """the page exists and shows no nan/inf"""
        p = ctx.p(rel)
        if not p.is_file():
            raise Broken(f"{rel} was not written")
        check_text_files(p.parent)
    return check


# ---------------------------------------------------------------------------------------------------------
# 1. Degenerate numbers, through every command
# ---------------------------------------------------------------------------------------------------------

SHAPE = (3, 2, 2, 16, 4)  # L, B, H, T, D: 8 channels, 32 rows


def zeros_like_shape(L=3, B=2, H=2, T=16, D=4):
    return [{k: np.zeros((B, H, T, D)) for k in ("key", "value")} for _ in range(L)]


def v_zeros(rng):
    return zeros_like_shape(), "float16", None


def v_const_channel(rng):
    L, B, H, T, D = SHAPE
    out = []
    for _ in range(L):
        kinds = {}
        for k in ("key", "value"):
            c = rng.uniform(0.5, 2.0, size=(1, H, 1, D))
            kinds[k] = np.broadcast_to(c, (B, H, T, D)).copy()
        out.append(kinds)
    return out, "float32", None


def v_zero_layer(rng):
    layers = random_layers(rng, *SHAPE)
    layers[1] = zeros_like_shape(L=1)[0]
    return layers, "float16", None


def v_all_nan(rng):
    return [{k: np.full(SHAPE[1:], np.nan) for k in ("key", "value")} for _ in range(SHAPE[0])], "float32", None


def v_all_inf(rng):
    sign = np.where(rng.random(SHAPE[1:]) < 0.5, -1.0, 1.0)
    return [{k: sign * np.inf for k in ("key", "value")} for _ in range(SHAPE[0])], "float32", None


def v_nan_row(rng):
    layers = random_layers(rng, *SHAPE)
    layers[0]["key"][0, 1, 3, 2] = np.nan      # one value: token (0, 3) of layer 0's keys
    layers[2]["value"][1, 0, 7, 0] = np.inf    # one +Inf: token (1, 7) of layer 2's values
    return layers, "float32", None


def scaled(scale, dtype):
    def make(rng):
        return random_layers(rng, *SHAPE, scale=scale), dtype, None
    return make


def v_f16_overflow(rng):
    layers = random_layers(rng, *SHAPE, scale=4e4)   # about a tenth of the values exceed 65504 → ±inf in float16
    return layers, "float16", None


def v_bf16_special(rng):
    layers = random_layers(rng, *SHAPE)
    bits = np.array([0x0001, 0x8001, 0x007F, 0x7F7F, 0xFF7F, 0x0080], dtype=np.uint16)  # subnormals, ±max, min normal
    special = bf16_bits_to_f32(bits).astype(np.float64)
    for i, kinds in enumerate(layers):
        kinds["key"][0, 0, :6, 0] = special
    return layers, "bfloat16", None


def v_mixed_scale(rng):
    layers = random_layers(rng, *SHAPE)
    for kinds in layers:
        kinds["key"][:, 0, :, 1] *= 1e20    # one outlier channel at 1e20, the rest about 1
    return layers, "float32", None


def v_one_token(rng):
    return random_layers(rng, 3, 1, 2, 1, 4), "float16", None


def v_one_channel(rng):
    return random_layers(rng, 3, 2, 1, 16, 1), "float32", None


def v_one_sequence(rng):
    return random_layers(rng, 3, 1, 2, 32, 4), "float16", None


def v_wide_head(rng):
    return random_layers(rng, 2, 1, 1, 8, 1024), "float16", None


# name → (maker, which (layer, kind) have no energy: function(layer, kind) → bool, rtol for σ, notes)
VARIANTS = {
    "zeros": (v_zeros, lambda l, k: True, None),
    "const-channel": (v_const_channel, lambda l, k: False, 1e-3),
    "zero-layer": (v_zero_layer, lambda l, k: l == 1, 1e-3),
    "all-nan": (v_all_nan, lambda l, k: True, None),
    "all-inf": (v_all_inf, lambda l, k: True, None),
    "nan-row": (v_nan_row, lambda l, k: False, 1e-3),
    "f32-1e20": (scaled(1e20, "float32"), lambda l, k: False, 1e-3),
    "f32-1e-25": (scaled(1e-25, "float32"), lambda l, k: False, 1e-3),
    "f32-subnormal": (scaled(1e-40, "float32"), lambda l, k: False, 1e-2),
    "f16-overflow": (v_f16_overflow, lambda l, k: False, 1e-3),
    "f16-subnormal": (scaled(3e-6, "float16"), lambda l, k: False, 1e-3),
    "f64-1e300": (scaled(1e300, "float64"), lambda l, k: True, None),
    "bf16-1e37": (scaled(1e37, "bfloat16"), lambda l, k: False, 1e-3),
    "bf16-1e-36": (scaled(1e-36, "bfloat16"), lambda l, k: False, 1e-3),
    "bf16-special": (v_bf16_special, lambda l, k: False, 1e-3),
    "mixed-1e20-channel": (v_mixed_scale, lambda l, k: False, 1e-3),
    "one-token": (v_one_token, lambda l, k: False, 1e-3),
    "one-channel": (v_one_channel, lambda l, k: False, 1e-3),
    "one-sequence": (v_one_sequence, lambda l, k: False, 1e-3),
    "wide-head": (v_wide_head, lambda l, k: False, 1e-3),
}

GUESSES_NUM = {
    "f32-subnormal": "σ of float32 subnormals (1e-40) computed accurately (rtol 1e-2), i.e. blocks are rescaled "
                     "before the float32 BLAS products",
    "f64-1e300": "float64 values beyond float32 range become ±Inf when rounded to float32 (docs), so they are "
                 "counted as non-finite and their rows excluded: statistics of an empty matrix, exit 0",
    "f32-1e20": "σ, effective ranks and pca errors of 1e20-scaled data equal numpy's (blocks rescaled so the "
                "float32 Gram does not overflow)",
    "f32-1e-25": "σ of 1e-25-scaled data equal numpy's (the float32 Gram must not underflow)",
    "bf16-1e37": "as f32-1e20, for bfloat16 near its maximum",
    "bf16-1e-36": "as f32-1e-25, for bfloat16 near its smallest normals",
    "bf16-special": "±max bfloat16 and subnormals mixed with data: σ equals numpy's",
    "mixed-1e20-channel": "one channel at 1e20 among channels about 1: σ₁ equals numpy's",
    "all-nan": "all-NaN: exit 0, non_finite counts every value, tokens 0, statistics of an empty matrix "
               "(σ all 0, effective ranks 0, stable_rank/kurtosis null); fits: errors null with a note",
    "all-inf": "as all-nan",
    "const-channel": "constant channels: kurtosis null (zero variance); with --center the matrix has no "
                     "energy: σ all 0, effective ranks 0, stable_rank null",
    "one-token": "one token: σ₁ = ‖x‖, kurtosis null; fit --holdout 0.5 leaves no token to fit: error 64/65",
}


def variant_setup(vname):
    maker = VARIANTS[vname][0]

    def setup(ctx):
        layers, dtype, lengths = maker(rng_for("variant/" + vname))
        images = write_perlayer(ctx.p("v.h5"), layers, dtype=dtype, lengths=lengths)
        ctx.ref = dump_ref(images, lengths)
    return setup


def variant_expect(vname):
    """Per (layer, kind) checks of a stats.json against the variant's reference."""
    _, no_energy, rtol = VARIANTS[vname]

    def extra(ctx, stats):
        for key, ref in ctx.ref.items():
            layer, kind = key.split(".")
            layer = int(layer)
            ks = layer_stats(stats, layer, kind)
            what = f"layer {layer} {kind}"
            if ks.get("non_finite") != ref["nonfinite"]:
                raise Broken(f"{what}: non_finite = {ks.get('non_finite')}, expected {ref['nonfinite']}")
            if ks.get("tokens") != ref["rows"]:
                raise Broken(f"{what}: tokens = {ks.get('tokens')}, expected {ref['rows']} (rows without NaN/Inf)")
            if no_energy(layer, kind) or ref["energy"] == 0:
                expect_zero_energy(ks, what)
            elif rtol:
                expect_matches_ref(ks, ref, what, rtol)
            if vname in ("const-channel",):
                kurt = ks.get("channels", {}).get("kurtosis") or []
                if any(k is not None for k in kurt):
                    raise Broken(f"{what}: kurtosis of a constant channel is {kurt[:3]}, expected null")
            if vname == "one-token":
                kurt = ks.get("channels", {}).get("kurtosis") or []
                if any(k is not None for k in kurt):
                    raise Broken(f"{what}: kurtosis of one token is {kurt[:3]}, expected null")
        layers = sorted({int(k.split('.')[0]) for k in ctx.ref})
        for kind in ("key", "value"):
            for a, b in zip(layers, layers[1:]):
                dead = any(no_energy(x, kind) or ctx.ref[f"{x}.{kind}"]["energy"] == 0 for x in (a, b))
                if dead and similarity_value(stats, kind, "cka", a, b) is not None:
                    raise Broken(f"{kind} CKA of layers {a},{b} (one without energy) is "
                                 f"{similarity_value(stats, kind, 'cka', a, b)}, expected null")
    return extra


def zero_energy_fit_expect(vname, part="fit"):
    _, no_energy, rtol = VARIANTS[vname]

    def extra(ctx, m):
        for pos, layer in enumerate(m.get("layers", [])):
            for kind in ("key", "value"):
                ref = ctx.ref.get(f"{layer}.{kind}")
                if ref and (no_energy(layer, kind) or ref["energy"] == 0):
                    for p in (part, "held_out") if m.get("held_out") else (part,):
                        if fit_error(m, p, kind, pos) is not None:
                            raise Broken(f"{p} error of layer {layer} {kind} (no energy) = "
                                         f"{fit_error(m, p, kind, pos)}, expected null with a note")
    return extra


def pca_reference_expect(vname):
    """pca at keep ratio 0.25 with no holdout is the Eckart–Young optimum (docs/fit-lowrank.md)."""
    base = zero_energy_fit_expect(vname)
    _, no_energy, rtol = VARIANTS[vname]

    def extra(ctx, m):
        base(ctx, m)
        if rtol is None:
            return
        for pos, layer in enumerate(m.get("layers", [])):
            for kind in ("key", "value"):
                ref = ctx.ref[f"{layer}.{kind}"]
                if ref["pca_error"] is None or no_energy(layer, kind):
                    continue
                got = fit_error(m, "fit", kind, pos)
                if got is None or abs(got - ref["pca_error"]) > 2e-3:
                    raise Broken(f"pca fit error of layer {layer} {kind} = {got}, truncated SVD (numpy) gives "
                                 f"{ref['pca_error']:.6f}")
    return extra


def scan_expect(ctx, value):
    scan = value.get("scan") or {}
    for key, ref in ctx.ref.items():
        layer, kind = key.split(".")
        got = (scan.get("non_finite") or {}).get(f"layer{layer}.{kind}", 0)
        if got != ref["nonfinite"]:
            raise Broken(f"inspect --read-all: non_finite layer{layer}.{kind} = {got}, expected {ref['nonfinite']}")


def add_numbers():
    for vname in VARIANTS:
        setup = variant_setup(vname)
        guess = GUESSES_NUM.get(vname, "")
        g = "numbers"
        case(f"num-{vname}-inspect", ["inspect", "v.h5", "--read-all", "--json"], setup,
             check=inspect_json_ok(scan_expect), group=g)
        case(f"num-{vname}-analyze", ["analyze", "v.h5", "-o", "out", "--quiet"], setup,
             check=analyze_ok(extra=variant_expect(vname)), guess=guess, group=g)
        hold = (64, 65) if vname == "one-token" else (0,)
        fits = [("pca", [], pca_reference_expect(vname), {}),
                ("xkv", ["--method", "xkv"], zero_energy_fit_expect(vname), {}),
                ("matryoshka", ["--method", "matryoshka"], zero_energy_fit_expect(vname), {}),
                ("cskv", ["--method", "cskv", "--window", "4"], zero_energy_fit_expect(vname), {}),
                ("cskv-int4", ["--method", "cskv", "--window", "4", "--quant", "int4"],
                 zero_energy_fit_expect(vname), {"quantized": True}),
                ("sweep", ["--sweep"], zero_energy_fit_expect(vname), {"sweep": True}),
                ("holdout", ["--holdout", "0.5"], zero_energy_fit_expect(vname), {})]
        for label, opts, extra, kw in fits:
            codes = hold if label == "holdout" else (0,)
            case(f"num-{vname}-fit-{label}", ["fit-lowrank", "v.h5", "-o", "fit", "--quiet", *opts], setup,
                 codes=codes, contains=("holdout",) if codes != (0,) else (),
                 check=fit_ok(extra=extra, **kw), guess=guess, group=g)
    for vname in ("zeros", "const-channel"):
        case(f"num-{vname}-analyze-center", ["analyze", "v.h5", "-o", "out", "--quiet", "--center"],
             variant_setup(vname), check=analyze_ok(extra=centred_zero_expect), guess=GUESSES_NUM.get(vname, ""),
             group="numbers")
        case(f"num-{vname}-fit-center", ["fit-lowrank", "v.h5", "-o", "fit", "--quiet", "--center"],
             variant_setup(vname), check=fit_ok(centred=True, extra=zero_or_null_fit(vname)), group="numbers")
    # eval, merge, report and fits from state files on degenerate dumps
    for vname in ("zeros", "all-nan", "f32-1e20", "zero-layer", "one-token"):
        cal = good_dump("cal.h5", *(VARIANTS_SHAPE.get(vname, SHAPE)), dtype="float32", seed_name="cal/" + vname)
        case(f"num-{vname}-eval", ["eval", "--artifact", "art", "v.h5"],
             chain(variant_setup(vname), cal, kvstat_step("fit-lowrank", "cal.h5", "-o", "art", "--quiet")),
             check=stdout_json_ok(eval_expect(vname)), guess="eval on a dump without energy: errors null",
             group="numbers")
        seq_split = vname != "one-token"
        parts = (kvstat_step("analyze", "v.h5", "-o", "pa", "--quiet", "--save-state", "a.state.h5",
                             *(["--sequences", "0"] if seq_split else ["--tokens", "0:1"])),
                 kvstat_step("analyze", "v.h5", "-o", "pb", "--quiet", "--save-state", "b.state.h5",
                             *(["--sequences", "1"] if seq_split else ["--layers", "0-2"])))
        if seq_split:
            case(f"num-{vname}-merge", ["merge", "a.state.h5", "b.state.h5", "-o", "m", "--quiet"],
                 chain(variant_setup(vname), *parts), check=analyze_ok("m", variant_expect(vname)),
                 guess=GUESSES_NUM.get(vname, ""), group="numbers")
        case(f"num-{vname}-fit-state", ["fit-lowrank", "a.state.h5", "-o", "fit", "--quiet"],
             chain(variant_setup(vname), parts[0]), check=fit_ok(extra=zero_energy_fit_expect(vname)),
             guess=GUESSES_NUM.get(vname, ""), group="numbers")
        case(f"num-{vname}-report", ["report", "A", "--fit", "F", "-o", "page.html"],
             chain(variant_setup(vname), kvstat_step("analyze", "v.h5", "-o", "A", "--quiet"),
                   kvstat_step("fit-lowrank", "v.h5", "-o", "F", "--quiet")),
             check=file_ok("page.html"), group="numbers")


VARIANTS_SHAPE = {"one-token": (3, 1, 2, 1, 4)}


def centred_zero_expect(ctx, stats):
    for entry in stats["layers"]:
        for kind in ("key", "value"):
            ks = entry[kind]
            sv = ks.get("singular_values") or []
            if sv and sv[0] > 1e-6 * max(1.0, (ks.get("channels") or {}).get("median_max_abs") or 1.0):
                raise Broken(f"layer {entry['layer']} {kind}: centred constant data has σ₁ = {sv[0]}, expected 0")
            expect_zero_energy({k: v for k, v in ks.items() if k != "channels"}, f"layer {entry['layer']} {kind}")


def zero_or_null_fit(vname):
    """Centred constant data: X − μ = 0, so ‖X − X̂‖ = 0, and the error ‖X − X̂‖/‖X‖ is 0 where
    ‖X‖ > 0, null where ‖X‖ = 0."""
    def extra(ctx, m):
        for kind, values in (m.get("fit", {}).get("per_layer") or {}).items():
            for layer, v in enumerate(values):
                want_null = ctx.ref[f"{layer}.{kind}"]["energy"] == 0
                if (v is not None) == want_null or (v is not None and v > 1e-6):
                    raise Broken(f"centred {vname} data: fit error of layer {layer} {kind} = {v}, expected "
                                 f"{'null' if want_null else '0'}")
    return extra


def eval_expect(vname):
    _, no_energy, _ = VARIANTS[vname]

    def extra(ctx, value):
        for kind, values in (value.get("per_layer") or {}).items():
            for layer, v in enumerate(values):
                ref = ctx.ref.get(f"{layer}.{kind}")
                if ref and (no_energy(layer, kind) or ref["energy"] == 0) and v is not None:
                    raise Broken(f"eval: error of layer {layer} {kind} (no energy) = {v}, expected null")
                if v is not None and not (0 <= v <= 1 + 1e-4):
                    raise Broken(f"eval: error of layer {layer} {kind} = {v}, outside [0, 1]")
    return extra


# ---------------------------------------------------------------------------------------------------------
# 2. Resource bombs
# ---------------------------------------------------------------------------------------------------------

def huge_unwritten(ctx):
    with h5py.File(ctx.p("bomb.h5"), "w") as f:
        for k in ("key", "value"):
            f.create_dataset(f"layer_00/{k}", shape=(1, 1, 2 ** 40, 4), dtype="f2", chunks=(1, 1, 1024, 4))


def group_cycle(ctx):
    layers = random_layers(ctx.rng, 2, 1, 2, 8, 4)
    with h5py.File(ctx.p("cycle.h5"), "w") as f:
        for i, kinds in enumerate(layers):
            for k, x in kinds.items():
                put(f, f"layers/{i}/{k}", x, "float16")
        f["layers/0/sub"] = f["layers"]


def many_layers(n, T=2, H=1, D=2, fname="many.h5"):
    def setup(ctx):
        rng = rng_for(ctx.case.name)
        with h5py.File(ctx.p(fname), "w") as f:
            for i in range(n):
                for k in ("key", "value"):
                    f.create_dataset(f"layer_{i:04d}/{k}", data=rng.standard_normal((1, H, T, D)).astype("f2"))
    return setup


def huge_head_dim(ctx):
    with h5py.File(ctx.p("wide.h5"), "w") as f:
        for k in ("key", "value"):
            f.create_dataset(f"layer_00/{k}", data=ctx.rng.standard_normal((1, 1, 2, 131072)).astype("f2"))


def layers_numbers(expected):
    def extra(ctx, stats):
        if stats.get("layer_numbers") != expected:
            raise Broken(f"layer_numbers = {stats.get('layer_numbers')}, expected {expected}")
    return extra


def add_bombs():
    g = "bombs"
    bomb_guess = ("a block larger than the dump is the whole dump (exit 0), or the value is refused (64) or "
                  "priced (69); never an allocation of that size")
    for v in (I64_MAX, "1099511627776"):
        for cmd in (["analyze", "g.h5", "-o", "out", "--quiet"], ["fit-lowrank", "g.h5", "-o", "out", "--quiet"],
                    ["inspect", "g.h5", "--read-all"]):
            check = analyze_ok() if cmd[0] == "analyze" else fit_ok("out") if cmd[0] == "fit-lowrank" else None
            case(f"bomb-block-tokens-{cmd[0]}-{len(v)}", [*cmd, "--block-tokens", v], good_dump(),
                 codes=(0, 64, 69), contains=("--block-tokens",), check=check, guess=bomb_guess, group=g)
    case("bomb-block-tokens-eval", ["eval", "--artifact", "art", "g.h5", "--block-tokens", I64_MAX],
         chain(good_dump(), kvstat_step("fit-lowrank", "g.h5", "-o", "art", "--quiet")), codes=(0, 64, 69),
         contains=("--block-tokens",), check=stdout_json_ok(), guess=bomb_guess, group=g)
    for cmd in ("analyze", "fit-lowrank"):
        case(f"bomb-layers-billion-{cmd}", [cmd, "g.h5", "-o", "out", "--quiet", "--layers", "0-1000000000"],
             good_dump(), codes=(65,), contains=("g.h5", "layer"), timeout=20, group=g)
        case(f"bomb-layers-i64-{cmd}", [cmd, "g.h5", "-o", "out", "--quiet", "--layers", f"0-{I64_MAX}"],
             good_dump(), codes=(64, 65), contains=("layer",), timeout=20, group=g)
    case("bomb-sequences-billion", ["analyze", "g.h5", "-o", "out", "--quiet", "--sequences", "0-1000000000"],
         good_dump(), codes=(65,), contains=("g.h5", "sequence"), timeout=20, group=g)
    unwritten_guess = "a dataset declaring 2^40 tokens with no chunk written is refused (65) or priced (69)"
    case("bomb-unwritten-2e40-inspect", ["inspect", "bomb.h5"], huge_unwritten, codes=(0, 65, 69),
         contains=("bomb.h5", "layer_00"), timeout=30, guess=unwritten_guess, group=g)
    for name, cmd in (("inspect-read-all", ["inspect", "bomb.h5", "--read-all"]),
                      ("analyze", ["analyze", "bomb.h5", "-o", "out", "--quiet"]),
                      ("fit", ["fit-lowrank", "bomb.h5", "-o", "out", "--quiet"])):
        case(f"bomb-unwritten-2e40-{name}", cmd, huge_unwritten, codes=(65, 69), contains=("bomb.h5", "layer_00"),
             guess=unwritten_guess, group=g)
    cyc = "a group hard-linked into itself: each object visited once (exit 0, layers 0 and 1), or refused (65)"
    case("bomb-group-cycle-inspect", ["inspect", "cycle.h5"], group_cycle, codes=(0, 65), contains=("cycle.h5",),
         timeout=30, guess=cyc, group=g)
    case("bomb-group-cycle-analyze", ["analyze", "cycle.h5", "-o", "out", "--quiet"], group_cycle, codes=(0, 65),
         contains=("cycle.h5",), check=analyze_ok(extra=layers_numbers([0, 1])), timeout=30, guess=cyc, group=g)
    case("bomb-3000-layers-inspect", ["inspect", "many.h5"], many_layers(3000), group=g)
    case("bomb-3000-layers-analyze", ["analyze", "many.h5", "-o", "out", "--quiet"], many_layers(3000),
         check=analyze_ok(extra=lambda ctx, s: require(len(s["layers"]) == 3000,
                                                       f"{len(s['layers'])} layers analysed, expected 3000")),
         group=g)
    case("bomb-3000-layers-fit", ["fit-lowrank", "many.h5", "-o", "fit", "--quiet", "--method", "matryoshka"],
         many_layers(3000), check=fit_ok(), group=g)
    case("bomb-all-pairs-priced", ["analyze", "many.h5", "-o", "out", "--quiet", "--all-pairs"],
         many_layers(2000, T=2, H=4, D=64), codes=(69,), contains=("many.h5", "--all-pairs"),
         guess="2000 layers × 256 channels, all pairs: ≈ 1 TB of cross products → 69 naming the numbers", group=g)
    case("bomb-all-pairs-ok", ["analyze", "many.h5", "-o", "out", "--quiet", "--all-pairs"],
         many_layers(64, T=4, H=2, D=4), check=analyze_ok(), group=g)
    case("bomb-huge-head-dim-analyze", ["analyze", "wide.h5", "-o", "out", "--quiet"], huge_head_dim,
         codes=(65, 69), contains=("wide.h5",), guess="head_dim 131072: a 128 GiB Gram → 69, or 65 above a "
                                                        "documented channel limit", group=g)
    case("bomb-huge-head-dim-fit", ["fit-lowrank", "wide.h5", "-o", "out", "--quiet"], huge_head_dim,
         codes=(65, 69), contains=("wide.h5",), guess="head_dim 131072: a 128 GiB Gram → 69, or 65 above a "
                                                        "documented channel limit", group=g)
    case("bomb-huge-head-dim-inspect", ["inspect", "wide.h5"], huge_head_dim, codes=(0, 65), contains=("wide.h5",),
         group=g)
    case("bomb-attention-queries", ["fit-lowrank", "g.h5", "-o", "fit", "--quiet", "--attention-queries", I64_MAX],
         good_dump(queries=4), codes=(0, 64), contains=("--attention-queries",), check=fit_ok(),
         guess="more sampled queries than tokens: clamp to the tokens (0) or refuse (64)", group=g)
    case("bomb-threads", ["analyze", "g.h5", "-o", "out", "--quiet", "--threads", I64_MAX], good_dump(),
         codes=(0, 64), contains=("--threads",), check=analyze_ok(), guess="clamped or refused", group=g)
    case("bomb-align-rank", ["analyze", "g.h5", "-o", "out", "--quiet", "--align-rank", I64_MAX], good_dump(),
         codes=(0, 64), contains=("--align-rank",), check=analyze_ok(), guess="clamped or refused", group=g)
    case("bomb-dct-window", ["analyze", "g.h5", "-o", "out", "--quiet", "--dct-window", I64_MAX], good_dump(),
         codes=(0, 64), contains=("--dct-window",), check=analyze_ok(), guess="clamped or refused", group=g)
    case("bomb-fifo-input", ["inspect", "pipe.h5"], lambda ctx: os.mkfifo(ctx.p("pipe.h5")), codes=(65, 66),
         contains=("pipe.h5",), timeout=20, guess="a FIFO is not a file: refused without opening it", group=g)
    case("bomb-dev-zero-input", ["analyze", "/dev/zero", "-o", "out", "--quiet"], lambda ctx: None, codes=(65, 66),
         contains=("/dev/zero",), timeout=20, guess="a character device is not a dump", group=g)


# ---------------------------------------------------------------------------------------------------------
# 3. Writes over inputs and user files
# ---------------------------------------------------------------------------------------------------------

def custom_layout(ctx):
    shutil.copy(FIXTURES / "custom_thd.h5", ctx.p("c.h5"))
    shutil.copy(FIXTURES / "custom_thd.layout.json", ctx.p("l.json"))


def add_writes():
    g = "writes"
    case("write-save-state-over-dump", ["analyze", "d.h5", "-o", "out", "--quiet", "--save-state", "d.h5"],
         good_dump("d.h5"), codes=(73,), contains=("d.h5",), group=g)
    case("write-fit-into-input-folder", ["fit-lowrank", "D/projections.h5", "-o", "D", "--quiet"],
         chain(lambda ctx: ctx.p("D").mkdir(), good_dump("D/projections.h5")), codes=(73,),
         contains=("projections.h5",), group=g)
    case("write-report-over-stats", ["report", "A", "-o", "A/stats.json"],
         chain(good_dump(), kvstat_step("analyze", "g.h5", "-o", "A", "--quiet")), codes=(73,),
         contains=("stats.json",), group=g)
    case("write-report-over-manifest", ["report", "F", "-o", "F/manifest.json"],
         chain(good_dump(), kvstat_step("fit-lowrank", "g.h5", "-o", "F", "--quiet")), codes=(73,),
         contains=("manifest.json",), group=g)
    case("write-report-over-dump", ["report", "A", "-o", "g.h5"],
         chain(good_dump(), kvstat_step("analyze", "g.h5", "-o", "A", "--quiet")), codes=(73,),
         contains=("g.h5",), guess="report -o onto an input dump → 73", group=g)
    case("write-analyze-into-user-folder", ["analyze", "g.h5", "-o", "U", "--quiet"],
         chain(good_dump(), user_files("U")), codes=(73,), contains=("U",), group=g)
    case("write-analyze-into-user-folder-force", ["analyze", "g.h5", "-o", "U", "--quiet", "--force"],
         chain(good_dump(), user_files("U")), check=analyze_ok("U"),
         guess="--force writes kvstat's files into the folder and leaves the user's other files alone", group=g)
    case("write-fit-into-user-folder", ["fit-lowrank", "g.h5", "-o", "U", "--quiet"],
         chain(good_dump(), user_files("U")), codes=(73,), contains=("U",), group=g)
    case("write-fit-into-user-folder-force", ["fit-lowrank", "g.h5", "-o", "U", "--quiet", "--force"],
         chain(good_dump(), user_files("U")), check=fit_ok("U"), guess="as analyze --force", group=g)
    case("write-merge-into-user-folder", ["merge", "a.state.h5", "-o", "U", "--quiet"],
         chain(good_dump(), kvstat_step("analyze", "g.h5", "-o", "A", "--quiet", "--save-state", "a.state.h5"),
               user_files("U")), codes=(73,), contains=("U",), group=g)
    case("write-analyze-into-input-folder", ["analyze", "g.h5", "-o", ".", "--quiet"],
         chain(good_dump(), text_file("notes.txt", "mine\n")), codes=(73,), group=g,
         guess="the folder holding the input and the user's files is not kvstat's to fill")
    case("write-analyze-output-is-input", ["analyze", "g.h5", "-o", "g.h5", "--quiet"], good_dump(), codes=(73,),
         contains=("g.h5",), group=g)
    case("write-analyze-output-is-user-file", ["analyze", "g.h5", "-o", "notes.txt", "--quiet"],
         chain(good_dump(), text_file("notes.txt", "mine\n")), codes=(73,), contains=("notes.txt",), group=g)
    case("write-save-state-over-layout", ["analyze", "c.h5", "--layout", "l.json", "-o", "out", "--quiet",
                                          "--save-state", "l.json"], custom_layout, codes=(73,),
         contains=("l.json",), group=g)
    case("write-output-is-layout", ["analyze", "c.h5", "--layout", "l.json", "-o", "l.json", "--quiet"],
         custom_layout, codes=(73,), contains=("l.json",), group=g)
    case("write-save-state-over-user-file", ["analyze", "g.h5", "-o", "out", "--quiet", "--save-state", "notes.txt"],
         chain(good_dump(), text_file("notes.txt", "mine\n")), codes=(73,), contains=("notes.txt",),
         guess="--save-state onto an existing file that is not a kvstat state → 73", group=g)
    case("write-save-state-over-other-dump", ["analyze", "g.h5", "-o", "out", "--quiet", "--save-state", "h.h5"],
         chain(good_dump(), good_dump("h.h5")), codes=(73,), contains=("h.h5",), group=g)
    case("write-merge-save-state-over-input", ["merge", "a.state.h5", "-o", "m", "--quiet", "--save-state",
                                               "a.state.h5"],
         chain(good_dump(), kvstat_step("analyze", "g.h5", "-o", "A", "--quiet", "--save-state", "a.state.h5")),
         codes=(73,), contains=("a.state.h5",), group=g)
    case("write-fit-output-is-eval-dump", ["fit-lowrank", "g.h5", "-o", "E", "--quiet", "--eval", "E/e.h5"],
         chain(lambda ctx: ctx.p("E").mkdir(), good_dump(), good_dump("E/e.h5")), codes=(73,),
         contains=("E",), group=g)
    # Positive controls: replacing kvstat's own earlier outputs is fine.
    case("write-analyze-rerun-same-folder", ["analyze", "g.h5", "-o", "out", "--quiet"],
         chain(good_dump(), kvstat_step("analyze", "g.h5", "-o", "out", "--quiet")), check=analyze_ok(),
         mutable=("out/*",), group=g)
    case("write-fit-rerun-same-folder", ["fit-lowrank", "g.h5", "-o", "fit", "--quiet"],
         chain(good_dump(), kvstat_step("fit-lowrank", "g.h5", "-o", "fit", "--quiet")), check=fit_ok(),
         mutable=("fit/*",), group=g)
    case("write-save-state-rerun", ["analyze", "g.h5", "-o", "out", "--quiet", "--save-state", "s.h5"],
         chain(good_dump(), kvstat_step("analyze", "g.h5", "-o", "out", "--quiet", "--save-state", "s.h5")),
         check=analyze_ok(), mutable=("out/*", "s.h5"), group=g)
    case("write-report-default", ["report", "A"],
         chain(good_dump(), kvstat_step("analyze", "g.h5", "-o", "A", "--quiet")), check=file_ok("A/report.html"),
         mutable=("A/report.html",), group=g)
    case("write-unwritable-parent", ["analyze", "g.h5", "-o", "f.txt/out", "--quiet"],
         chain(good_dump(), text_file("f.txt", "a file, not a folder\n")), codes=(73,), contains=("f.txt",), group=g)


# ---------------------------------------------------------------------------------------------------------
# 4. Mismatches and malformed layouts
# ---------------------------------------------------------------------------------------------------------

def stacked(fname, keys_layers=2, values_layers=2, B=1, H=2, T=8, D=4, extra=None):
    def setup(ctx):
        rng = rng_for(ctx.case.name)
        with h5py.File(ctx.p(fname), "w") as f:
            f["keys"] = gaussian(rng, (keys_layers, B, H, T, D)).astype("f2")
            f["values"] = gaussian(rng, (values_layers, B, H, T, D)).astype("f2")
            if extra:
                extra(f, rng)
    return setup


def sparse_layers(ctx):
    layers = random_layers(ctx.rng, 3, 1, 2, 8, 4)
    with h5py.File(ctx.p("s.h5"), "w") as f:
        for i, kinds in zip((0, 5, 7), layers):
            for k, x in kinds.items():
                put(f, f"layer_{i:02d}/{k}", x, "float16")


def perlayer_with(fname, extra, L=2, B=2, H=2, T=8, D=4):
    def setup(ctx):
        rng = rng_for(ctx.case.name)
        write_perlayer(ctx.p(fname), random_layers(rng, L, B, H, T, D), dtype="float16")
        with h5py.File(ctx.p(fname), "a") as f:
            extra(f, rng)
    return setup


def uint16_bfloat17(f, rng):
    del f["layer_00/key"]
    ds = f.create_dataset("layer_00/key", data=np.full((2, 2, 8, 4), 0x3F80, "u2"))
    ds.attrs["dtype"] = "bfloat17"


def vds_missing(ctx):
    rng = ctx.rng
    with h5py.File(ctx.p("vds.h5"), "w") as f:
        lay = h5py.VirtualLayout(shape=(1, 2, 8, 4), dtype="f4")
        lay[...] = h5py.VirtualSource("gone.h5", "data", shape=(1, 2, 8, 4))
        f.create_virtual_dataset("layer_00/key", lay, fillvalue=0)
        f["layer_00/value"] = gaussian(rng, (1, 2, 8, 4)).astype("f4")


def vds_present(ctx):
    rng = ctx.rng
    with h5py.File(ctx.p("src.h5"), "w") as f:
        f["data"] = gaussian(rng, (1, 2, 8, 4)).astype("f4")
    with h5py.File(ctx.p("vds.h5"), "w") as f:
        lay = h5py.VirtualLayout(shape=(1, 2, 8, 4), dtype="f4")
        lay[...] = h5py.VirtualSource("src.h5", "data", shape=(1, 2, 8, 4))
        f.create_virtual_dataset("layer_00/key", lay, fillvalue=0)
        f["layer_00/value"] = gaussian(rng, (1, 2, 8, 4)).astype("f4")


def add_mismatches():
    g = "mismatch"
    case("mm-eval-other-heads", ["eval", "--artifact", "art", "h4.h5"],
         chain(good_dump("h2.h5", H=2), good_dump("h4.h5", H=4), kvstat_step("fit-lowrank", "h2.h5", "-o", "art",
                                                                             "--quiet")),
         codes=(65,), contains=("h4.h5", "projections.h5"), group=g)
    case("mm-eval-other-head-dim", ["eval", "--artifact", "art", "d8.h5"],
         chain(good_dump("d4.h5", D=4, H=4), good_dump("d8.h5", D=8, H=2),
               kvstat_step("fit-lowrank", "d4.h5", "-o", "art", "--quiet")),
         codes=(65,), contains=("d8.h5", "projections.h5"),
         guess="same channel count (4×4 vs 2×8) but another head_dim: refused", group=g)
    case("mm-eval-fewer-layers", ["eval", "--artifact", "art", "l2.h5"],
         chain(good_dump("l3.h5", L=3), good_dump("l2.h5", L=2), kvstat_step("fit-lowrank", "l3.h5", "-o", "art",
                                                                             "--quiet")),
         codes=(65,), contains=("l2.h5", "projections.h5"), group=g)
    case("mm-eval-xkv-other-heads", ["eval", "--artifact", "art", "h4.h5"],
         chain(good_dump("h2.h5", H=2), good_dump("h4.h5", H=4),
               kvstat_step("fit-lowrank", "h2.h5", "-o", "art", "--quiet", "--method", "xkv")),
         codes=(65,), contains=("h4.h5", "projections.h5"), group=g)
    case("mm-fit-eval-other-model", ["fit-lowrank", "h2.h5", "-o", "fit", "--quiet", "--eval", "h4.h5"],
         chain(good_dump("h2.h5", H=2), good_dump("h4.h5", H=4)), codes=(65,), contains=("h4.h5",), group=g)
    states = (good_dump(), kvstat_step("analyze", "g.h5", "--sequences", "0", "-o", "A", "--quiet", "--save-state",
                                       "a.state.h5"),
              kvstat_step("analyze", "g.h5", "--sequences", "1", "-o", "B", "--quiet", "--save-state", "b.state.h5"))
    case("mm-merge-same-state-twice", ["merge", "a.state.h5", "a.state.h5", "-o", "m", "--quiet"], chain(*states),
         codes=(65,), contains=("a.state.h5",), guess="the same tokens twice cannot be merged: 65", group=g)
    case("mm-merge-overlap", ["merge", "ab.state.h5", "a.state.h5", "-o", "m", "--quiet"],
         chain(*states, kvstat_step("merge", "a.state.h5", "b.state.h5", "-o", "AB", "--quiet", "--save-state",
                                    "ab.state.h5")),
         codes=(65,), contains=("a.state.h5",), guess="(a+b)+a: a's tokens twice → 65", group=g)
    case("mm-merge-copy-of-state", ["merge", "a.state.h5", "copy.state.h5", "-o", "m", "--quiet"],
         chain(*states, lambda ctx: shutil.copy(ctx.p("a.state.h5"), ctx.p("copy.state.h5"))),
         codes=(65,), contains=("copy.state.h5",), guess="a byte copy of a state is the same tokens: 65", group=g)
    case("mm-merge-ok", ["merge", "a.state.h5", "b.state.h5", "-o", "m", "--quiet"], chain(*states),
         check=analyze_ok("m"), group=g)
    case("mm-merge-other-model", ["merge", "a.state.h5", "o.state.h5", "-o", "m", "--quiet"],
         chain(*states, good_dump("o.h5", H=4),
               kvstat_step("analyze", "o.h5", "-o", "O", "--quiet", "--save-state", "o.state.h5")),
         codes=(65,), contains=("o.state.h5",), group=g)
    case("mm-merge-a-dump", ["merge", "a.state.h5", "g.h5", "-o", "m", "--quiet"], chain(*states), codes=(65,),
         contains=("g.h5", "state"), group=g)
    case("mm-stacked-layer-counts", ["inspect", "st.h5"], stacked("st.h5", 2, 3), codes=(65,),
         contains=("st.h5", "/keys", "/values"), group=g)
    case("mm-stacked-layer-counts-analyze", ["analyze", "st.h5", "-o", "out", "--quiet"], stacked("st.h5", 2, 3),
         codes=(65,), contains=("st.h5", "/keys", "/values"), group=g)
    case("mm-stacked-shape", ["analyze", "st.h5", "-o", "out", "--quiet"],
         stacked("st.h5", extra=lambda f, r: (f.__delitem__("values"),
                                              f.__setitem__("values", np.zeros((2, 1, 2, 7, 4), "f2")))),
         codes=(65,), contains=("st.h5", "/values", "shape"), group=g)
    case("mm-stacked-queries-not-multiple", ["analyze", "st.h5", "-o", "out", "--quiet"],
         stacked("st.h5", extra=lambda f, r: f.__setitem__("queries", np.zeros((2, 1, 3, 8, 4), "f2"))),
         codes=(65,), contains=("/queries", "multiple"), group=g)
    case("mm-sparse-layers-inspect", ["inspect", "s.h5", "--json"], sparse_layers,
         check=inspect_json_ok(lambda ctx, v: require(v.get("layers") == 3,
                                                      f"inspect: layers = {v.get('layers')}, expected 3 (0, 5, 7)")),
         group=g)
    case("mm-sparse-layers-analyze", ["analyze", "s.h5", "-o", "out", "--quiet"], sparse_layers,
         check=analyze_ok(extra=layers_numbers([0, 5, 7])), group=g)
    case("mm-sparse-layers-select-5", ["analyze", "s.h5", "-o", "out", "--quiet", "--layers", "5"], sparse_layers,
         check=analyze_ok(extra=layers_numbers([5])), group=g)
    case("mm-sparse-layers-select-1", ["analyze", "s.h5", "-o", "out", "--quiet", "--layers", "1"], sparse_layers,
         codes=(65,), contains=("s.h5", "--layers"), guess="--layers names layer numbers, not positions", group=g)
    case("mm-sparse-layers-fit", ["fit-lowrank", "s.h5", "-o", "fit", "--quiet", "--layers", "5,7"], sparse_layers,
         check=fit_ok(extra=lambda ctx, m: require(m.get("layers") == [5, 7],
                                                   f"manifest layers = {m.get('layers')}, expected [5, 7]")),
         group=g)
    mask_half = perlayer_with("m.h5", lambda f, r: f.__setitem__("attention_mask", np.full((2, 8), 0.5, "f4")))
    case("mm-attention-mask-half", ["analyze", "m.h5", "-o", "out", "--quiet"], mask_half, codes=(65,),
         contains=("m.h5", "/attention_mask"), guess="a mask must hold 0/1 (0.5 is neither): 65", group=g)
    case("mm-attention-mask-shape", ["analyze", "m.h5", "-o", "out", "--quiet"],
         perlayer_with("m.h5", lambda f, r: f.__setitem__("attention_mask", np.ones((3, 8), "u1"))), codes=(65,),
         contains=("m.h5", "/attention_mask"), group=g)
    case("mm-lengths-fractional", ["analyze", "m.h5", "-o", "out", "--quiet"],
         perlayer_with("m.h5", lambda f, r: f.__setitem__("lengths", np.array([8.0, 10.5]))), codes=(65,),
         contains=("m.h5", "/lengths"), group=g)
    case("mm-lengths-beyond-tokens", ["analyze", "m.h5", "-o", "out", "--quiet"],
         perlayer_with("m.h5", lambda f, r: f.__setitem__("lengths", np.array([8, 99], "i8"))), codes=(65,),
         contains=("m.h5", "/lengths"), group=g)
    case("mm-lengths-negative", ["analyze", "m.h5", "-o", "out", "--quiet"],
         perlayer_with("m.h5", lambda f, r: f.__setitem__("lengths", np.array([8, -1], "i8"))), codes=(65,),
         contains=("m.h5", "/lengths"), group=g)
    case("mm-lengths-count", ["analyze", "m.h5", "-o", "out", "--quiet"],
         perlayer_with("m.h5", lambda f, r: f.__setitem__("lengths", np.array([8, 8, 8], "i8"))), codes=(65,),
         contains=("m.h5", "/lengths"), group=g)
    case("mm-lengths-huge", ["analyze", "m.h5", "-o", "out", "--quiet"],
         perlayer_with("m.h5", lambda f, r: f.__setitem__("lengths", np.array([8, 2 ** 62], "i8"))), codes=(65,),
         contains=("m.h5", "/lengths"), group=g)
    case("mm-both-layouts", ["inspect", "both.h5"],
         perlayer_with("both.h5", lambda f, r: f.update({"keys": np.zeros((2, 2, 2, 8, 4), "f2"),
                                                         "values": np.zeros((2, 2, 2, 8, 4), "f2")})),
         codes=(65,), contains=("both.h5", "/keys"), guess="stacked and per-layer tensors together are ambiguous: "
                                                            "65 naming both", group=g)
    case("mm-vds-missing-source", ["analyze", "vds.h5", "-o", "out", "--quiet"], vds_missing, codes=(65,),
         contains=("vds.h5", "/layer_00/key", "gone.h5"), guess="a virtual dataset whose source file is missing "
                                                               "would read as fill values: refused, naming it",
         group=g)
    case("mm-vds-missing-source-inspect", ["inspect", "vds.h5", "--read-all"], vds_missing, codes=(65,),
         contains=("vds.h5", "/layer_00/key", "gone.h5"), group=g)
    case("mm-vds-present", ["analyze", "vds.h5", "-o", "out", "--quiet"], vds_present, check=analyze_ok(), group=g)
    case("mm-kv-shape-mismatch", ["fit-lowrank", "bad_shape_mismatch.h5", "-o", "fit", "--quiet"],
         copy_fixture("bad_shape_mismatch.h5"), codes=(65,), contains=("/layer_00/key", "/layer_00/value", "shape"),
         group=g)
    case("mm-query-heads", ["fit-lowrank", "bad_query_heads.h5", "-o", "fit", "--quiet"],
         copy_fixture("bad_query_heads.h5"), codes=(65,), contains=("/layer_00/query", "multiple"), group=g)
    case("mm-value-other-dtype-width", ["analyze", "w.h5", "-o", "out", "--quiet"],
         perlayer_with("w.h5", lambda f, r: (f.__delitem__("layer_01/value"),
                                             f.__setitem__("layer_01/value", np.zeros((2, 2, 8, 4), "i2")))),
         codes=(65,), contains=("/layer_01/value", "int16"), group=g)
    case("mm-layer-gap-missing-value", ["analyze", "w.h5", "-o", "out", "--quiet"],
         perlayer_with("w.h5", lambda f, r: f.__delitem__("layer_00/value")), codes=(65,),
         contains=("/layer_00", "value"), group=g)
    case("mm-axes-attr-bad", ["analyze", "w.h5", "-o", "out", "--quiet"],
         perlayer_with("w.h5", lambda f, r: f["layer_00/key"].attrs.__setitem__("axes", "bhqd")), codes=(65,),
         contains=("/layer_00/key", "axes"), group=g)
    case("mm-axes-attr-repeated", ["analyze", "w.h5", "-o", "out", "--quiet"],
         perlayer_with("w.h5", lambda f, r: f["layer_00/key"].attrs.__setitem__("axes", "bttd")), codes=(65,),
         contains=("/layer_00/key", "axes"), group=g)
    case("mm-dtype-attr-bogus", ["analyze", "w.h5", "-o", "out", "--quiet"], perlayer_with("w.h5", uint16_bfloat17),
         codes=(65,), contains=("/layer_00/key",), guess="uint16 data whose dtype attribute names no known type "
                                                         "is refused, not read as bfloat16 or integers", group=g)
    case("mm-scalar-key", ["analyze", "w.h5", "-o", "out", "--quiet"],
         perlayer_with("w.h5", lambda f, r: (f.__delitem__("layer_00/key"), f.__setitem__("layer_00/key", 1.0))),
         codes=(65,), contains=("/layer_00/key", "shape"), group=g)
    case("mm-string-key", ["analyze", "w.h5", "-o", "out", "--quiet"],
         perlayer_with("w.h5", lambda f, r: (f.__delitem__("layer_00/key"),
                                             f.__setitem__("layer_00/key", np.array([b"abc"] * 4)))),
         codes=(65,), contains=("/layer_00/key",), group=g)
    case("mm-compound-key", ["analyze", "w.h5", "-o", "out", "--quiet"],
         perlayer_with("w.h5", lambda f, r: (f.__delitem__("layer_00/key"), f.__setitem__(
             "layer_00/key", np.zeros((2, 2, 8, 4), dtype=[("re", "f4"), ("im", "f4")])))),
         codes=(65,), contains=("/layer_00/key",), group=g)
    # layout files
    lay = [("unknown-key", '{"key": "/cache/L{layer}/K", "value": "/cache/L{layer}/V", "axes": "thd", '
                           '"lenghts": "/x"}', (64, 65), ("lenghts",)),
           ("unknown-key-yaml", "key: /cache/L{layer}/K\nvalue: /cache/L{layer}/V\naxes: thd\nlenghts: /x\n",
            (64, 65), ("lenghts",)),
           ("bad-axes", '{"key": "/cache/L{layer}/K", "value": "/cache/L{layer}/V", "axes": "tqd"}', (64, 65),
            ("tqd",)),
           ("missing-dataset", '{"key": "/nope/L{layer}/K", "value": "/cache/L{layer}/V", "axes": "thd"}', (65,),
            ("/nope",)),
           ("not-object", "[1, 2, 3]", (64, 65), ("l.json",)),
           ("not-json", "{{{ this is not json", (64, 65), ("l.json",)),
           ("layers-negative", '{"key": "/cache/L{layer}/K", "value": "/cache/L{layer}/V", "axes": "thd", '
                               '"layers": -1}', (64, 65), ("layers",)),
           ("layers-huge", '{"key": "/cache/L{layer}/K", "value": "/cache/L{layer}/V", "axes": "thd", '
                           '"layers": 1000000000000}', (64, 65), ("layer",)),
           ("wrong-type", '{"key": 5, "value": "/cache/L{layer}/V", "axes": "thd"}', (64, 65), ("key",)),
           ("lengths-missing", '{"key": "/cache/L{layer}/K", "value": "/cache/L{layer}/V", "axes": "thd", '
                               '"lengths": "/meta/none"}', (65,), ("/meta/none",)),
           ("empty", "", (64, 65), ("l.json",))]
    for label, text, codes, contains in lay:
        fname = "l.yaml" if label.endswith("yaml") else "l.json"
        case(f"mm-layout-{label}", ["inspect", "c.h5", "--layout", fname],
             chain(copy_fixture("custom_thd.h5", "c.h5"), text_file(fname, text)), codes=codes,
             contains=tuple(fname if c == "l.json" else c for c in contains),
             guess="a layout file that cannot be honoured: 65 (or 64 as a bad option value)", group=g)
    case("mm-layout-missing", ["inspect", "c.h5", "--layout", "nope.json"], copy_fixture("custom_thd.h5", "c.h5"),
         codes=(66,), contains=("nope.json",), group=g)
    case("mm-layout-directory", ["inspect", "c.h5", "--layout", "D"],
         chain(copy_fixture("custom_thd.h5", "c.h5"), lambda ctx: ctx.p("D").mkdir()), codes=(66,),
         contains=("D",), group=g)


# ---------------------------------------------------------------------------------------------------------
# 5. Batch
# ---------------------------------------------------------------------------------------------------------

def ledger_rows(path):
    import sqlite3
    con = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        return list(con.execute("select path, state, message from dumps"))
    finally:
        con.close()


def batch_rerun_check(ctx):
    """the rerun skips the finished dump and takes nothing under OUT for a dump"""
    rows = ledger_rows(ctx.p("IN/out/ledger.sqlite"))
    stray = [r for r in rows if "/out/" in r[0]]
    if stray or len(rows) != 1:
        raise Broken(f"ledger rows after the rerun: {rows}")


def batch_ledger_check(ctx):
    """the ledger keeps the child's own error line"""
    rows = ledger_rows(ctx.p("OUT/ledger.sqlite"))
    failed = [r for r in rows if r[1] == "failed"]
    if len(failed) != 1 or "compression filter 'lzf'" not in (failed[0][2] or ""):
        raise Broken(f"ledger failed rows: {failed}")


def add_batch():
    g = "batch"
    two = chain(lambda ctx: ctx.p("IN").mkdir(), good_dump("IN/a.h5"), good_dump("IN/b.h5", H=4))
    case("batch-out-inside-input-rerun", ["batch", "IN", "-o", "IN/out"],
         chain(lambda ctx: ctx.p("IN").mkdir(), good_dump("IN/a.h5"), kvstat_step("batch", "IN", "-o", "IN/out")),
         batch=True, check=batch_rerun_check, mutable=("IN/out/**",), group=g)
    case("batch-ledger-keeps-child-error", ["batch", "IN", "-o", "OUT"],
         chain(lambda ctx: ctx.p("IN").mkdir(), good_dump("IN/a.h5"),
               lambda ctx: shutil.copy(FIXTURES / "bad_lzf.h5", ctx.p("IN/bad_lzf.h5"))),
         codes=(2,), contains=("bad_lzf.h5", "lzf"), batch=True, check=batch_ledger_check, error_check=True,
         group=g)
    for label, extra in (("analyze-arg-output", ["--analyze-arg=-o", "--analyze-arg=elsewhere"]),
                         ("analyze-arg-output-long", ["--analyze-arg=--output=elsewhere"]),
                         ("analyze-arg-save-state", ["--analyze-arg=--save-state", "--analyze-arg=s.h5"]),
                         ("analyze-arg-bogus", ["--analyze-arg=--bogus"])):
        case(f"batch-{label}", ["batch", "IN", "-o", "OUT", *extra], two, codes=(64,),
             contains=("--analyze-arg",), batch=True, outputs=("OUT", "elsewhere"),
             guess="" if "output" in label else "refused before any work, as -o is", group=g)
    for label, fit in (("fit-bogus", "--bogus"), ("fit-output", "-o elsewhere"), ("fit-method", "--method nope"),
                       ):
        case(f"batch-{label}", ["batch", "IN", "-o", "OUT", "--fit", fit], two, codes=(64,),
             contains=(fit.split()[0],), batch=True, outputs=("OUT", "elsewhere"),
             guess="--fit arguments are checked before any dump runs: 64", group=g)
    case("batch-jobs-zero", ["batch", "IN", "-o", "OUT", "--jobs", "0"], two, codes=(64,), contains=("--jobs",),
         batch=True, outputs=("OUT",), group=g)
    case("batch-jobs-huge", ["batch", "IN", "-o", "OUT", "--jobs", I64_MAX], two, codes=(0, 64),
         contains=("--jobs",), batch=True, guess="more jobs than cores: clamp (0) or refuse (64)", group=g)
    case("batch-shard-bad", ["batch", "IN", "-o", "OUT", "--shard", "3/2"], two, codes=(64,), contains=("--shard",),
         batch=True, outputs=("OUT",), group=g)
    case("batch-missing-input", ["batch", "nope.h5", "-o", "OUT"], lambda ctx: None, codes=(1, 2),
         contains=("nope.h5",), batch=True, group=g)
    case("batch-no-dumps", ["batch", "E", "-o", "OUT"], lambda ctx: ctx.p("E").mkdir(), codes=(1,), batch=True,
         outputs=("OUT",), group=g)
    case("batch-out-is-input-file", ["batch", "IN", "-o", "IN/a.h5"], two, codes=(1,),
         contains=("a.h5",), batch=True, group=g)
    # a.h5 and b.h5 are two models (2 and 4 kv heads): one corpus each, in folders named after the model.
    case("batch-ok", ["batch", "IN", "-o", "OUT", "--fit", "--method pca"], two, batch=True,
         check=lambda ctx: [analyze_ok(f"OUT/corpus/{m}")(ctx) for m in ("3L-2kv-4d", "3L-4kv-4d")], group=g)


# ---------------------------------------------------------------------------------------------------------
# 6. Option values
# ---------------------------------------------------------------------------------------------------------

ANALYZE_BAD = [("--align-rank", v) for v in ("0", "-1", "nan", "99999999999999999999")] + \
    [("--outlier-factor", v) for v in ("nan", "inf", "-inf", "-1", "0")] + \
    [("--dct-window", v) for v in ("1", "0", "-3", "nan")] + \
    [("--threads", v) for v in ("0", "-1", "nan")] + \
    [("--block-tokens", v) for v in ("0", "-1", "nan", "1e3")] + \
    [("--layers", v) for v in ("5-2", "-1", "a", "")] + \
    [("--sequences", v) for v in ("x", "-2")] + \
    [("--tokens", v) for v in ("5:3", "a:b", "-1:", "3", ":0")] + \
    [("--only", v) for v in ("", "bogus", "spectra,,bogus")] + \
    [("--sink-queries", v) for v in ("-1", "nan", "1000001", I64_MAX)]

ANALYZE_OK = [("--outlier-factor", "1e308"), ("--outlier-factor", "1e-308"), ("--tokens", f"0:{I64_MAX}"),
              ("--align-rank", "100000"), ("--sink-queries", "0"), ("--sink-queries", "1000000")]

FIT_BAD = [("--rank", v) for v in ("0", "-1", "nan")] + \
    [("--keep-ratio", v) for v in ("nan", "inf", "-0.5", "0", "1.5", "-inf")] + \
    [("--energy", v) for v in ("nan", "0", "1.5", "-1", "inf")] + \
    [("--compression", v) for v in ("nan", "inf", "0.5", "-2", "0")] + \
    [("--group-size", v) for v in ("0", "-1")] + \
    [("--window", v) for v in ("-1", "nan")] + \
    [("--quant-group", v) for v in ("0", "-4")] + \
    [("--holdout", v) for v in ("1", "nan", "-0.1", "inf", "2")] + \
    [("--attention-queries", v) for v in ("-1",)] + \
    [("--ladder", v) for v in ("0.5,nan", "", "0", "1,2", "0.5,inf", "0.5,-0.25", "a,b")] + \
    [("--granularity", v) for v in ("group:0", "group:-1", "group:x", "bogus")] + \
    [("--method", v) for v in ("bogus", "")] + [("--quant", v) for v in ("int3",)] + \
    [("--block-tokens", v) for v in ("0", "-5")] + \
    [("--keep-sinks", v) for v in ("-1", "nan", "1.5", "x", "")]

FIT_OK_OR_REFUSED = [("--rank", I64_MAX), ("--keep-ratio", "1e-300"), ("--compression", "1e308"),
                     ("--group-size", I64_MAX), ("--window", I64_MAX), ("--quant-group", I64_MAX),
                     ("--holdout", "0.9999999"), ("--granularity", "group:3"), ("--granularity", f"group:{I64_MAX}"),
                     ("--ladder", "1e-300"), ("--energy", "1e-300"), ("--keep-sinks", I64_MAX)]


def add_options():
    g = "options"
    for opt, v in ANALYZE_BAD:
        case(f"opt-analyze{opt}={v or 'empty'}", ["analyze", "g.h5", "-o", "out", "--quiet", f"{opt}={v}"],
             good_dump(seed_name="opt"), codes=(64,), contains=(opt,), group=g)
    for opt, v in ANALYZE_OK:
        case(f"opt-analyze{opt}={v}", ["analyze", "g.h5", "-o", "out", "--quiet", f"{opt}={v}"],
             good_dump(seed_name="opt"), check=analyze_ok(), group=g)
    for opt, v in FIT_BAD:
        extra = ["--method", "cskv"] if opt in ("--window", "--quant-group", "--quant") else []
        case(f"opt-fit{opt}={v or 'empty'}", ["fit-lowrank", "g.h5", "-o", "fit", "--quiet", *extra, f"{opt}={v}"],
             good_dump(seed_name="opt"), codes=(64,), contains=(opt,), group=g)
    for opt, v in FIT_OK_OR_REFUSED:
        extra = ["--method", "cskv", "--quant", "int4"] if opt in ("--window", "--quant-group") else \
            ["--method", "xkv"] if opt == "--group-size" else ["--sweep"] if opt == "--ladder" else []
        case(f"opt-fit{opt}={v}", ["fit-lowrank", "g.h5", "-o", "fit", "--quiet", *extra, f"{opt}={v}"],
             good_dump(seed_name="opt"), codes=(0, 64), contains=(opt,),
             check=fit_ok(quantized="--quant" in extra), guess="a value beyond the dump's size is clamped (0) or "
                                                             "refused (64); never a trap", group=g)
    case("opt-fit-two-budgets", ["fit-lowrank", "g.h5", "-o", "fit", "--quiet", "--rank", "2", "--energy", "0.9"],
         good_dump(seed_name="opt"), codes=(64,), contains=("--rank",), group=g)
    case("opt-fit-sweep-state", ["fit-lowrank", "a.state.h5", "-o", "fit", "--quiet", "--sweep"],
         chain(good_dump(seed_name="opt"), kvstat_step("analyze", "g.h5", "-o", "A", "--quiet", "--save-state",
                                                       "a.state.h5")),
         codes=(64, 65), contains=("--sweep",), group=g)
    case("opt-fit-xkv-state", ["fit-lowrank", "a.state.h5", "-o", "fit", "--quiet", "--method", "xkv"],
         chain(good_dump(seed_name="opt"), kvstat_step("analyze", "g.h5", "-o", "A", "--quiet", "--save-state",
                                                       "a.state.h5")),
         codes=(64, 65), contains=("xkv",), group=g)
    def digest_is(expected):
        def extra(ctx, stats):
            want = hashlib.sha256(ctx.p("g.h5").read_bytes()).hexdigest() if expected else None
            if stats["dump"].get("sha256") != want:
                raise Broken(f"dump.sha256 is {stats['dump'].get('sha256')!r}, expected {want!r}")
        return extra
    case("opt-analyze--no-digest", ["analyze", "g.h5", "-o", "out", "--quiet", "--no-digest"],
         good_dump(seed_name="opt"), check=analyze_ok(extra=digest_is(False)), group=g)
    case("opt-analyze-digest-default", ["analyze", "g.h5", "-o", "out", "--quiet"],
         good_dump(seed_name="opt"), check=analyze_ok(extra=digest_is(True)), group=g)
    case("opt-unknown-option", ["analyze", "g.h5", "--bogus"], good_dump(seed_name="opt"), codes=(64,),
         contains=("--bogus",), group=g)
    case("opt-unknown-subcommand", ["frobnicate"], lambda ctx: None, codes=(64,), contains=("frobnicate",), group=g)
    case("opt-no-dump", ["analyze"], lambda ctx: None, codes=(64,), contains=("dump",), group=g)
    case("opt-eval-no-artifact", ["eval", "g.h5"], good_dump(seed_name="opt"), codes=(64,),
         contains=("--artifact",), group=g)
    case("opt-merge-nothing", ["merge", "-o", "m"], lambda ctx: None, codes=(64,), contains=("state",), group=g)


# ---------------------------------------------------------------------------------------------------------
# 7. Files that are not dumps, and missing paths
# ---------------------------------------------------------------------------------------------------------

def truncated(fname, fraction=0.5):
    def setup(ctx):
        good_dump(fname)(ctx)
        data = ctx.p(fname).read_bytes()
        ctx.p(fname).write_bytes(data[:int(len(data) * fraction)])
    return setup


FILE_INPUTS = [
    ("missing", lambda ctx: None, (66,), ()),
    ("directory", lambda ctx: ctx.p("x.h5").mkdir(), (66,), ()),
    ("empty", text_file("x.h5", ""), (65,), ()),
    ("text", text_file("x.h5", "just some words\n" * 40), (65,), ("hdf5",)),
    ("truncated", truncated("x.h5"), (65,), ()),
    ("truncated-header", truncated("x.h5", 0.01), (65,), ()),
    ("symlink-loop", lambda ctx: (os.symlink("y.h5", ctx.p("x.h5")), os.symlink("x.h5", ctx.p("y.h5"))), (66,), ()),
    ("dangling-symlink", lambda ctx: os.symlink("gone.h5", ctx.p("x.h5")), (66,), ()),
]
# Unreadable-by-permission (chmod 000 → 66) cannot be tested here: the corpus runs as root in CI, and root reads
# any file whatever its mode bits, so the case would test nothing. Tests/kvstatTests covers it for non-root runs.


def add_files():
    g = "files"
    for label, setup, codes, contains in FILE_INPUTS:
        cmds = {"inspect": ["inspect", "x.h5"], "analyze": ["analyze", "x.h5", "-o", "out", "--quiet"],
                "fit": ["fit-lowrank", "x.h5", "-o", "fit", "--quiet"],
                "eval": ["eval", "--artifact", "art", "x.h5"],
                "merge": ["merge", "x.h5", "-o", "m", "--quiet"],
                "fit-eval": ["fit-lowrank", "g.h5", "-o", "fit", "--quiet", "--eval", "x.h5"]}
        for cname, args in cmds.items():
            s = setup
            if cname == "eval":
                s = chain(setup, good_dump(seed_name="files"), kvstat_step("fit-lowrank", "g.h5", "-o", "art",
                                                                           "--quiet"))
            elif cname == "fit-eval":
                s = chain(setup, good_dump(seed_name="files"))
            words = contains if cname != "merge" else ()
            case(f"file-{label}-{cname}", args, s, codes=codes, contains=("x.h5", *words), group=g)
    case("file-eval-artifact-missing", ["eval", "--artifact", "nope", "g.h5"], good_dump(seed_name="files"),
         codes=(66,), contains=("nope",), group=g)
    case("file-eval-artifact-garbage", ["eval", "--artifact", "art", "g.h5"],
         chain(good_dump(seed_name="files"), text_file("art/projections.h5", "garbage")), codes=(65,),
         contains=("projections.h5",), group=g)
    case("file-eval-artifact-is-dump", ["eval", "--artifact", "art", "g.h5"],
         chain(lambda ctx: ctx.p("art").mkdir(), good_dump(seed_name="files"), good_dump("art/projections.h5")),
         codes=(65,), contains=("projections.h5",), group=g)
    case("file-report-missing", ["report", "nope"], lambda ctx: None, codes=(66,), contains=("nope",), group=g)
    case("file-report-empty-dir", ["report", "E"], lambda ctx: ctx.p("E").mkdir(), codes=(66,), contains=("E",),
         group=g)
    case("file-report-garbage-stats", ["report", "A"], text_file("A/stats.json", "{not json"), codes=(65,),
         contains=("stats.json",), group=g)
    case("file-report-nan-stats", ["report", "A", "-o", "page.html"],
         text_file("A/stats.json", '{"schema": "kvstat.stats/1", "layers": NaN}'), codes=(65,),
         contains=("stats.json",), group=g)
    case("file-report-fit-missing", ["report", "A", "--fit", "nope", "-o", "page.html"],
         chain(good_dump(seed_name="files"), kvstat_step("analyze", "g.h5", "-o", "A", "--quiet")), codes=(66,),
         contains=("nope",), group=g)
    case("file-report-fit-garbage", ["report", "A", "--fit", "F", "-o", "page.html"],
         chain(good_dump(seed_name="files"), kvstat_step("analyze", "g.h5", "-o", "A", "--quiet"),
               text_file("F/manifest.json", "[]")), codes=(65,), contains=("manifest.json",), group=g)
    case("file-merge-text-state", ["merge", "a.state.h5", "-o", "m"], text_file("a.state.h5", "text"), codes=(65,),
         contains=("a.state.h5",), group=g)
    case("file-merge-truncated-state", ["merge", "a.state.h5", "-o", "m", "--quiet"],
         chain(good_dump(seed_name="files"), kvstat_step("analyze", "g.h5", "-o", "A", "--quiet", "--save-state",
                                                         "a.state.h5"),
               lambda ctx: ctx.p("a.state.h5").write_bytes(ctx.p("a.state.h5").read_bytes()[:4000])),
         codes=(65,), contains=("a.state.h5",), group=g)
    # State files whose declared numbers are absurd or from an older schema: refused before anything is sized.
    def saved_state(ctx):
        good_dump(seed_name="files")(ctx)
        ctx.kvstat("analyze", "g.h5", "-o", "A", "--quiet", "--save-state", "a.state.h5")

    def edit_state(edit):
        def setup(ctx):
            saved_state(ctx)
            with h5py.File(ctx.p("a.state.h5"), "r+") as f:
                edit(f)
        return setup

    def huge_channels(f):
        f["key"].attrs["channels"] = 1e9

    def nan_layers(f):
        f.attrs["layers"] = np.array([0.0, np.nan, 2.0])

    def old_format(f):
        f.attrs["format"] = "kvstat.state/1"

    def pair_outside(f):
        f.attrs["pairs"] = np.array([0.0, 7.0])

    # Token-norm sketches (`TokenNormSketch`) kvstat never writes: each refused naming its dataset.
    def norms_replace(f, name, data):
        del f["key/layer/0/" + name]
        f["key/layer/0/" + name] = data

    def zero_norm(f):
        f["key/layer/0/norms_smallest_norm"][0] = 0.0

    def too_many_largest(f):
        g = f["key/layer/0"]
        norms, at = g["norms_largest_norm"][()], g["norms_largest_position"][()]
        norms_replace(f, "norms_largest_norm", np.concatenate([norms] * 3))
        norms_replace(f, "norms_largest_position", np.concatenate([at] * 3))

    def duplicate_bins(f):
        bins = f["key/layer/0/norms_bins"][()]
        require(len(bins) > 1, "the sketch has one bin")
        bins[1] = bins[0]
        norms_replace(f, "norms_bins", bins)

    def overflowing_bins(f):
        norms_replace(f, "norms_bin_counts", np.full(f["key/layer/0/norms_bin_counts"].shape, 2 ** 62, np.int64))
    for label, edit, words in (("huge-channels", huge_channels, ("channel count",)),
                               ("nan-layers", nan_layers, ("layer number",)),
                               ("old-format", old_format, ("kvstat.state/1",)),
                               ("pair-outside", pair_outside, ("pair position",)),
                               ("norms-zero", zero_norm, ("norms_smallest_norm", "> 0")),
                               ("norms-too-many", too_many_largest, ("norms_largest_norm", "the sketch can keep")),
                               ("norms-duplicate-bins", duplicate_bins, ("norms_bins", "twice")),
                               ("norms-overflowing-bins", overflowing_bins, ("norms_bin_counts", "norms_count"))):
        case(f"file-state-{label}-merge", ["merge", "a.state.h5", "-o", "m", "--quiet"], edit_state(edit),
             codes=(65,), contains=("a.state.h5", *words), group=g)
        case(f"file-state-{label}-fit", ["fit-lowrank", "a.state.h5", "-o", "fit", "--quiet"], edit_state(edit),
             codes=(65,), contains=("a.state.h5", *words), group=g)
    case("file-layout-fifo", ["inspect", "c.h5", "--layout", "l.yaml"],
         chain(copy_fixture("custom_thd.h5", "c.h5"), lambda ctx: os.mkfifo(ctx.p("l.yaml"))), codes=(66,),
         contains=("l.yaml", "regular file"), timeout=20, group=g)
    case("file-report-stats-fifo", ["report", "A", "-o", "page.html"],
         chain(lambda ctx: ctx.p("A").mkdir(), lambda ctx: os.mkfifo(ctx.p("A/stats.json"))), codes=(66,),
         contains=("stats.json", "regular file"), timeout=20, group=g)
    case("file-fit-state-truncated", ["fit-lowrank", "a.state.h5", "-o", "fit", "--quiet"],
         chain(good_dump(seed_name="files"), kvstat_step("analyze", "g.h5", "-o", "A", "--quiet", "--save-state",
                                                         "a.state.h5"),
               lambda ctx: ctx.p("a.state.h5").write_bytes(ctx.p("a.state.h5").read_bytes()[:4000])),
         codes=(65,), contains=("a.state.h5",), group=g)


# ---------------------------------------------------------------------------------------------------------
# 7b. Compressed chunks kvstat decodes itself (gzip, shuffle; docs/dump-format.md "Compression")
# ---------------------------------------------------------------------------------------------------------

CHUNKED = {"L": 2, "B": 1, "H": 2, "T": 64, "D": 4, "chunks": (1, 2, 16, 4)}


def chunked_dump(fname, damage=None, **create):
    """A float16 per-layer dump with `create` (compression, shuffle) on [1, 2, 16, 4] chunks; `damage(raw, info)`
    then rewrites the stored bytes of layer_01/value's second chunk in the file (raw: the open file)."""
    def setup(ctx):
        c = CHUNKED
        rng = rng_for(f"{ctx.case.name}/{fname}")
        layers = random_layers(rng, c["L"], c["B"], c["H"], c["T"], c["D"])
        with h5py.File(ctx.p(fname), "w") as f:
            images = [{k: put(f, f"layer_{i:02d}/{k}", x, "float16", chunks=c["chunks"], **create)
                       for k, x in kinds.items()} for i, kinds in enumerate(layers)]
            info = f["layer_01/value"].id.get_chunk_info(1)
        ctx.ref = dump_ref(images)
        if damage:
            with open(ctx.p(fname), "r+b") as raw:
                damage(raw, info)
    return setup


def garbage_in_middle(raw, info):
    raw.seek(info.byte_offset + info.size // 2)
    raw.write(bytes([0xFF]) * min(16, info.size // 2))


def garbage_header(raw, info):
    raw.seek(info.byte_offset)
    raw.write(b"\x00\x00\x00\x00")


def masked_chunks_dump(fname):
    """A gzip + shuffle float16 dump whose chunks are written raw (H5Dwrite_chunk) with every filter mask in turn:
    0 (both filters), 1 (shuffle skipped), 2 (gzip skipped), 3 (both skipped). Valid HDF5: libhdf5 honours each
    chunk's mask, and so must kvstat's own decoder."""
    def setup(ctx):
        c = CHUNKED
        rng = rng_for(f"{ctx.case.name}/{fname}")
        layers = random_layers(rng, c["L"], c["B"], c["H"], c["T"], c["D"])
        images = []
        index = 0
        with h5py.File(ctx.p(fname), "w") as f:
            for i, kinds in enumerate(layers):
                images.append({})
                for k, x in kinds.items():
                    data, image = stored(x, "float16")
                    ds = f.create_dataset(f"layer_{i:02d}/{k}", shape=data.shape, dtype=data.dtype,
                                          chunks=c["chunks"], compression="gzip", shuffle=True)
                    for t in range(0, c["T"], c["chunks"][2]):
                        plain = np.ascontiguousarray(data[:, :, t:t + c["chunks"][2], :]).tobytes()
                        shuffled = np.frombuffer(plain, np.uint8).reshape(-1, 2).T.tobytes()
                        mask = index % 4
                        payload = {0: zlib.compress(shuffled), 1: zlib.compress(plain), 2: shuffled, 3: plain}[mask]
                        ds.id.write_direct_chunk((0, 0, t, 0), payload, filter_mask=mask)
                        index += 1
                    require(np.array_equal(ds[...].view(np.uint16), data.view(np.uint16)),
                            "libhdf5 does not read the masked chunks back")
                    images[-1][k] = image
        ctx.ref = dump_ref(images)
    return setup


def matches_ref_expect(ctx, stats):
    for key, ref in ctx.ref.items():
        layer, kind = key.split(".")
        expect_matches_ref(layer_stats(stats, int(layer), kind), ref, f"layer {layer} {kind}")


def add_chunks():
    g = "chunks"
    bad = [("gzip-corrupt", garbage_in_middle, {"compression": "gzip"}),
           ("shuffle-gzip-corrupt", garbage_in_middle, {"compression": "gzip", "shuffle": True}),
           ("gzip-bad-header", garbage_header, {"compression": "gzip"})]
    for label, damage, create in bad:
        for cname, args in (("inspect", ["inspect", "x.h5", "--read-all"]),
                            ("analyze", ["analyze", "x.h5", "-o", "out", "--quiet"])):
            case(f"chunk-{label}-{cname}", args, chunked_dump("x.h5", damage, **create), codes=(65,),
                 contains=("x.h5", "layer_01/value", "does not decode"), group=g)
    for label, create in (("gzip", {"compression": "gzip"}), ("shuffle-gzip", {"compression": "gzip", "shuffle": True}),
                          ("shuffle", {"shuffle": True})):
        case(f"chunk-{label}-analyze", ["analyze", "x.h5", "-o", "out", "--quiet"], chunked_dump("x.h5", **create),
             check=analyze_ok(extra=matches_ref_expect), group=g)
    case("chunk-filter-mask-analyze", ["analyze", "x.h5", "-o", "out", "--quiet"], masked_chunks_dump("x.h5"),
         check=analyze_ok(extra=matches_ref_expect), group=g)
    case("chunk-filter-mask-inspect", ["inspect", "x.h5", "--read-all", "--json"], masked_chunks_dump("x.h5"),
         check=inspect_json_ok(scan_expect), group=g)


# ---------------------------------------------------------------------------------------------------------
# 8. The bundled fixtures
# ---------------------------------------------------------------------------------------------------------

def add_fixtures():
    g = "fixtures"
    bad = json.loads((FIXTURES.parent / "bad_inputs.json").read_text())
    for entry in bad:
        f = entry["file"]
        stem = f.removesuffix(".h5")
        case(f"fx-{stem}-inspect", ["inspect", f, "--read-all"], copy_fixture(f), codes=(65,),
             contains=tuple(entry["error_contains"]), group=g)
        case(f"fx-{stem}-analyze", ["analyze", f, "-o", "out", "--quiet"], copy_fixture(f), codes=(65,),
             contains=tuple(entry["error_contains"]), group=g)
    for p in sorted(FIXTURES.glob("*.truth.json")):
        stem = p.name.removesuffix(".truth.json")
        f = stem + ".h5"
        layout = ["--layout", stem + ".layout.yaml"] if (FIXTURES / (stem + ".layout.yaml")).exists() else []
        setup = chain(copy_fixture(f), *([copy_fixture(stem + ".layout.yaml")] if layout else []))
        truth = json.loads(p.read_text())

        def scan_truth(ctx, value, truth=truth):
            got = (value.get("scan") or {}).get("non_finite") or {}
            want = truth["expect"]["nonfinite"]
            if {k: v for k, v in got.items() if v} != want:
                raise Broken(f"inspect --read-all non_finite {got}, truth {want}")
        case(f"fx-{stem}-inspect", ["inspect", f, "--read-all", "--json", *layout], setup,
             check=inspect_json_ok(scan_truth), group=g)
        case(f"fx-{stem}-analyze", ["analyze", f, "-o", "out", "--quiet", *layout], setup, check=analyze_ok(),
             group=g)
        case(f"fx-{stem}-fit", ["fit-lowrank", f, "-o", "fit", "--quiet", "--method", "matryoshka", *layout], setup,
             check=fit_ok(), group=g)
    case("fx-minilm-sample-analyze", ["analyze", "s.h5", "-o", "out", "--quiet", "--layers", "0-1"],
         lambda ctx: shutil.copy(SAMPLE, ctx.p("s.h5")), check=analyze_ok(), group=g)


# ---------------------------------------------------------------------------------------------------------
# 9. Merged heads × head_dim, per-kind axes and Hugging Face's hook/cache pair (Tests/Fixtures/make_layout_dumps.py)
# ---------------------------------------------------------------------------------------------------------

def layout_dumps(ctx):
    subprocess.run([sys.executable, str(FIXTURES.parent / "make_layout_dumps.py"), str(ctx.p("."))], check=True)


def add_merged_heads():
    g = "layouts"
    good = [("hf-pair", "hf_pair.h5", []), ("attr", "merged_heads_attr.h5", []),
            ("hint", "merged_heads_unknown.h5", ["--layout", "kv_heads_hint.json"]),
            ("per-kind", "custom_per_kind.h5", ["--layout", "custom_per_kind.layout.json"])]
    for label, f, layout in good:
        case(f"layouts-{label}-inspect", ["inspect", f, "--read-all", "--json", *layout], layout_dumps,
             check=inspect_json_ok(), group=g)
        case(f"layouts-{label}-analyze", ["analyze", f, "-o", "out", "--quiet", *layout], layout_dumps,
             check=analyze_ok(), group=g)
        case(f"layouts-{label}-fit", ["fit-lowrank", f, "-o", "fit", "--quiet", "--method", "pca", *layout],
             layout_dumps, check=fit_ok(), group=g)
    bad = [("unknown-heads", "merged_heads_unknown.h5", [], ("/layer_00/key", "head count is unknown")),
           ("wrong-hint", "merged_heads_unknown.h5", ["--layout", "kv_heads_wrong.json"], ("kv_heads", "5 heads")),
           ("bad-count", "merged_heads_bad_count.h5", [], ("/layer_00/key", "'heads' attribute")),
           ("float-attr", "merged_heads_float_attr.h5", [], ("/layer_00/key", "not one integer")),
           ("per-kind-missing", "custom_per_kind.h5", ["--layout", "per_kind_missing.layout.json"],
            ("per_kind_missing.layout.json", "key_pre_rope")),
           ("hints-with-key", "custom_per_kind.h5", ["--layout", "hints_with_key.layout.json"],
            ("hints_with_key.layout.json", "key, value and axes")),
           ("bad-c-axes", "custom_per_kind.h5", ["--layout", "bad_c_axes.layout.json"], ("bhtc",)),
           ("shared-two-orders", "shared_dataset.h5", ["--layout", "shared_two_orders.layout.json"],
            ("/x0", "dimensions"))]
    for label, f, layout, contains in bad:
        for command in (["inspect", f], ["analyze", f, "-o", "out", "--quiet"]):
            case(f"layouts-{label}-{command[0]}", [*command, *layout], layout_dumps, codes=(65,),
                 contains=contains, group=g)


# ---------------------------------------------------------------------------------------------------------
# --sequences/--tokens for fit-lowrank and eval; corpora by model (issue 12)
# ---------------------------------------------------------------------------------------------------------

SELECTION_BAD = [("--sequences", v) for v in ("x", "-2", "3-1", "", "0-99999999999999999999")] + \
    [("--tokens", v) for v in ("5:3", "a:b", "-1:", "3", ":0", "nan:", "1:99999999999999999999", "")]


def dumps_per_kind_is(expected, out):
    def extra(ctx, stats):
        if stats.get("dumps_per_kind") != expected:
            raise Broken(f"{out}/stats.json dumps_per_kind is {stats.get('dumps_per_kind')!r}, expected {expected!r}")
    return extra


def selection_recorded(selection, tokens):
    def extra(ctx, m):
        if m["source"].get("selection") != selection or m["source"]["tokens"] != tokens:
            raise Broken(f"manifest source {m['source']!r}: expected selection {selection!r}, {tokens} tokens")
    return extra


def eval_selection_recorded(selection, tokens):
    def extra(ctx, value):
        if value.get("selection") != selection or value.get("tokens") != tokens:
            raise Broken(f"eval output selection {value.get('selection')!r}, tokens {value.get('tokens')!r}: "
                         f"expected {selection!r}, {tokens}")
    return extra


def strip_queries(fname):
    def setup(ctx):
        with h5py.File(ctx.p(fname), "a") as f:
            for layer in list(f):
                if isinstance(f[layer], h5py.Group) and "query" in f[layer]:
                    del f[layer]["query"]
    return setup


def add_selections_and_corpora():
    g = "selection"
    art = chain(good_dump(seed_name="sel"), kvstat_step("fit-lowrank", "g.h5", "-o", "art", "--quiet"))
    for opt, v in SELECTION_BAD:
        case(f"sel-fit{opt}={v or 'empty'}", ["fit-lowrank", "g.h5", "-o", "fit", "--quiet", f"{opt}={v}"],
             good_dump(seed_name="sel"), codes=(64,), contains=(opt,), group=g)
        case(f"sel-eval{opt}={v or 'empty'}", ["eval", "--artifact", "art", "g.h5", f"{opt}={v}"], art,
             codes=(64,), contains=(opt,), group=g)
    # A sequence the dump lacks, or a selection without valid tokens: bad data for this dump (65), as in analyze.
    for label, extra in (("missing-sequence", ["--sequences", "2"]), ("no-tokens", ["--tokens", "16:"]),
                         ("huge-sequences", ["--sequences", "0-1000000000"])):
        case(f"sel-fit-{label}", ["fit-lowrank", "g.h5", "-o", "fit", "--quiet", *extra], good_dump(seed_name="sel"),
             codes=(65,), contains=("g.h5", extra[0] if label != "no-tokens" else "no valid tokens"), group=g)
        case(f"sel-eval-{label}", ["eval", "--artifact", "art", "g.h5", *extra], art,
             codes=(65,), contains=("g.h5", extra[0] if label != "no-tokens" else "no valid tokens"), group=g)
    case("sel-fit-state", ["fit-lowrank", "a.state.h5", "-o", "fit", "--quiet", "--tokens", "0:8"],
         chain(good_dump(seed_name="sel"), kvstat_step("analyze", "g.h5", "-o", "A", "--quiet", "--save-state",
                                                       "a.state.h5")),
         codes=(64,), contains=("a.state.h5", "--tokens"), group=g)
    case("sel-fit-ok", ["fit-lowrank", "g.h5", "-o", "fit", "--quiet", "--sequences", "1", "--tokens", "4:12"],
         good_dump(seed_name="sel"), check=fit_ok(extra=selection_recorded("sequences 1, tokens 4:12", 8)), group=g)
    case("sel-fit-sweep-holdout-ok", ["fit-lowrank", "g.h5", "-o", "fit", "--quiet", "--tokens", "2:", "--sweep",
                                      "--holdout", "0.5"],
         good_dump(seed_name="sel"), check=fit_ok(sweep=True, extra=selection_recorded("tokens 2:", 28)), group=g)
    case("sel-eval-ok", ["eval", "--artifact", "art", "g.h5", "--tokens", "0:5"], art,
         check=stdout_json_ok(extra=eval_selection_recorded("tokens 0:5", 10)), group=g)
    case("sel-eval-of-subset-fit", ["eval", "--artifact", "art", "g.h5"],
         chain(good_dump(seed_name="sel"), kvstat_step("fit-lowrank", "g.h5", "-o", "art", "--quiet", "--tokens",
                                                       "3:9")),
         check=stdout_json_ok(extra=eval_selection_recorded(None, 32)), group=g)

    g = "corpora"
    mixed = chain(lambda ctx: ctx.p("IN").mkdir(), good_dump("IN/a.h5", queries=2, seed_name="cq-a"),
                  good_dump("IN/b.h5", queries=2, seed_name="cq-b"), strip_queries("IN/b.h5"),
                  good_dump("IN/c.h5", queries=2, seed_name="cq-c"), strip_queries("IN/c.h5"))
    case("corpora-queries-in-one-dump", ["batch", "IN", "-o", "OUT"], mixed, batch=True,
         check=analyze_ok("OUT/corpus", extra=dumps_per_kind_is({"key": 3, "value": 3, "query": 1}, "OUT/corpus")),
         group=g)
    shards = chain(mixed, kvstat_step("batch", "IN", "-o", "S0", "--shard", "0/2", "--quiet"),
                   kvstat_step("batch", "IN", "-o", "S1", "--shard", "1/2", "--quiet"))
    case("corpora-merge-shard-folders", ["merge", "S0/corpus", "S1/corpus", "-o", "m", "--quiet"], shards,
         check=analyze_ok("m", extra=dumps_per_kind_is({"key": 3, "value": 3, "query": 1}, "m")), group=g)
    case("corpora-merge-folder-without-state", ["merge", "E", "-o", "m", "--quiet"],
         lambda ctx: ctx.p("E").mkdir(), codes=(66,), contains=("E", "state.h5"), group=g)
    two = chain(lambda ctx: ctx.p("IN").mkdir(), good_dump("IN/a.h5"), good_dump("IN/b.h5", H=4),
                kvstat_step("batch", "IN", "-o", "OUT", "--quiet"))
    case("corpora-merge-folder-of-corpora", ["merge", "OUT/corpus", "-o", "m", "--quiet"], two, codes=(66,),
         contains=("OUT/corpus", "3L-2kv-4d"), group=g)
    case("corpora-merge-two-models", ["merge", "OUT/corpus/3L-2kv-4d", "OUT/corpus/3L-4kv-4d", "-o", "m", "--quiet"],
         two, codes=(65,), contains=("3L-4kv-4d", "another model"), group=g)
    case("corpora-merge-folder-is-a-file-path", ["merge", "nope/", "-o", "m", "--quiet"], lambda ctx: None,
         codes=(66,), contains=("nope",), group=g)

    def edit_state(edit):
        def setup(ctx):
            with h5py.File(ctx.p("a.state.h5"), "a") as f:
                edit(f)
        return setup
    with_queries = chain(good_dump(queries=2, seed_name="cq-a"),
                         kvstat_step("analyze", "g.h5", "-o", "A", "--quiet", "--save-state", "a.state.h5"))
    case("corpora-state-dumps-attribute-edited", ["merge", "a.state.h5", "-o", "m", "--quiet"],
         chain(with_queries, edit_state(lambda f: f["query"].attrs.__setitem__("dumps", np.array([7.0])))),
         codes=(65,), contains=("a.state.h5", "/query", "7"), group=g)
    case("corpora-state-kind-group-removed", ["merge", "a.state.h5", "-o", "m", "--quiet"],
         chain(with_queries, edit_state(lambda f: f.__delitem__("query"))),
         codes=(65,), contains=("a.state.h5", "query"), group=g)


# ---------------------------------------------------------------------------------------------------------
# 10. safetensors files and vLLM KV-connector folders (Tests/Fixtures/make_safetensors_fixtures.py)
# ---------------------------------------------------------------------------------------------------------

def safetensors_inputs(ctx):
    subprocess.run([sys.executable, str(FIXTURES.parent / "make_safetensors_fixtures.py"), str(ctx.p("."))],
                   check=True, capture_output=True)


def safetensors_batch_check(ctx):
    """the vLLM folder is one dump and the single file another: two done rows, the folder's path among them"""
    rows = ledger_rows(ctx.p("OUT/ledger.sqlite"))
    done = sorted(Path(r[0]).name for r in rows if r[1] == "done")
    if done != ["req-1", "single.safetensors"] or len(rows) != 2:
        raise Broken(f"ledger rows: {rows}")


def add_safetensors():
    sys.path.insert(0, str(FIXTURES.parent))
    import make_safetensors_fixtures
    g = "safetensors"
    for label, f in (("single", "single.safetensors"), ("vllm", "vllm"), ("vllm4d", "vllm4d")):
        case(f"safetensors-{label}-inspect", ["inspect", f, "--read-all", "--json"], safetensors_inputs,
             check=inspect_json_ok(), group=g)
        case(f"safetensors-{label}-analyze", ["analyze", f, "-o", "out", "--quiet"], safetensors_inputs,
             check=analyze_ok(), group=g)
        case(f"safetensors-{label}-fit", ["fit-lowrank", f, "-o", "fit", "--quiet", "--method", "pca"],
             safetensors_inputs, check=fit_ok(), group=g)
    case("safetensors-vllm-eval", ["eval", "--artifact", "fit", "vllm"],
         chain(safetensors_inputs, kvstat_step("fit-lowrank", "vllm", "-o", "fit", "--quiet", "--method", "pca")),
         check=stdout_json_ok(), group=g)
    case("safetensors-vllm-eval-dump", ["fit-lowrank", "vllm", "--eval", "vllm", "-o", "fit", "--quiet"],
         safetensors_inputs, check=fit_ok(), group=g)
    for path, code, words in make_safetensors_fixtures.BAD:
        for command in (["inspect", f"bad/{path}"], ["analyze", f"bad/{path}", "-o", "out", "--quiet"]):
            case(f"safetensors-bad-{path.replace('.safetensors', '')}-{command[0]}", command, safetensors_inputs,
                 codes=(code,), contains=words, group=g)
    case("safetensors-write-into-folder-dump", ["analyze", "vllm", "-o", "vllm", "--quiet", "--force"],
         safetensors_inputs, codes=(73,), contains=("vllm", "change it"), group=g)
    case("safetensors-state-inside-folder-dump", ["analyze", "vllm", "-o", "out", "--quiet", "--save-state",
                                                   "vllm/state.h5"],
         safetensors_inputs, codes=(73,), contains=("vllm/state.h5", "inside"), group=g)
    case("safetensors-output-inside-folder-dump", ["analyze", "vllm", "-o", "vllm/out", "--quiet"],
         safetensors_inputs, codes=(73,), contains=("vllm/out", "inside"), group=g)
    case("safetensors-batch", ["batch", "IN", "-o", "OUT", "--quiet"],
         chain(safetensors_inputs, lambda ctx: ctx.p("IN/requests").mkdir(parents=True),
               lambda ctx: shutil.copytree(ctx.p("vllm"), ctx.p("IN/requests/req-1")),
               lambda ctx: shutil.copy(ctx.p("single.safetensors"), ctx.p("IN/single.safetensors"))),
         batch=True, check=safetensors_batch_check, group=g)


# ---------------------------------------------------------------------------------------------------------
# Pre-RoPE key fits (fit-lowrank --keys pre-rope): RoPE parameters from root attributes or options
# ---------------------------------------------------------------------------------------------------------

def rope_dump(fname="r.h5", attrs=None, pre_rope=True, theta=10000.0):
    """A small dump with key_pre_rope and key = rotate-half RoPE of it (positions = token index), root
    attributes `attrs` (rope_theta, rope_scaling, …); without key_pre_rope when `pre_rope` is False."""
    def setup(ctx):
        rng = rng_for(f"{ctx.case.name}/{fname}")
        layers = random_layers(rng, 3, 2, 2, 16, 4, kinds=("key_pre_rope", "value"))
        half = 2
        inv = theta ** (-np.arange(0, 4, 2, dtype=np.float64) / 4)
        angles = np.arange(16, dtype=np.float64)[:, None] * inv[None, :]
        cos, sin = np.cos(angles), np.sin(angles)
        for kinds in layers:
            x = np.asarray(kinds["key_pre_rope"], dtype=np.float64)
            x1, x2 = x[..., :half], x[..., half:]
            kinds["key"] = np.concatenate([x1 * cos - x2 * sin, x2 * cos + x1 * sin], axis=-1).astype(np.float32)
            if not pre_rope:
                del kinds["key_pre_rope"]
        write_perlayer(ctx.p(fname), layers, dtype="float32")
        with h5py.File(ctx.p(fname), "a") as f:
            for k, v in (attrs or {}).items():
                f.attrs[k] = v
    return setup


def add_pre_rope():
    g = "prerope"
    theta = {"rope_theta": 10000.0}
    fit = ["fit-lowrank", "r.h5", "-o", "fit", "--quiet"]
    case("prerope-ok", [*fit, "--keys", "pre-rope"], rope_dump(attrs=theta), check=fit_ok(), group=g)
    case("prerope-ok-sweep-xkv", [*fit, "--keys", "pre-rope", "--method", "xkv", "--group-size", "2", "--sweep"],
         rope_dump(attrs=theta), check=fit_ok(sweep=True), group=g)
    case("prerope-theta-option", [*fit, "--keys", "pre-rope", "--rope-theta", "10000", "--rope-style",
                                  "rotate-half", "--rotary-dim", "4"],
         rope_dump(), check=fit_ok(), group=g)
    case("prerope-no-pre-rope-keys", [*fit, "--keys", "pre-rope"], rope_dump(attrs=theta, pre_rope=False),
         codes=(65,), contains=("r.h5", "key_pre_rope"), group=g)
    case("prerope-no-theta", [*fit, "--keys", "pre-rope"], rope_dump(), codes=(65,),
         contains=("r.h5", "rope_theta", "--rope-theta"), group=g)
    case("prerope-bad-theta-attribute", [*fit, "--keys", "pre-rope"], rope_dump(attrs={"rope_theta": "lots"}),
         codes=(65,), contains=("rope_theta",), group=g)
    case("prerope-scaling", [*fit, "--keys", "pre-rope"],
         rope_dump(attrs={**theta, "rope_scaling": '{"rope_type": "llama3", "factor": 8.0}'}),
         codes=(65,), contains=("rope_scaling", "llama3"), group=g)
    case("prerope-bad-style-attribute", [*fit, "--keys", "pre-rope"],
         rope_dump(attrs={**theta, "rope_style": "diagonal"}), codes=(65,), contains=("rope_style",), group=g)
    case("prerope-rotary-dim-attribute-too-big", [*fit, "--keys", "pre-rope"],
         rope_dump(attrs={**theta, "rotary_dim": 8}), codes=(65,), contains=("rotary_dim",), group=g)
    for label, opts, contains in (
            ("bad-keys", ["--keys=sideways"], "--keys"),
            ("bad-style", ["--keys", "pre-rope", "--rope-style=diagonal"], "--rope-style"),
            ("rotary-dim-odd", ["--keys", "pre-rope", "--rotary-dim=3"], "--rotary-dim"),
            ("rotary-dim-zero", ["--keys", "pre-rope", "--rotary-dim=0"], "--rotary-dim"),
            ("rotary-dim-above-head-dim", ["--keys", "pre-rope", "--rotary-dim=8"], "--rotary-dim"),
            ("theta-negative", ["--keys", "pre-rope", "--rope-theta=-5"], "--rope-theta"),
            ("theta-nan", ["--keys", "pre-rope", "--rope-theta=nan"], "--rope-theta"),
            ("theta-without-pre-rope", ["--rope-theta=10000"], "--rope-theta")):
        case(f"prerope-opt-{label}", [*fit, *opts], rope_dump(attrs=theta), codes=(64,), contains=(contains,),
             group=g)
    case("prerope-eval-dump-without-pre-rope-keys", [*fit, "--keys", "pre-rope", "--eval", "n.h5"],
         chain(rope_dump(attrs=theta), rope_dump("n.h5", attrs=theta, pre_rope=False)), codes=(65,),
         contains=("n.h5", "key_pre_rope"), group=g)
    case("prerope-eval-artifact-on-dump-without-pre-rope-keys", ["eval", "--artifact", "art", "n.h5"],
         chain(rope_dump(attrs=theta), rope_dump("n.h5", attrs=theta, pre_rope=False),
               kvstat_step("fit-lowrank", "r.h5", "-o", "art", "--quiet", "--keys", "pre-rope")),
         codes=(65,), contains=("n.h5", "key_pre_rope"), group=g)
    case("prerope-eval-artifact", ["eval", "--artifact", "art", "r.h5"],
         chain(rope_dump(attrs=theta), kvstat_step("fit-lowrank", "r.h5", "-o", "art", "--quiet", "--keys",
                                                   "pre-rope")),
         check=stdout_json_ok(), group=g)
    case("prerope-state", ["fit-lowrank", "a.state.h5", "-o", "fit", "--quiet", "--keys", "pre-rope"],
         chain(rope_dump(attrs=theta), kvstat_step("analyze", "r.h5", "-o", "A", "--quiet", "--save-state",
                                                   "a.state.h5")),
         codes=(64,), contains=("--keys",), group=g)


# ---------------------------------------------------------------------------------------------------------
# xKV from state files (analyze --save-state --xkv-groups G; fit-lowrank STATE --method xkv --group-size G)
# ---------------------------------------------------------------------------------------------------------

def add_xkv_states():
    g = "xkvstate"

    def state(name, *extra, sequences="0"):
        return kvstat_step("analyze", "g.h5", "--sequences", sequences, "-o", name + ".out", "--quiet",
                           "--save-state", name + ".state.h5", *extra)
    grouped = (good_dump(seed_name="xkvstate"), state("a", "--xkv-groups", "2"))
    for label, value in (("one", "1"), ("zero", "0"), ("huge", "99999999")):
        case(f"xkvstate-analyze-g-{label}", ["analyze", "g.h5", "-o", "out", "--quiet", "--save-state", "s.h5",
                                              "--xkv-groups", value],
             good_dump(seed_name="xkvstate"), codes=(64,), contains=("--xkv-groups",),
             guess="G must be 2…65536: a group of one layer is its own Gram", group=g)
    case("xkvstate-analyze-no-state", ["analyze", "g.h5", "-o", "out", "--quiet", "--xkv-groups", "2"],
         good_dump(seed_name="xkvstate"), codes=(64,), contains=("--xkv-groups", "--save-state"),
         guess="group Grams are only saved into a state file", group=g)
    case("xkvstate-analyze-priced", ["analyze", "many.h5", "-o", "out", "--quiet", "--save-state", "s.h5",
                                     "--xkv-groups", "65536"],
         many_layers(2000, T=2, H=4, D=64), codes=(69,), contains=("many.h5", "xKV group Grams"),
         guess="one group of 2000 layers × 256 channels: a ≈ 1 TB Gram → 69 naming it", group=g)

    def no_null(ctx, m):
        require(m.get("layer_groups") == [[0, 1], [2]], f"layer_groups {m.get('layer_groups')}")
        require(m.get("xkv_null") is None, "a state fit has no xkv_null")
        require(any(n.startswith("xkv_null omitted") for n in m.get("notes", [])), "no note on xkv_null")
    case("xkvstate-fit-ok", ["fit-lowrank", "a.state.h5", "-o", "fit", "--quiet", "--method", "xkv",
                             "--group-size", "2"], chain(*grouped), check=fit_ok(extra=no_null), group=g)
    case("xkvstate-fit-merged-ok", ["fit-lowrank", "m.state.h5", "-o", "fit", "--quiet", "--method", "xkv",
                                    "--group-size", "2"],
         chain(*grouped, state("b", "--xkv-groups", "2", sequences="1"),
               kvstat_step("merge", "a.state.h5", "b.state.h5", "-o", "M", "--quiet", "--save-state",
                           "m.state.h5")),
         check=fit_ok(extra=no_null), group=g)
    case("xkvstate-fit-other-g", ["fit-lowrank", "a.state.h5", "-o", "fit", "--quiet", "--method", "xkv",
                                  "--group-size", "3"], chain(*grouped), codes=(65,),
         contains=("a.state.h5", "--xkv-groups 2", "--xkv-groups 3"), group=g)
    case("xkvstate-fit-none", ["fit-lowrank", "p.state.h5", "-o", "fit", "--quiet", "--method", "xkv",
                               "--group-size", "2"], chain(good_dump(seed_name="xkvstate"), state("p")),
         codes=(65,), contains=("p.state.h5", "holds none", "--xkv-groups 2"), group=g)
    mixed = (*grouped, state("p", sequences="1"),
             kvstat_step("merge", "a.state.h5", "p.state.h5", "-o", "M", "--quiet", "--save-state", "m.state.h5"))
    case("xkvstate-merge-mixed", ["merge", "a.state.h5", "p.state.h5", "-o", "m", "--quiet"],
         chain(*grouped, state("p", sequences="1")),
         check=analyze_ok("m"), guess="different groupings merge without group Grams (a note), exit 0", group=g)
    case("xkvstate-fit-mixed", ["fit-lowrank", "m.state.h5", "-o", "fit", "--quiet", "--method", "xkv",
                                "--group-size", "2"], chain(*mixed), codes=(65,),
         contains=("m.state.h5", "holds none"), group=g)

    def edit(change):
        def setup(ctx):
            for step in grouped:
                step(ctx)
            with h5py.File(ctx.p("a.state.h5"), "r+") as f:
                change(f)
        return setup

    def drop_group(f):
        del f["key/xkv_group/1"]

    def more_rows(f):
        f["value/xkv_group/0/gram_count"][0] = 10 ** 6

    def option(value):
        def change(f):
            options = json.loads(f.attrs["options"])
            options["xkv_group_size"] = value
            f.attrs["options"] = json.dumps(options)
        return change

    def poisoned(f):
        f["key/xkv_group/0/gram_lower_packed"][0] = np.nan
    for label, change, words in (("group-removed", drop_group, ("xKV group",)),
                                 ("count-beyond-rows", more_rows, ("xkv_group/0", "rows")),
                                 ("size-one", option(1), ("xkv_group_size",)),
                                 ("size-other", option(3), ("xKV group",)),
                                 ("poisoned", poisoned, ("gram_lower_packed", "non-finite"))):
        for cmd in (["merge", "a.state.h5", "-o", "m", "--quiet"],
                    ["fit-lowrank", "a.state.h5", "-o", "fit", "--quiet", "--method", "xkv", "--group-size", "2"]):
            case(f"xkvstate-file-{label}-{cmd[0]}", cmd, edit(change), codes=(65,), contains=("a.state.h5", *words),
                 group=g)


# ---------------------------------------------------------------------------------------------------------
# kvstat compress / decompress (issue 15): the compressed cache (docs/compressed-format.md)
# ---------------------------------------------------------------------------------------------------------

def add_compress():
    g = "compress"
    fitted = (good_dump("g.h5", seed_name="compress"), kvstat_step("fit-lowrank", "g.h5", "-o", "art", "--quiet"))
    matryoshka = (good_dump("g.h5", seed_name="compress"),
                  kvstat_step("fit-lowrank", "g.h5", "-o", "art", "--quiet", "--method", "matryoshka"))
    cskv = (good_dump("g.h5", seed_name="compress"),
            kvstat_step("fit-lowrank", "g.h5", "-o", "art", "--quiet", "--method", "cskv", "--window", "4",
                        "--quant", "int4", "--quant-group", "4"))
    compressed = (*cskv, kvstat_step("compress", "g.h5", "--artifact", "art", "-o", "c.h5"))

    def manifest_ok(ctx, value):
        m = value.get("manifest", {})
        if m.get("schema") != "kvstat.compressed/1" or value.get("compressed_file_bytes", 0) <= 0:
            raise Broken(f"compress summary lacks the schema or the file size: {str(value)[:200]}")
        if m.get("payload_bytes", 0) < m.get("accounted_bytes", 1):
            raise Broken("payload below the accounting")

    case("compress-ok", ["compress", "g.h5", "--artifact", "art", "-o", "c.h5"], chain(*cskv),
         check=stdout_json_ok(manifest_ok), guess="cskv int4 with a window: summary JSON on stdout", group=g)

    def dump_ok(ctx):
        """the decompressed dump holds the tokens and layers of the original"""
        import h5py
        with h5py.File(ctx.p("d.h5"), "r") as f:
            layers = sorted(k for k in f if k.startswith("layer_"))
            if len(layers) != 3 or f["layer_0/key"].attrs.get("axes") != "bthd":
                raise Broken(f"decompressed dump layout: {layers}")
            got = f["layer_0/key"][()]
            if got.shape != (2, 16, 2, 4) or not np.all(np.isfinite(got)):
                raise Broken(f"decompressed layer_0/key: shape {got.shape} or values not finite")
    case("compress-decompress-ok", ["decompress", "c.h5", "-o", "d.h5"], chain(*compressed), check=dump_ok,
         group=g)
    case("compress-other-model", ["compress", "h4.h5", "--artifact", "art", "-o", "c.h5"],
         chain(*fitted, good_dump("h4.h5", H=4)), codes=(65,), contains=("h4.h5", "projections.h5", "another model"),
         group=g)
    case("compress-output-is-dump", ["compress", "g.h5", "--artifact", "art", "-o", "g.h5"], chain(*fitted),
         codes=(73,), contains=("g.h5",), group=g)
    case("compress-output-is-artifact", ["compress", "g.h5", "--artifact", "art", "-o", "art/projections.h5"],
         chain(*fitted), codes=(73,), contains=("projections.h5",), group=g)
    case("compress-output-is-users-file", ["compress", "g.h5", "--artifact", "art", "-o", "notes/notes.txt"],
         chain(*fitted, user_files("notes")), codes=(73,), contains=("notes.txt", "--force"), group=g)
    case("compress-artifact-missing", ["compress", "g.h5", "--artifact", "nope", "-o", "c.h5"],
         good_dump("g.h5", seed_name="compress"), codes=(66,), contains=("projections.h5",), group=g)
    case("compress-rank-ratio-not-rung", ["compress", "g.h5", "--artifact", "art", "-o", "c.h5",
                                          "--rank-ratio", "0.3"],
         chain(*matryoshka), codes=(64,), contains=("0.3", "rung"), group=g)
    case("compress-rank-ratio-not-matryoshka", ["compress", "g.h5", "--artifact", "art", "-o", "c.h5",
                                                "--rank-ratio", "0.5"],
         chain(*fitted), codes=(64,), contains=("matryoshka",), group=g)
    for label, value in (("zero", "0"), ("above-one", "1.5"), ("nan", "nan")):
        case(f"compress-rank-ratio-{label}", ["compress", "g.h5", "--artifact", "art", "-o", "c.h5",
                                              "--rank-ratio", value],
             chain(*matryoshka), codes=(64,), contains=("--rank-ratio",), group=g)
    case("compress-layers-missing", ["compress", "g.h5", "--artifact", "art", "-o", "c.h5", "--layers", "7"],
         chain(*fitted), codes=(65,), contains=("g.h5", "7"), group=g)
    case("compress-empty-selection", ["compress", "g.h5", "--artifact", "art", "-o", "c.h5", "--tokens", "100:"],
         chain(*fitted), codes=(65,), contains=("g.h5", "no valid tokens"), group=g)
    case("decompress-not-a-cache", ["decompress", "g.h5", "-o", "d.h5"], good_dump("g.h5", seed_name="compress"),
         codes=(65,), contains=("g.h5", "kvstat.compressed/1"), group=g)
    case("decompress-missing", ["decompress", "nope.h5", "-o", "d.h5"], chain(), codes=(66,),
         contains=("nope.h5",), group=g)
    case("decompress-output-is-input", ["decompress", "c.h5", "-o", "c.h5"], chain(*compressed), codes=(73,),
         contains=("c.h5",), group=g)

    def edit(change):
        def setup(ctx):
            import h5py
            with h5py.File(ctx.p("c.h5"), "r+") as f:
                change(f)
        return setup

    def manifest_edit(**fields):
        def change(f):
            m = json.loads(f.attrs["manifest"])
            m.update(fields)
            f.attrs["manifest"] = json.dumps(m)
        return change

    def first_unit(f):
        return f["units"][json.loads(f.attrs["manifest"])["units"][0]]

    def shrink_codes(f):
        u = first_unit(f)
        codes = u["codes"][()]
        del u["codes"]
        u["codes"] = codes[:-1]

    for label, change, words in (
        ("lengths-longer", manifest_edit(lengths=[99, 99], tokens=198), ("c.h5", "lengths")),
        ("window-negative", manifest_edit(window=-3), ("c.h5",)),
        ("tokens-overflow", manifest_edit(latent_tokens=2 ** 62, window_tokens=2 ** 62), ("c.h5",)),
        ("lengths-huge", manifest_edit(lengths=[2 ** 41, 1], tokens=2 ** 41 + 1), ("c.h5", "lengths")),
        ("latent-count-lies", manifest_edit(latent_tokens=1, window_tokens=31), ("c.h5",)),
        ("quant-unknown", manifest_edit(quantization="int3"), ("c.h5",)),
        ("block-tokens-zero", manifest_edit(block_tokens=0), ("c.h5", "block_tokens")),
        ("manifest-garbage", lambda f: f.attrs.__setitem__("manifest", "{not json"), ("c.h5",)),
        ("unit-missing", lambda f: f["units"].__delitem__(json.loads(f.attrs["manifest"])["units"][0]),
         ("c.h5",)),
        ("codes-short", shrink_codes, ("c.h5",)),
        ("window-missing", lambda f: f.__delitem__("window"), ("c.h5",)),
        ("proj-resized", lambda f: (first_unit(f).__delitem__("proj"),
                                    first_unit(f).create_dataset("proj", data=np.zeros((3, 2), "f4"))),
         ("c.h5", "proj")),
        # Found in review: these used to trap (index out of range, a read buffer too small).
        ("channels-wide", lambda f: first_unit(f).attrs.__setitem__(
            "channels", np.array([0, 2 * (first_unit(f).attrs["channels"][1])], dtype=np.int64)),
         ("c.h5", "channels")),
        ("codes-float32", lambda f: (lambda u, c: (u.__delitem__("codes"), u.create_dataset("codes", data=c)))(
            first_unit(f), first_unit(f)["codes"][()].astype("f4")), ("c.h5", "float32", "uint8")),
        ("scale-float32", lambda f: (lambda u, c: (u.__delitem__("scale"), u.create_dataset("scale", data=c)))(
            first_unit(f), first_unit(f)["scale"][()].astype("f4")), ("c.h5", "float32", "float16")),
        ("codes-but-unquantized", manifest_edit(quantization="none"), ("c.h5",)),
    ):
        case(f"decompress-{label}", ["decompress", "c.h5", "-o", "d.h5"], chain(*compressed, edit(change)),
             codes=(65,), contains=words, group=g)


def add_keep_sinks():
    """`fit-lowrank --keep-sinks K` (docs/fit-lowrank.md, "Attention sinks kept exact")."""
    g = "keepsinks"
    fit = ["fit-lowrank", "q.h5", "-o", "fit", "--quiet"]
    with_queries = good_dump("q.h5", queries=4, T=24)

    def sinks_recorded(count):
        def extra(ctx, m):
            sinks = m.get("keep_sinks")
            if not sinks or sinks.get("count") != count:
                raise Broken(f"manifest keep_sinks is {sinks!r}, expected count {count}")
            if any(len(p) != min(count, 24) for p in sinks["positions"]):
                raise Broken(f"keep_sinks positions {sinks['positions']} are not {count} per sequence")
        return extra
    for method in ("pca", "xkv", "matryoshka", "cskv"):
        case(f"keepsinks-ok-{method}", [*fit, "--method", method, "--keep-sinks", "2", "--window", "4"],
             with_queries, check=fit_ok(extra=sinks_recorded(2)), group=g)
    case("keepsinks-ok-sweep-holdout", [*fit, "--keep-sinks", "1", "--sweep", "--holdout", "0.5", "--window", "4"],
         with_queries, check=fit_ok(sweep=True, extra=sinks_recorded(1)), group=g)
    case("keepsinks-ok-cskv-int4", [*fit, "--method", "cskv", "--quant", "int4", "--window", "3",
                                    "--keep-sinks", "3"],
         with_queries, check=fit_ok(quantized=True, extra=sinks_recorded(3)), group=g)
    case("keepsinks-ok-every-token", [*fit, "--keep-sinks", "1000"], with_queries,
         check=fit_ok(extra=sinks_recorded(1000)), group=g)
    case("keepsinks-ok-no-queries", ["fit-lowrank", "g.h5", "-o", "fit", "--quiet", "--keep-sinks", "2", "--sweep"],
         good_dump(), check=fit_ok(sweep=True), group=g)
    case("keepsinks-ok-pre-rope", ["fit-lowrank", "r.h5", "-o", "fit", "--quiet", "--keys", "pre-rope",
                                   "--keep-sinks", "1", "--sweep"],
         rope_dump(attrs={"rope_theta": 10000.0}), check=fit_ok(sweep=True), group=g)
    case("keepsinks-ok-eval", [*fit, "--keep-sinks", "2", "--eval", "e.h5"],
         chain(with_queries, good_dump("e.h5", queries=4, T=24)), check=fit_ok(extra=sinks_recorded(2)), group=g)
    case("keepsinks-ok-eval-artifact", ["eval", "--artifact", "art", "q.h5"],
         chain(with_queries, kvstat_step("fit-lowrank", "q.h5", "-o", "art", "--quiet", "--keep-sinks", "2")),
         codes=(0,), group=g)
    case("keepsinks-state", ["fit-lowrank", "a.state.h5", "-o", "fit", "--quiet", "--keep-sinks", "2"],
         chain(good_dump(seed_name="opt"), kvstat_step("analyze", "g.h5", "-o", "A", "--quiet", "--save-state",
                                                       "a.state.h5")),
         codes=(64,), contains=("a.state.h5", "--keep-sinks"), group=g)


def build_cases():
    if CASES:
        return CASES
    add_numbers()
    add_bombs()
    add_writes()
    add_mismatches()
    add_batch()
    add_options()
    add_files()
    add_chunks()
    add_fixtures()
    add_merged_heads()
    add_selections_and_corpora()
    add_safetensors()
    add_pre_rope()
    add_xkv_states()
    add_compress()
    add_keep_sinks()
    return CASES


def select(patterns):
    cases = build_cases()
    if not patterns:
        return cases
    return [c for c in cases if any(fnmatch.fnmatchcase(c.name, p) for p in patterns)]


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("directory")
    ap.add_argument("--case", action="append", default=[], help="glob of case names (repeatable)")
    ap.add_argument("--kvstat", default=str(ROOT / ".build" / "debug" / "kvstat"),
                    help="binary for cases whose inputs are made by kvstat")
    a = ap.parse_args()
    out = Path(a.directory)
    out.mkdir(parents=True, exist_ok=True)
    failed = 0
    for c in select(a.case):
        d = out / c.name
        d.mkdir()
        ctx = Ctx(c, d, str(Path(a.kvstat).resolve()))
        try:
            c.setup(ctx)
        except (SetupError, subprocess.TimeoutExpired) as e:
            print(f"{c.name}: setup failed: {e}", file=sys.stderr)
            failed += 1
        (out / f"{c.name}.json").write_text(json.dumps(c.describe(), indent=1, ensure_ascii=False) + "\n")
    print(f"wrote {len(select(a.case))} cases into {out}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())

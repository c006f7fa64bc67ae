"""Shared pieces of the fault corpus and the fuzz pass: dump writers, reference statistics, result checkers.

Everything here is deterministic: data come from numpy generators seeded by the CRC32 of the case name. The
checkers raise `Broken(message)` when a documented property of kvstat's output does not hold; they never
compare against kvstat's own earlier output, only against numpy (float64) or against the definitions in
docs/statistics.md and docs/fit-lowrank.md.
"""

import json
import math
import re
import struct
import zlib
from pathlib import Path

import sys

import h5py
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "Fixtures"))
from make_fixtures import bf16_bits_to_f32, quantize  # noqa: E402  (the fixtures' exact storage rules)


class Broken(Exception):
    """A rule of the corpus that the run broke (the message says which and how)."""


def rng_for(name):
    """A numpy Generator seeded from a stable hash of `name`."""
    return np.random.default_rng(zlib.crc32(name.encode("utf-8")))


# ---------------------------------------------------------------------------------------------------------
# Element types: what is stored, and the exact float32 value kvstat sees
# ---------------------------------------------------------------------------------------------------------

def f32_to_bf16_bits(x):
    """Round float32 to bfloat16 (nearest-even, NaN kept NaN) and return the uint16 bit patterns."""
    x = np.asarray(x, dtype=np.float32)
    u = x.view(np.uint32).astype(np.uint64)
    r = ((u + 0x7FFF + ((u >> 16) & 1)) >> 16).astype(np.uint16)
    return np.where(np.isnan(x), np.uint16(0x7FC0), r).astype(np.uint16)


def stored(x, dtype):
    """(array to write, exact float32 image kvstat reads) for float16|float32|float64|bfloat16; bfloat16 keeps NaN."""
    with np.errstate(over="ignore", invalid="ignore", under="ignore"):
        return quantize(x, dtype, to_bf16=f32_to_bf16_bits)


def put(f, path, x, dtype="float32", **kw):
    """Write x as `dtype` at `path` (bfloat16 as uint16 + a `dtype` attribute); return the float32 image."""
    data, image = stored(x, dtype)
    ds = f.create_dataset(path, data=data, **kw)
    if dtype == "bfloat16":
        ds.attrs["dtype"] = "bfloat16"
    return image


def gaussian(rng, shape, scale=1.0):
    """Normal data with decaying per-channel scales (last axis), so spectra are not flat."""
    d = shape[-1]
    return rng.standard_normal(shape) * np.geomspace(1.0, 0.2, d) * scale


def write_perlayer(path, layers, dtype="float32", name="layer_{:02d}/{}", lengths=None, chunks=None):
    """layers: list of {kind: [B,H,T,D] array}. Returns the same list as float32 images."""
    images = []
    with h5py.File(path, "w") as f:
        for i, kinds in enumerate(layers):
            images.append({k: put(f, name.format(i, k), x, dtype, chunks=chunks) for k, x in kinds.items()})
        if lengths is not None:
            f["lengths"] = np.asarray(lengths, dtype=np.int64)
    return images


def random_layers(rng, L, B, H, T, D, scale=1.0, kinds=("key", "value")):
    return [{k: gaussian(rng, (B, H, T, D), scale) for k in kinds} for _ in range(L)]


# ---------------------------------------------------------------------------------------------------------
# Reference statistics (numpy, float64) of what kvstat should report
# ---------------------------------------------------------------------------------------------------------

def rows_of(image, lengths=None):
    """[B,H,T,D] → (rows, H·D) matrix of valid tokens, b-major then t (docs/dump-format.md)."""
    B, H, T, D = image.shape
    x = np.asarray(image, dtype=np.float64).transpose(0, 2, 1, 3)  # B,T,H,D
    if lengths is None:
        return x.reshape(B * T, H * D)
    return np.concatenate([x[b, :lengths[b]].reshape(-1, H * D) for b in range(B)], axis=0)


def effective_rank(s2, p):
    total = s2.sum()
    if total <= 0:
        return 0
    c = np.cumsum(s2)
    return int(np.searchsorted(c, p * total - 1e-12 * total) + 1)


def matrix_ref(x, keep=0.25):
    """Reference for one (layer, kind): rows kept, non-finite values, σ, effective ranks, pca error."""
    finite_rows = np.all(np.isfinite(x), axis=1)
    kept = x[finite_rows]
    nonfinite = int(np.count_nonzero(~np.isfinite(x)))
    C = x.shape[1]
    s = np.linalg.svd(kept, compute_uv=False) if kept.shape[0] else np.zeros(0)
    s2 = s ** 2
    r = max(1, int(math.floor(keep * C + 0.5)))  # kvstat keeps at least one dimension per unit
    total = float(s2.sum())
    return {
        "rows": int(kept.shape[0]), "nonfinite": nonfinite, "channels": C,
        "sigma1": float(s[0]) if s.size else 0.0,
        "er90": effective_rank(s2, 0.9) if total > 0 else 0,
        "stable_rank": total / float(s2[0]) if total > 0 else None,
        "pca_error": math.sqrt(max(0.0, float(s2[r:].sum())) / total) if total > 0 else None,
        "energy": total,
    }


def dump_ref(images, lengths=None, keep=0.25):
    """{"<layer>.<kind>": matrix_ref} for every layer and kind of a per-layer image list."""
    return {f"{i}.{k}": matrix_ref(rows_of(x, lengths), keep)
            for i, kinds in enumerate(images) for k, x in kinds.items()}


# ---------------------------------------------------------------------------------------------------------
# Output checkers
# ---------------------------------------------------------------------------------------------------------

def strict_json(text, what):
    """Parse JSON refusing NaN/Infinity and numbers that overflow to inf."""
    def constant(c):
        raise Broken(f"{what}: non-standard JSON constant {c}")
    try:
        value = json.loads(text, parse_constant=constant)
    except json.JSONDecodeError as e:
        raise Broken(f"{what}: not JSON: {e}") from None

    def walk(v, where):
        if isinstance(v, float) and not math.isfinite(v):
            raise Broken(f"{what}: {where} is {v}")
        if isinstance(v, dict):
            for k, w in v.items():
                walk(w, f"{where}.{k}")
        elif isinstance(v, list):
            for i, w in enumerate(v):
                walk(w, f"{where}[{i}]")
    walk(value, "")
    return value


def load_json(path):
    p = Path(path)
    if not p.is_file():
        raise Broken(f"missing output {p.name}")
    return strict_json(p.read_text(), p.name)


BAD_CELL = {"nan", "-nan", "inf", "-inf", "+inf", "infinity", "-infinity"}
BAD_TEXT = re.compile(r"(?<![\w./-])(NaN|nan|-nan|-?inf|-?Infinity)(?![\w.])")


def check_text_files(directory):
    """CSV cells, report.html and summary.md must not show nan/inf."""
    for p in sorted(Path(directory).glob("*.csv")):
        for n, line in enumerate(p.read_text().splitlines(), 1):
            for cell in line.split(","):
                if cell.strip().lower() in BAD_CELL:
                    raise Broken(f"{p.name} line {n}: cell '{cell}'")
    for name in ("report.html", "summary.md"):
        p = Path(directory) / name
        if p.is_file():
            text = p.read_text()
            m = BAD_TEXT.search(text)
            if m:
                raise Broken(f"{name} shows '{m.group(0)}' near: {text[max(0, m.start() - 60):m.end() + 20]!r}")


def close(a, b, rtol, atol=0.0):
    return abs(a - b) <= atol + rtol * abs(b)


def within(v, lo, hi, what, tol=1e-6):
    if v is None:
        return
    if not (lo - tol <= v <= hi + tol):
        raise Broken(f"{what} = {v}, outside [{lo}, {hi}]")


def check_kind_stats(ks, what, channels):
    """Bounds that follow from the definitions in docs/statistics.md."""
    sv = ks.get("singular_values")
    if sv is not None:
        if any(v is None or v < 0 for v in sv):
            raise Broken(f"{what}.singular_values has negative or null entries")
        if any(sv[i + 1] > sv[i] * (1 + 1e-9) + 1e-300 for i in range(len(sv) - 1)):
            raise Broken(f"{what}.singular_values not non-increasing")
        er = ks.get("effective_rank") or {}
        last = 0
        for p in sorted(er, key=float):
            within(er[p], 0, channels, f"{what}.effective_rank[{p}]")
            if er[p] < last:
                raise Broken(f"{what}.effective_rank decreases with p")
            last = er[p]
        within(ks.get("stable_rank"), 1, channels, f"{what}.stable_rank", 1e-6 * channels)
        within(ks.get("entropy_rank"), 1, channels, f"{what}.entropy_rank", 1e-6 * channels)
    ch = ks.get("channels")
    if ch:
        for i, k in enumerate(ch.get("kurtosis") or []):
            within(k, 1, math.inf, f"{what}.channels.kurtosis[{i}]", 1e-6)
        for i, (m, r, a) in enumerate(zip(ch.get("mean") or [], ch.get("rms") or [], ch.get("max_abs") or [])):
            if None in (m, r, a):
                continue
            if r < 0 or a < 0 or r > a * (1 + 1e-5) + 1e-30 or abs(m) > a * (1 + 1e-5) + 1e-30:
                raise Broken(f"{what}.channels[{i}]: mean {m}, rms {r}, max_abs {a} are inconsistent")
    fr = ks.get("frequency")
    if fr:
        last = 0
        for f in sorted(fr.get("low_energy") or {}, key=float):
            v = fr["low_energy"][f]
            within(v, 0, 1, f"{what}.frequency.low_energy[{f}]")
            if v is not None and v < last - 1e-9:
                raise Broken(f"{what}.frequency.low_energy decreases")
            last = v if v is not None else last
        for i, v in enumerate(fr.get("spectrum") or []):
            within(v, 0, 1, f"{what}.frequency.spectrum[{i}]")
    within(ks.get("tokens"), 0, math.inf, f"{what}.tokens")
    within(ks.get("non_finite"), 0, math.inf, f"{what}.non_finite")


SIM_BOUNDS = {"cosine": (-1, 1, 1e-6), "cka": (0, 1, 1e-3), "subspace_alignment": (0, 1, 1e-3),
              "channel_alignment": (0, 1, 1e-3)}


def similarity_pairs(stats, kind):
    """{(layer_a, layer_b): {measure: value}} from either form of `similarity.<kind>`: a list of pair objects
    (`layer_a`, `layer_b`, measures) or, in older files, one L×L matrix per measure."""
    sim = (stats.get("similarity") or {}).get(kind)
    pairs = {}
    if isinstance(sim, list):
        for entry in sim:
            # Measures only: the layer numbers and a pair's explanatory `note` are not numbers to bound.
            pairs[(entry.get("layer_a"), entry.get("layer_b"))] = {k: v for k, v in entry.items()
                                                                   if not k.startswith("layer_") and k != "note"}
    elif isinstance(sim, dict):
        numbers = stats.get("layer_numbers") or list(range(len(stats.get("layers", []))))
        for name, m in sim.items():
            for i, row in enumerate(m or []):
                for j, v in enumerate(row):
                    if i < j and v is not None:
                        pairs.setdefault((numbers[i], numbers[j]), {})[name] = v
                    if v is not None and m[j][i] is not None and abs(v - m[j][i]) > 1e-9 * max(1, abs(v)):
                        raise Broken(f"similarity.{kind}.{name} is not symmetric at [{i}][{j}]")
    return pairs


def check_stats(stats):
    """Generic sanity of a stats.json (kvstat.stats/1)."""
    dump = stats.get("dump", {})
    for layer in stats.get("layers", []):
        for kind, ks in layer.items():
            if not isinstance(ks, dict):
                continue
            heads = dump.get("query_heads") if kind == "query" else dump.get("kv_heads")
            channels = (heads or 0) * (dump.get("head_dim") or 0) or len(ks.get("singular_values") or [1])
            check_kind_stats(ks, f"layers[{layer.get('layer')}].{kind}", channels)
    for kind in (stats.get("similarity") or {}):
        for (a, b), measures in similarity_pairs(stats, kind).items():
            for name, v in measures.items():
                lo, hi, tol = SIM_BOUNDS.get(name, (-math.inf, math.inf, 0))
                within(v, lo, hi, f"similarity.{kind} layers {a},{b} {name}", tol)


def layer_stats(stats, layer, kind):
    for entry in stats.get("layers", []):
        if entry.get("layer") == layer:
            if kind not in entry:
                raise Broken(f"stats.json: layer {layer} has no {kind}")
            return entry[kind]
    raise Broken(f"stats.json: no layer {layer}")


def expect_zero_energy(ks, what):
    """The documented result for a matrix with no energy (all zeros, or no finite rows)."""
    if any(v != 0 for v in ks.get("singular_values") or []):
        raise Broken(f"{what}: singular values not all 0: {ks['singular_values'][:4]}")
    for p, r in (ks.get("effective_rank") or {}).items():
        if r != 0:
            raise Broken(f"{what}: effective_rank[{p}] = {r}, expected 0")
    for p, rs in (ks.get("head_effective_rank") or {}).items():
        if any(r != 0 for r in rs):
            raise Broken(f"{what}: head_effective_rank[{p}] = {rs}, expected all 0")
    if ks.get("stable_rank") is not None:
        raise Broken(f"{what}: stable_rank = {ks['stable_rank']}, expected null")
    kurt = (ks.get("channels") or {}).get("kurtosis") or []
    if any(k is not None for k in kurt):
        raise Broken(f"{what}: kurtosis not all null: {kurt[:4]}")
    outliers = (ks.get("channels") or {}).get("outliers")
    if outliers:
        raise Broken(f"{what}: outlier channels {outliers[:4]} in a matrix without energy")


def expect_matches_ref(ks, ref, what, rtol=1e-3):
    """σ₁, the 90 % effective rank, the stable rank and the row count against numpy's float64 values."""
    if ks.get("tokens") != ref["rows"]:
        raise Broken(f"{what}: tokens = {ks.get('tokens')}, expected {ref['rows']} (rows without NaN/Inf)")
    if ks.get("non_finite") != ref["nonfinite"]:
        raise Broken(f"{what}: non_finite = {ks.get('non_finite')}, expected {ref['nonfinite']}")
    sv = ks.get("singular_values") or [0.0]
    if not close(sv[0], ref["sigma1"], rtol):
        raise Broken(f"{what}: σ₁ = {sv[0]:.6g}, numpy (float64) gives {ref['sigma1']:.6g}")
    er = (ks.get("effective_rank") or {}).get("0.9")
    if er is not None and abs(er - ref["er90"]) > 1:
        raise Broken(f"{what}: effective_rank[0.9] = {er}, numpy gives {ref['er90']}")
    sr = ks.get("stable_rank")
    if ref["stable_rank"] is not None and (sr is None or not close(sr, ref["stable_rank"], 1e-2)):
        raise Broken(f"{what}: stable_rank = {sr}, numpy gives {ref['stable_rank']:.6g}")


def similarity_value(stats, kind, name, a, b):
    """The measure of layers a, b (layer numbers); Broken if the pair was not computed at all."""
    pairs = similarity_pairs(stats, kind)
    if (a, b) not in pairs and (b, a) not in pairs:
        if isinstance((stats.get("similarity") or {}).get(kind), dict):
            return None  # matrix form: a null entry
        raise Broken(f"stats.json: no similarity.{kind} entry for layers {a},{b}")
    return (pairs.get((a, b)) or pairs.get((b, a))).get(name)


# --- fits ---

def read_safetensors(path):
    data = Path(path).read_bytes()
    if len(data) < 8:
        raise Broken("projections.safetensors is shorter than its header length")
    (n,) = struct.unpack("<Q", data[:8])
    header = strict_json(data[8:8 + n].decode("utf-8"), "safetensors header")
    tensors = {}
    for name, meta in header.items():
        if name == "__metadata__":
            continue
        a, b = meta["data_offsets"]
        if meta["dtype"] != "F32":
            raise Broken(f"safetensors {name}: dtype {meta['dtype']}")
        tensors[name] = np.frombuffer(data[8 + n + a:8 + n + b], dtype="<f4").reshape(meta["shape"])
    return header.get("__metadata__", {}), tensors


def check_fit_dir(directory, quantized=False, centred=False):
    """Generic sanity of a fit-lowrank output folder; returns the manifest."""
    d = Path(directory)
    for name in ("projections.safetensors", "projections.h5", "manifest.json", "fit.csv", "report.html"):
        if not (d / name).is_file():
            raise Broken(f"fit output lacks {name}")
    m = load_json(d / "manifest.json")
    check_text_files(d)
    if not quantized:  # quantization groups carry float16 parameters: tiny dimensions can cost more than 1
        within(m.get("memory_ratio"), 0, 1, "manifest.memory_ratio")
    if m.get("memory_ratio") == 0:
        raise Broken("manifest.memory_ratio is 0")
    for u in m.get("units", []):
        within(u.get("rank"), 0, u.get("dimension", 0), f"unit {u.get('name')}.rank")
    nulls = False
    for part in ("fit", "held_out", "external"):
        e = m.get(part)
        if not e:
            continue
        for kind, values in (e.get("per_layer") or {}).items():
            for i, v in enumerate(values):
                nulls |= v is None
                if not quantized and not centred:
                    within(v, 0, 1, f"manifest.{part}.per_layer.{kind}[{i}]", 1e-4)
        for kind, v in (e.get("overall") or {}).items():
            nulls |= v is None
            if not quantized and not centred:
                within(v, 0, 1, f"manifest.{part}.overall.{kind}", 1e-4)
    if nulls and not m.get("notes"):
        raise Broken("manifest has null errors but no note saying why")
    _, tensors = read_safetensors(d / "projections.safetensors")
    for name, t in tensors.items():
        if not np.all(np.isfinite(t)):
            raise Broken(f"safetensors {name} holds NaN/Inf")
        if name.endswith(".proj") and t.ndim == 2 and 0 < t.shape[1] <= t.shape[0]:
            g = t.astype(np.float64).T @ t.astype(np.float64)
            err = np.abs(g - np.eye(t.shape[1])).max()
            if err > 1e-3:
                raise Broken(f"safetensors {name}: columns not orthonormal (max |PᵀP − I| = {err:.3g})")
    return m


def fit_error(manifest, part, kind, layer_position):
    return ((manifest.get(part) or {}).get("per_layer") or {}).get(kind, [None] * (layer_position + 1))[layer_position]

#!/usr/bin/env python3
"""Self-check for the fixtures written by make_fixtures.py.

1. For every good fixture NAME.h5, re-read the datasets listed in
   NAME.truth.json["sources"] with h5py, rebuild the row matrices (valid
   tokens b-major/t-ascending, column = h*head_dim + d), and compare them
   BITWISE with NAME.truth.f32.  Also re-derives the valid-token mask from the
   file's own /lengths or /attention_mask and checks the metadata.
2. Checks that every bad fixture really has the defect it claims.
3. If Debian's system libhdf5 (the one the Swift reader links) is present,
   re-reads every dataset through it with ctypes in a subprocess and checks
   the float32 conversion it performs matches h5py bit for bit, and that the
   bad fixtures fail (or not) under it as documented.

Exits non-zero on any mismatch.  Usage: python3 Tests/Fixtures/check_fixtures.py
"""

import ctypes
import ctypes.util
import hashlib
import json
import subprocess
import sys
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
DUMPS = HERE / "dumps"

FAILURES = []


def fail(msg):
    """Record a failure message."""
    FAILURES.append(msg)
    print("FAIL:", msg)


# --------------------------------------------------------------------------
# h5py re-read
# --------------------------------------------------------------------------

def attr_str(obj, name):
    """Return string attribute `name` of an h5py object (vlen or fixed), or None."""
    if name not in obj.attrs:
        return None
    v = obj.attrs[name]
    if isinstance(v, bytes):
        v = v.decode("ascii")
    elif isinstance(v, np.ndarray):
        v = v.item()
        v = v.decode("ascii") if isinstance(v, bytes) else v
    return str(v).rstrip("\x00 ")


def to_f32(f, ds, declared):
    """Read an h5py dataset and return its exact float32 image, checking the declared dtype."""
    arr = ds[()]
    if declared == "bfloat16":
        if arr.dtype != np.dtype("<u2"):
            raise ValueError(f"{ds.name}: bfloat16 must be stored as uint16, got {arr.dtype}")
        if attr_str(ds, "dtype") != "bfloat16" and attr_str(f, "dtype") != "bfloat16":
            raise ValueError(f"{ds.name}: no dtype=bfloat16 attribute on dataset or root")
        return (arr.astype(np.uint32) << 16).view(np.float32)
    want = {"float16": "<f2", "float32": "<f4", "float64": "<f8"}[declared]
    if arr.dtype != np.dtype(want):
        raise ValueError(f"{ds.name}: expected {want}, got {arr.dtype}")
    return arr.astype(np.float32)


def as_bhtd(arr, axes, layer_index):
    """Turn an on-disk array with axis letters `axes` (subset of lbhtd) into logical [B,H,T,D]."""
    if "l" in axes:
        arr = np.take(arr, layer_index, axis=axes.index("l"))
        axes = axes.replace("l", "")
    if "b" not in axes:
        arr = arr[None]
        axes = "b" + axes
    return np.transpose(arr, [axes.index(a) for a in "bhtd"])


def valid_mask(f, truth):
    """Derive the [B,T] validity mask from the file's own padding dataset."""
    b, t = truth["sequences"], truth["max_tokens"]
    pad = truth["expect"]["padding"]
    if pad["kind"] == "none":
        for p in ("lengths", "attention_mask"):
            if p in f:
                raise ValueError(f"padding kind none but /{p} exists")
        return np.ones((b, t), bool)
    ds = f[pad["path"]]
    if pad["kind"] == "lengths":
        if ds.shape != (b,) or ds.dtype != np.dtype("<i8"):
            raise ValueError(f"/lengths has shape {ds.shape} dtype {ds.dtype}")
        return np.arange(t)[None, :] < ds[()][:, None]
    if pad["kind"] == "attention_mask":
        if ds.shape != (b, t):
            raise ValueError(f"/attention_mask has shape {ds.shape}")
        return ds[()] != 0
    raise ValueError(pad)


def check_good(h5py, name):
    """Compare NAME.truth.f32 with the rows rebuilt from NAME.h5 via h5py."""
    truth = json.loads((DUMPS / f"{name}.truth.json").read_text())
    raw = np.fromfile(DUMPS / f"{name}.truth.f32", dtype="<f4")
    with h5py.File(DUMPS / f"{name}.h5", "r") as f:
        valid = valid_mask(f, truth)
        if int(valid.sum()) != truth["tokens"]:
            fail(f"{name}: tokens {truth['tokens']} != mask sum {int(valid.sum())}")
        if [int(x) for x in valid.sum(1)] != truth["expect"]["sequence_lengths"]:
            fail(f"{name}: sequence_lengths mismatch")
        pieces = []
        nonfinite = {}
        for l in range(truth["layers"]):
            for kind in truth["kinds"]:
                src = truth["sources"][str(l)][kind]
                ds = f[src["path"]]
                if src["axes"] != "bhtd" and "l" not in src["axes"] and len(src["axes"]) == 4:
                    # non-default per-layer axis order must be declared in the file
                    # (attribute) or by the layout file (custom layout)
                    if truth["layout"] != "custom" and attr_str(ds, "axes") != src["axes"]:
                        fail(f"{name}: {src['path']} lacks axes={src['axes']} attribute")
                x = as_bhtd(to_f32(f, ds, truth["dtype"]), src["axes"], src.get("layer_index"))
                heads = truth["query_heads"] if kind == "query" else truth["kv_heads"]
                want = (truth["sequences"], heads, truth["max_tokens"], truth["head_dim"])
                if x.shape != want:
                    fail(f"{name}: {src['path']} logical shape {x.shape} != {want}")
                    return
                rows = np.transpose(x, (0, 2, 1, 3)).reshape(want[0], want[2], -1)[valid]
                n = int((~np.isfinite(rows)).sum())
                if n:
                    nonfinite[f"layer{l}.{kind}"] = n
                pieces.append(rows.astype("<f4").ravel())
    rebuilt = np.concatenate(pieces)
    if rebuilt.size != raw.size:
        fail(f"{name}: truth.f32 has {raw.size} floats, rebuilt {rebuilt.size}")
    elif not np.array_equal(rebuilt.view("<u4"), raw.view("<u4")):
        bad = int((rebuilt.view("<u4") != raw.view("<u4")).sum())
        fail(f"{name}: {bad} floats differ bitwise from truth.f32")
    if nonfinite != truth["expect"]["nonfinite"]:
        fail(f"{name}: nonfinite {nonfinite} != expect {truth['expect']['nonfinite']}")
    print(f"ok   {name}: {len(pieces)} matrices, {rebuilt.size} floats")
    return truth


# --------------------------------------------------------------------------
# bad fixtures (structural defects, checked with h5py)
# --------------------------------------------------------------------------

def check_bad(h5py):
    """Verify each bad fixture has exactly the defect bad_inputs.json claims."""
    entries = json.loads((HERE / "bad_inputs.json").read_text())
    files = {e["file"] for e in entries}
    on_disk = {p.name for p in DUMPS.glob("bad_*.h5")}
    if files != on_disk:
        fail(f"bad_inputs.json {sorted(files)} != files {sorted(on_disk)}")

    def opened(fn):
        """Open a bad fixture read-only with h5py."""
        return h5py.File(DUMPS / fn, "r")

    checks = {
        "bad_not_hdf5.h5": lambda: not h5py.is_hdf5(DUMPS / "bad_not_hdf5.h5"),
        "bad_missing_value.h5": lambda: _with(opened("bad_missing_value.h5"), lambda f:
            "layer_01/key" in f and "layer_01/value" not in f and "layer_00/value" in f),
        "bad_shape_mismatch.h5": lambda: _with(opened("bad_shape_mismatch.h5"), lambda f:
            f["layer_00/key"].shape == (1, 2, 8, 4) and f["layer_00/value"].shape == (1, 2, 7, 4)),
        "bad_zero_tokens.h5": lambda: _with(opened("bad_zero_tokens.h5"), lambda f:
            all(d.shape == (1, 2, 0, 4) for d in _datasets(f))),
        "bad_all_padded.h5": lambda: _with(opened("bad_all_padded.h5"), lambda f:
            (f["lengths"][()] == 0).all() and f["layer_00/key"].shape[2] > 0),
        "bad_lzf.h5": lambda: _with(opened("bad_lzf.h5"), lambda f:
            f["layer_00/key"].compression == "lzf" and
            all(f["layer_00/key"].id.get_chunk_info(i).filter_mask == 0
                for i in range(f["layer_00/key"].id.get_num_chunks()))),
        "bad_absurd_shape.h5": lambda: _with(opened("bad_absurd_shape.h5"), lambda f:
            f["layer_00/key"].ndim == 6),
        "bad_int_dtype.h5": lambda: _with(opened("bad_int_dtype.h5"), lambda f:
            f["layer_00/key"].dtype == np.dtype("<i4") and not f["layer_00/key"].attrs.keys()
            and not f.attrs.keys()),
        "bad_no_kv.h5": lambda: _with(opened("bad_no_kv.h5"), lambda f:
            sorted(d.name for d in _datasets(f)) == ["/metadata/step", "/weights/embedding"]),
        "bad_query_heads.h5": lambda: _with(opened("bad_query_heads.h5"), lambda f:
            f["layer_00/query"].shape[1] == 3 and f["layer_00/key"].shape[1] == 2),
    }
    for fn, chk in checks.items():
        try:
            ok = chk()
        except Exception as e:   # noqa: BLE001
            ok = False
            print("   ", fn, type(e).__name__, e)
        if ok:
            print(f"ok   {fn}")
        else:
            fail(f"{fn}: defect not as documented")
    try:
        opened("bad_truncated.h5").close()
        fail("bad_truncated.h5 opened with h5py")
    except OSError:
        print("ok   bad_truncated.h5 (h5py refuses to open it)")


def _with(f, fn):
    """Apply fn to an open h5py file and close it."""
    with f:
        return bool(fn(f))


def _datasets(f):
    """All datasets in an h5py file."""
    out = []
    f.visititems(lambda n, o: out.append(o) if hasattr(o, "shape") else None)
    return out


# --------------------------------------------------------------------------
# system libhdf5 (Debian 1.10.8) cross-check, run in a subprocess so that it
# never shares a process with h5py's bundled HDF5
# --------------------------------------------------------------------------

def find_syslib():
    """Locate the system libhdf5 shared library, or None."""
    for cand in ("/usr/lib/x86_64-linux-gnu/hdf5/serial/libhdf5.so",
                 "/usr/lib/aarch64-linux-gnu/hdf5/serial/libhdf5.so"):
        if Path(cand).exists():
            return cand
    return ctypes.util.find_library("hdf5_serial") or ctypes.util.find_library("hdf5")


def syslib_worker(libpath):
    """Subprocess body: read jobs (JSON on stdin) through libhdf5 via ctypes; print JSON results."""
    lib = ctypes.CDLL(libpath)
    hid = ctypes.c_int64
    lib.H5open()
    lib.H5Eset_auto2(hid(0), None, None)
    lib.H5Fopen.restype = hid
    lib.H5Fopen.argtypes = [ctypes.c_char_p, ctypes.c_uint, hid]
    lib.H5Dopen2.restype = hid
    lib.H5Dopen2.argtypes = [hid, ctypes.c_char_p, hid]
    lib.H5Dget_space.restype = hid
    lib.H5Dget_space.argtypes = [hid]
    lib.H5Sget_simple_extent_npoints.restype = ctypes.c_int64
    lib.H5Sget_simple_extent_npoints.argtypes = [hid]
    lib.H5Dread.argtypes = [hid, hid, hid, hid, hid, ctypes.c_void_p]
    for fn in ("H5Sclose", "H5Dclose", "H5Fclose"):
        getattr(lib, fn).argtypes = [hid]
    lib.H5get_libversion.argtypes = [ctypes.POINTER(ctypes.c_uint)] * 3
    ver = [ctypes.c_uint() for _ in range(3)]
    lib.H5get_libversion(*[ctypes.byref(v) for v in ver])
    memtypes = {"float": hid.in_dll(lib, "H5T_NATIVE_FLOAT_g").value,
                "uint16": hid.in_dll(lib, "H5T_NATIVE_USHORT_g").value}
    results = {"version": ".".join(str(v.value) for v in ver), "jobs": []}
    for job in json.load(sys.stdin):
        res = {"file": job["file"], "path": job["path"]}
        fid = lib.H5Fopen(job["file"].encode(), 0, hid(0))
        if fid < 0:
            res["error"] = "open"
        else:
            did = lib.H5Dopen2(fid, job["path"].encode(), hid(0))
            if did < 0:
                res["error"] = "dataset"
            else:
                sid = lib.H5Dget_space(did)
                n = lib.H5Sget_simple_extent_npoints(sid)
                lib.H5Sclose(sid)
                buf = np.zeros(n, np.float32 if job["mem"] == "float" else np.uint16)
                rc = lib.H5Dread(did, hid(memtypes[job["mem"]]), hid(0), hid(0), hid(0),
                                 buf.ctypes.data_as(ctypes.c_void_p))
                lib.H5Dclose(did)
                if rc < 0:
                    res["error"] = "read"
                else:
                    res["sha256"] = hashlib.sha256(buf.tobytes()).hexdigest()
            lib.H5Fclose(fid)
        results["jobs"].append(res)
    json.dump(results, sys.stdout)


def check_syslib(h5py, truths):
    """Cross-check every dataset through the system libhdf5 (skipped if not installed)."""
    libpath = find_syslib()
    if not libpath:
        print("skip system-libhdf5 cross-check (library not found)")
        return
    jobs, expected = [], []
    for name, truth in truths.items():
        h5 = str(DUMPS / f"{name}.h5")
        paths = sorted({s["path"] for per in truth["sources"].values() for s in per.values()})
        with h5py.File(h5, "r") as f:
            for p in paths:
                mem = "uint16" if truth["dtype"] == "bfloat16" else "float"
                data = f[p][()]
                data = data if mem == "uint16" else data.astype(np.float32)
                jobs.append({"file": h5, "path": p, "mem": mem})
                expected.append(("ok", hashlib.sha256(np.ascontiguousarray(data).tobytes())
                                 .hexdigest()))
    bad_expect = [("bad_not_hdf5.h5", "/layer_00/key", "open"),
                  ("bad_truncated.h5", "/layer_00/key", "open"),
                  ("bad_lzf.h5", "/layer_00/key", "read"),
                  ("bad_lzf.h5", "/layer_00/value", None),
                  ("bad_missing_value.h5", "/layer_01/value", "dataset"),
                  ("bad_zero_tokens.h5", "/layer_00/key", None),
                  ("bad_absurd_shape.h5", "/layer_00/key", None),
                  ("bad_query_heads.h5", "/layer_00/query", None)]
    for fn, p, err in bad_expect:
        jobs.append({"file": str(DUMPS / fn), "path": p, "mem": "float"})
        expected.append(("err", err))
    proc = subprocess.run([sys.executable, __file__, "--syslib-worker", libpath],
                          input=json.dumps(jobs), capture_output=True, text=True)
    if proc.returncode != 0:
        fail(f"system-libhdf5 worker crashed: {proc.stderr.strip()[-500:]}")
        return
    out = json.loads(proc.stdout)
    nbad = 0
    for job, res, (kind, want) in zip(jobs, out["jobs"], expected):
        label = f"{Path(job['file']).name}:{job['path']}"
        if kind == "ok":
            if res.get("sha256") != want:
                nbad += 1
                fail(f"libhdf5 {out['version']} {label}: {res.get('error', 'data differs')}")
        elif res.get("error") != want:
            nbad += 1
            fail(f"libhdf5 {out['version']} {label}: expected error={want}, got {res}")
    print(f"{'ok  ' if not nbad else 'FAIL'} system libhdf5 {out['version']} ({libpath}): "
          f"{len(jobs)} reads checked")


def main():
    """Run all checks and exit non-zero on any failure."""
    import h5py
    truths = {}
    for tj in sorted(DUMPS.glob("*.truth.json")):
        name = tj.name[: -len(".truth.json")]
        try:
            t = check_good(h5py, name)
            if t:
                truths[name] = t
        except Exception as e:   # noqa: BLE001
            fail(f"{name}: {type(e).__name__}: {e}")
    goods = {p.stem for p in DUMPS.glob("*.h5") if not p.name.startswith("bad_")}
    if goods != set(truths) and not FAILURES:
        fail(f"good .h5 without truth: {sorted(goods - set(truths))}")
    check_bad(h5py)
    check_syslib(h5py, truths)
    total = sum(p.stat().st_size for p in DUMPS.iterdir())
    print(f"dumps/: {len(list(DUMPS.iterdir()))} files, {total} bytes")
    if total >= 1 << 20:
        fail("fixtures exceed 1 MiB")
    if FAILURES:
        print(f"{len(FAILURES)} failure(s)")
        sys.exit(1)
    print("all fixtures OK")


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "--syslib-worker":
        syslib_worker(sys.argv[2])
    else:
        main()

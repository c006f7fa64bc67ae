#!/usr/bin/env python3
"""BLAS calibration: this machine's own rate for the routines kvstat's Gram stage calls.

Calls cblas_ssyrk and cblas_sgemm through ctypes in the OpenBLAS library kvstat is
linked against (found with `ldd KVSTAT_BIN`, or given with --lib), on the shapes of
one analyze block: X = block_tokens x channels float32 (default 4096 x 1024),
C = X^T X (SSYRK, n^2 k flops) and C = A^T B (SGEMM, 2 m n k flops). Prints the
best of --repeat runs, in GFLOP/s, counting flops the way `kvstat analyze --timings`
does, so the two can be divided.

Usage:
  python3 Benchmarks/blas_calibration.py --kvstat .build/release/kvstat [--tokens 4096 --channels 1024]
  python3 Benchmarks/blas_calibration.py --lib /lib/x86_64-linux-gnu/libopenblas.so.0
Output: one line per routine, "ssyrk <GFLOP/s>" and "sgemm <GFLOP/s>".
"""
import argparse
import ctypes
import subprocess
import sys
import time

import numpy as np

ROW_MAJOR, COL_MAJOR, NO_TRANS, TRANS, UPPER = 101, 102, 111, 112, 121


def library_of(binary):
    """Path of the libopenblas that `binary` loads, from ldd."""
    out = subprocess.run(["ldd", binary], capture_output=True, text=True, check=True).stdout
    for line in out.splitlines():
        if "libopenblas" in line and "=>" in line:
            return line.split("=>")[1].split("(")[0].strip()
    sys.exit(f"error: {binary} does not link libopenblas (ldd shows no libopenblas)")


def best(fn, repeat):
    fn()  # warm-up: thread start-up and page faults
    times = []
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return min(times)


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    g = p.add_mutually_exclusive_group(required=True)
    g.add_argument("--kvstat", help="kvstat binary whose libopenblas to load")
    g.add_argument("--lib", help="path of the BLAS library")
    p.add_argument("--tokens", type=int, default=4096)
    p.add_argument("--channels", type=int, default=1024)
    p.add_argument("--repeat", type=int, default=20)
    a = p.parse_args()
    lib = ctypes.CDLL(a.lib or library_of(a.kvstat))
    k, n = a.tokens, a.channels
    rng = np.random.default_rng(0)
    x = rng.standard_normal((k, n), dtype=np.float32)
    y = rng.standard_normal((k, n), dtype=np.float32)
    c = np.zeros((n, n), dtype=np.float32)
    fp = ctypes.POINTER(ctypes.c_float)
    px, py, pc = (m.ctypes.data_as(fp) for m in (x, y, c))
    i, f = ctypes.c_int, ctypes.c_float
    lib.cblas_ssyrk.argtypes = [i, i, i, i, i, f, fp, i, f, fp, i]
    lib.cblas_sgemm.argtypes = [i, i, i, i, i, i, f, fp, i, fp, i, f, fp, i]
    # The same calls as KVNumerics.BLAS.accumulateGram / accumulateCrossProduct.
    syrk = best(lambda: lib.cblas_ssyrk(COL_MAJOR, UPPER, NO_TRANS, n, k, 1.0, px, n, 0.0, pc, n), a.repeat)
    gemm = best(lambda: lib.cblas_sgemm(ROW_MAJOR, TRANS, NO_TRANS, n, n, k, 1.0, px, n, py, n, 0.0, pc, n), a.repeat)
    print(f"ssyrk {n * n * k / syrk / 1e9:.1f}")
    print(f"sgemm {2 * n * n * k / gemm / 1e9:.1f}")


if __name__ == "__main__":
    main()

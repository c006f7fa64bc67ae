#!/usr/bin/env python3
"""The floor of `kvstat analyze` on one dump: its level-3 BLAS calls and FFTW's best DCTs, timed here.

The floor is what no implementation of the same analysis can avoid on this machine: one SSYRK per token
block of every tensor (the Gram matrices), one SGEMM per token block of every adjacent layer pair (the cross
products CKA and the alignments need), and the DCT-II of every (tensor, sequence) along tokens. Each part is
timed in this process with the libraries kvstat links -- its libopenblas (found with `ldd`) and libfftw3f --
so the same kernels run as in kvstat. The eigendecompositions are the third part of the floor; they are
kvstat's own `eigen` stage and are added by `analyze_vs_numpy.sh` from `--timings`.

BLAS: a full block (block_tokens x channels float32, the shapes kvstat calls) is timed REPEAT times on fresh
random data; the median per row is multiplied by the rows kvstat folds (tensors x valid tokens for SSYRK,
pairs x valid tokens for SGEMM). With --full every call is made instead (as long as the BLAS part of kvstat).

DCT: for each distinct window length n, FFTW's best plan for a batch of `channels` contiguous signals (the
friendliest layout: the transpose any implementation needs is not counted) is planned with FFTW_MEASURE on
all cores (FFTW_PATIENT took over ten minutes to plan 1024 signals of 32768 samples here). The floor takes
the faster of REDFT10 (FFTW's DCT-II) and a real-to-complex FFT of the same length (the core of an FFT-based
DCT-II, without its pre- and post-processing), median of REPEAT executions, times the number of (tensor,
sequence) windows of that length.

Usage:
  python3 Benchmarks/floor.py --kvstat BIN --layers 32 --kinds 2 --pair-kinds 2 --channels 1024 \\
      --lengths 32768 [--block 4096] [--repeat 5] [--full]
Output: `key value` lines: corename, config, threads, ssyrk_s, sgemm_s, dct_s, dct_variant, floor_blas_dct_s.
"""
import argparse
import ctypes
import ctypes.util
import os
import statistics
import subprocess
import sys
import time

import numpy as np

ROW_MAJOR, COL_MAJOR, NO_TRANS, TRANS, UPPER = 101, 102, 111, 112, 121
FFTW_MEASURE = 0
FFTW_REDFT10 = 5


def linked(binary, name):
    """Path of the shared library matching `name` that `binary` loads, from ldd."""
    out = subprocess.run(["ldd", binary], capture_output=True, text=True, check=True).stdout
    for line in out.splitlines():
        if name in line and "=>" in line:
            return line.split("=>")[1].split("(")[0].strip()
    sys.exit(f"error: {binary} does not link {name} (ldd shows none)")


def median_time(fn, repeat):
    fn()  # warm-up: thread start-up, page faults
    times = []
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def blas_floor(lib, a, rows_total, pair_rows_total):
    f = ctypes.c_float
    fp = ctypes.POINTER(ctypes.c_float)
    i = ctypes.c_int
    lib.cblas_ssyrk.argtypes = [i, i, i, i, i, f, fp, i, f, fp, i]
    lib.cblas_sgemm.argtypes = [i, i, i, i, i, i, f, fp, i, fp, i, f, fp, i]
    k, n = a.block, a.channels
    rng = np.random.default_rng(0)
    x = rng.standard_normal((k, n), dtype=np.float32)
    y = rng.standard_normal((k, n), dtype=np.float32)
    c = np.zeros((n, n), dtype=np.float32)
    px, py, pc = (m.ctypes.data_as(fp) for m in (x, y, c))

    def syrk(rows):
        lib.cblas_ssyrk(COL_MAJOR, UPPER, NO_TRANS, n, rows, 1.0, px, n, 0.0, pc, n)

    def gemm(rows):
        lib.cblas_sgemm(ROW_MAJOR, TRANS, NO_TRANS, n, n, rows, 1.0, px, n, py, n, 0.0, pc, n)

    if a.full:
        def every(call, total):
            t = time.perf_counter()
            left = total
            while left > 0:
                call(min(k, left))
                left -= k
            return time.perf_counter() - t
        return every(syrk, rows_total), every(gemm, pair_rows_total)
    per_row_syrk = median_time(lambda: syrk(k), a.repeat) / k
    per_row_gemm = median_time(lambda: gemm(k), a.repeat) / k
    return per_row_syrk * rows_total, per_row_gemm * pair_rows_total


def dct_floor(a, lengths, tensors):
    path = ctypes.util.find_library("fftw3f")
    threads_path = ctypes.util.find_library("fftw3f_threads")
    if not path or not threads_path:
        sys.exit("error: libfftw3f / libfftw3f_threads not found (apt-get install libfftw3-dev)")
    fftw = ctypes.CDLL(path, mode=ctypes.RTLD_GLOBAL)
    fthreads = ctypes.CDLL(threads_path)
    fthreads.fftwf_init_threads()
    fthreads.fftwf_plan_with_nthreads(os.cpu_count() or 1)
    vp, ip = ctypes.c_void_p, ctypes.POINTER(ctypes.c_int)
    i = ctypes.c_int
    fftw.fftwf_plan_many_r2r.restype = vp
    fftw.fftwf_plan_many_r2r.argtypes = [i, ip, i, vp, ip, i, i, vp, ip, i, i, ip, ctypes.c_uint]
    fftw.fftwf_plan_many_dft_r2c.restype = vp
    fftw.fftwf_plan_many_dft_r2c.argtypes = [i, ip, i, vp, ip, i, i, vp, ip, i, i, ctypes.c_uint]
    fftw.fftwf_execute.argtypes = [vp]
    fftw.fftwf_destroy_plan.argtypes = [vp]
    total = 0.0
    variants = []
    for n, count in sorted(lengths.items()):
        c = a.channels
        x = np.zeros((c, n + 2), dtype=np.float32)
        y = np.zeros((c, n + 2), dtype=np.float32)
        size = (i * 1)(n)
        kind = (i * 1)(FFTW_REDFT10)
        redft = fftw.fftwf_plan_many_r2r(1, size, c, x.ctypes.data, None, 1, n + 2, y.ctypes.data, None, 1,
                                         n + 2, kind, FFTW_MEASURE)
        r2c = fftw.fftwf_plan_many_dft_r2c(1, size, c, x.ctypes.data, None, 1, n + 2, y.ctypes.data, None, 1,
                                           n // 2 + 1, FFTW_MEASURE)
        x[:, :n] = np.random.default_rng(1).standard_normal((c, n), dtype=np.float32)
        times = {"redft10": median_time(lambda: fftw.fftwf_execute(redft), a.repeat),
                 "r2c": median_time(lambda: fftw.fftwf_execute(r2c), a.repeat)}
        fftw.fftwf_destroy_plan(redft)
        fftw.fftwf_destroy_plan(r2c)
        best = min(times, key=times.get)
        variants.append(f"n={n}:{best}({times['redft10']:.4f}/{times['r2c']:.4f}s)")
        total += times[best] * count * tensors
    return total, " ".join(variants)


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--kvstat", required=True, help="kvstat binary whose libopenblas to load")
    p.add_argument("--layers", type=int, required=True)
    p.add_argument("--kinds", type=int, required=True, help="tensor kinds analysed (keys, values, ...)")
    p.add_argument("--pair-kinds", type=int, required=True, help="kinds with adjacent-layer pairs")
    p.add_argument("--channels", type=int, required=True, help="heads x head_dim of every tensor")
    p.add_argument("--lengths", required=True, help="valid tokens of each sequence, comma-separated")
    p.add_argument("--block", type=int, default=4096, help="kvstat's --block-tokens")
    p.add_argument("--repeat", type=int, default=5)
    p.add_argument("--full", action="store_true", help="make every BLAS call instead of extrapolating")
    p.add_argument("--no-dct", action="store_true", help="leave the DCT part out (--only spectra)")
    p.add_argument("--no-pairs", action="store_true", help="leave the SGEMM part out (--only spectra)")
    a = p.parse_args()
    lib = ctypes.CDLL(linked(a.kvstat, "libopenblas"))
    lib.openblas_get_corename.restype = ctypes.c_char_p
    lib.openblas_get_config.restype = ctypes.c_char_p
    print("corename", lib.openblas_get_corename().decode())
    print("config", lib.openblas_get_config().decode().strip().replace(" ", "_"))
    print("threads", lib.openblas_get_num_threads())
    lengths = [int(v) for v in a.lengths.split(",") if v]
    tokens = sum(lengths)
    tensors = a.layers * a.kinds
    pairs = 0 if a.no_pairs else (a.layers - 1) * a.pair_kinds
    ssyrk, sgemm = blas_floor(lib, a, tensors * tokens, pairs * tokens)
    print(f"ssyrk_s {ssyrk:.3f}")
    print(f"sgemm_s {sgemm:.3f}")
    dct = 0.0
    if not a.no_dct:
        counts = {}
        for n in lengths:
            counts[n] = counts.get(n, 0) + 1
        dct, variant = dct_floor(a, counts, tensors)
        print(f"dct_s {dct:.3f}")
        print(f"dct_variant {variant}")
    print(f"floor_blas_dct_s {ssyrk + sgemm + dct:.3f}")


if __name__ == "__main__":
    main()

#!/usr/bin/env bash
# Benchmarks/analyze_vs_numpy.sh: times `kvstat analyze` against the numpy/scipy
# baseline (Benchmarks/numpy_analyze.py) on the same dump, in one run:
#   full:     KVSTAT_BIN analyze DUMP -o DIR                 vs  numpy_analyze.py DUMP --json F
#   spectra:  KVSTAT_BIN analyze DUMP --only spectra -o DIR  vs  numpy_analyze.py DUMP --only spectra --json F
# Each case is run N times (default 3), round-robin (kvstat full, numpy full,
# kvstat spectra, numpy spectra, then again), so that load from other users of
# this shared machine hits both sides alike; the table shows the best (minimum)
# wall time of each, the median, and the ratio numpy / kvstat of the best times.
# Wall time is measured here, around each process (start-up and imports included).
# The dump is read once with `cat` before timing (WARM=0 skips it), so both sides
# read from the page cache.
#
# Threads and kernels: neither side is pinned, and both run in this shell's environment as it is
# (OPENBLAS_CORETYPE and friends are left alone: some machines here set them). The BLAS kernels each side
# runs are printed -- kvstat's from openblas_get_corename in the libopenblas it links, numpy's from its
# bundled OpenBLAS -- and when they differ no ratio is printed (ALLOW_KERNEL_MISMATCH=1 prints them anyway,
# marked), because a ratio between different kernels measures the kernels, not the programs.
#
# Agreement: before any ratio, Benchmarks/compare_results.py checks that the two sides' numbers agree
# (singular values, effective and stable ranks, CKA, channel moments and kurtosis, DCT fractions); when they
# do not, the ratios are not printed and the script exits 1.
#
# Floor: after the rounds, Benchmarks/floor.py times, with kvstat's own libopenblas and libfftw3f, the
# level-3 BLAS calls the analysis makes (SSYRK per block of every tensor, SGEMM per block of every adjacent
# pair) and FFTW's best plan for the same DCTs; kvstat's own eigen stage (--timings) is the third part. The
# table ends with kvstat's full run ÷ that floor.
#
# Usage:  Benchmarks/analyze_vs_numpy.sh KVSTAT_BIN DUMP
# Environment: N (3), PYTHON (python3), WORKDIR (default: a new mktemp -d, deleted
# at the end unless KEEP=1), WARM (1), KVSTAT_ARGS (extra arguments for both
# kvstat runs, e.g. "--threads 2"; split on spaces), ALLOW_KERNEL_MISMATCH (0),
# FLOOR_FULL (0: extrapolate the BLAS floor from one block; 1: make every call).
set -euo pipefail

if [[ $# -ne 2 || $1 == -h || $1 == --help ]]; then
    sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'
    exit 2
fi
KVSTAT=$1
DUMP=$2
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
PYTHON=${PYTHON:-python3}
N=${N:-3}
read -r -a EXTRA <<<"${KVSTAT_ARGS:-}"
[[ -f $DUMP ]] || { echo "error: no dump at $DUMP" >&2; exit 2; }
if ! "$KVSTAT" analyze --help >/dev/null 2>&1; then
    echo "error: '$KVSTAT analyze --help' failed: this kvstat has no analyze subcommand" >&2
    exit 2
fi
HAVE_ONLY=1
if ! "$KVSTAT" analyze --help 2>&1 | grep -- '--only' >/dev/null; then
    echo "note: '$KVSTAT analyze --help' does not mention --only; the spectra-only case is numpy only" >&2
    HAVE_ONLY=0
fi
if [[ -n ${WORKDIR:-} ]]; then mkdir -p "$WORKDIR"; CREATED=0
else WORKDIR=$(mktemp -d "${TMPDIR:-/tmp}/kvstat-bench.XXXXXX"); CREATED=1; fi
cleanup() { if [[ $CREATED == 1 && ${KEEP:-0} != 1 ]]; then rm -rf "$WORKDIR"; fi; }
trap cleanup EXIT

# run_timed NAME CMD...: runs CMD (output to WORKDIR/NAME.log), appends its wall time
# in seconds to TIMES[NAME]; aborts the benchmark when CMD fails.
declare -A TIMES
run_timed() {
    local name=$1
    shift
    local t0=$EPOCHREALTIME rc=0
    "$@" >"$WORKDIR/$name.log" 2>&1 || rc=$?
    local t1=$EPOCHREALTIME
    if [[ $rc -ne 0 ]]; then
        echo "error: $name failed (exit status $rc): $*" >&2
        tail -n 20 "$WORKDIR/$name.log" >&2
        exit 1
    fi
    local dt
    dt=$(awk -v a="$t0" -v b="$t1" 'BEGIN {printf "%.3f", b - a}')
    TIMES[$name]="${TIMES[$name]:-} $dt"
    printf '  %-15s %9.2f s\n' "$name" "$dt"
}

echo "dump:    $DUMP ($(du -h "$DUMP" | cut -f1))"
echo "kvstat:  $KVSTAT"
echo "python:  $("$PYTHON" -c 'import sys, numpy, scipy, h5py
print(sys.version.split()[0], "numpy", numpy.__version__, "scipy", scipy.__version__, "h5py", h5py.__version__)')"
echo "machine: $(nproc) CPUs; OPENBLAS_CORETYPE=${OPENBLAS_CORETYPE-<unset>}" \
    "OPENBLAS_L2_SIZE=${OPENBLAS_L2_SIZE-<unset>} OPENBLAS_NUM_THREADS=${OPENBLAS_NUM_THREADS-<unset>}" \
    "OMP_NUM_THREADS=${OMP_NUM_THREADS-<unset>}"
KVSTAT_KERNEL=$("$PYTHON" - "$KVSTAT" <<'PY'
import ctypes, subprocess, sys
out = subprocess.run(["ldd", sys.argv[1]], capture_output=True, text=True).stdout
path = next(l.split("=>")[1].split("(")[0].strip() for l in out.splitlines() if "libopenblas" in l and "=>" in l)
lib = ctypes.CDLL(path)
lib.openblas_get_corename.restype = ctypes.c_char_p
print(lib.openblas_get_corename().decode())
PY
)
NUMPY_KERNEL=$("$PYTHON" - <<'PY'
import ctypes, numpy
libs = [l.split()[-1] for l in open("/proc/self/maps") if "openblas" in l and l.split()[-1].endswith(".so")]
lib = ctypes.CDLL(sorted(set(libs))[0])
for name in ("scipy_openblas_get_corename64_", "openblas_get_corename64_", "openblas_get_corename"):
    if hasattr(lib, name):
        getattr(lib, name).restype = ctypes.c_char_p
        print(getattr(lib, name)().decode())
        break
else:
    print("unknown")
PY
)
echo "BLAS kernels: kvstat $KVSTAT_KERNEL, numpy $NUMPY_KERNEL"
KERNELS_MATCH=1
if [[ $KVSTAT_KERNEL != "$NUMPY_KERNEL" ]]; then
    KERNELS_MATCH=0
    echo "warning: the two sides run different BLAS kernels; ratios are not printed unless ALLOW_KERNEL_MISMATCH=1"
fi
echo "load average at start: $(cut -d' ' -f1-3 /proc/loadavg)"
CALIBRATION=$("$PYTHON" "$HERE/blas_calibration.py" --kvstat "$KVSTAT")
echo "calibration (kvstat's libopenblas, GFLOP/s): $(tr '\n' ' ' <<<"$CALIBRATION")"
if [[ ${WARM:-1} == 1 ]]; then cat "$DUMP" >/dev/null; fi

for ((i = 1; i <= N; i++)); do
    echo "round $i/$N"
    rm -rf "$WORKDIR/kvstat-full"
    run_timed kvstat_full "$KVSTAT" analyze "$DUMP" -o "$WORKDIR/kvstat-full" --timings "${EXTRA[@]}"
    cp "$WORKDIR/kvstat_full.log" "$WORKDIR/kvstat_full.$i.log"
    run_timed numpy_full "$PYTHON" "$HERE/numpy_analyze.py" "$DUMP" --json "$WORKDIR/numpy-full.json"
    if [[ $HAVE_ONLY == 1 ]]; then
        rm -rf "$WORKDIR/kvstat-spectra"
        run_timed kvstat_spectra "$KVSTAT" analyze "$DUMP" --only spectra -o "$WORKDIR/kvstat-spectra" --timings \
            "${EXTRA[@]}"
        cp "$WORKDIR/kvstat_spectra.log" "$WORKDIR/kvstat_spectra.$i.log"
    fi
    run_timed numpy_spectra "$PYTHON" "$HERE/numpy_analyze.py" "$DUMP" --only spectra \
        --json "$WORKDIR/numpy-spectra.json"
done
echo "load average at end:   $(cut -d' ' -f1-3 /proc/loadavg)"

# stats NAME -> "best median" (seconds) or "- -"
stats() {
    local v=${TIMES[$1]:-}
    if [[ -z $v ]]; then echo "- -"; return; fi
    tr ' ' '\n' <<<"$v" | sed '/^$/d' | sort -g |
        awk '{a[NR] = $1} END {m = (NR % 2) ? a[(NR + 1) / 2] : (a[NR / 2] + a[NR / 2 + 1]) / 2;
                             printf "%.2f %.2f\n", a[1], m}'
}

# The numbers must agree before any ratio means anything.
echo
echo "agreement, full analysis (kvstat stats.json vs numpy JSON):"
AGREE=1
"$PYTHON" "$HERE/compare_results.py" "$WORKDIR/kvstat-full/stats.json" "$WORKDIR/numpy-full.json" || AGREE=0
if [[ $HAVE_ONLY == 1 ]]; then
    echo "agreement, spectra only:"
    "$PYTHON" "$HERE/compare_results.py" "$WORKDIR/kvstat-spectra/stats.json" "$WORKDIR/numpy-spectra.json" ||
        AGREE=0
fi
SHOW=1
if [[ $AGREE == 0 ]]; then SHOW=0; echo "the two sides disagree: no ratio is printed"; fi
if [[ $KERNELS_MATCH == 0 && ${ALLOW_KERNEL_MISMATCH:-0} != 1 ]]; then SHOW=0; fi
MARK=""
if [[ $KERNELS_MATCH == 0 ]]; then MARK=" (different kernels)"; fi

# The fastest full round's --timings: its per-stage times and its eigen stage (a part of the floor).
best_round=$(for ((i = 1; i <= N; i++)); do
    awk -v i="$i" '/timing gram/ {print $6, i}' "$WORKDIR/kvstat_full.$i.log"
done | sort -g -r | head -n 1 | cut -d' ' -f2)
stage() { awk -v s="$2" '$3 == s {print $4}' "$1"; }
EIGEN=$(stage "$WORKDIR/kvstat_full.$best_round.log" eigen)

# The floor: the same BLAS calls and FFTW's best DCTs, timed now, plus kvstat's eigen stage.
read -r LAYERS KINDS LENGTHS < <("$PYTHON" -c '
import json, sys
d = json.load(open(sys.argv[1]))
print(d["layers"], len(d["kinds"]), ",".join(str(n) for n in d["sequence_lengths"]))' "$WORKDIR/numpy-full.json")
CHANNELS=$("$PYTHON" -c '
import json, sys
d = json.load(open(sys.argv[1]))
print(len(d["layers"][0]["key"]["channels"]["max_abs"]))' "$WORKDIR/kvstat-full/stats.json")
FLOOR_ARGS=(--kvstat "$KVSTAT" --layers "$LAYERS" --kinds "$KINDS" --pair-kinds "$KINDS" --channels "$CHANNELS"
    --lengths "$LENGTHS")
if [[ ${FLOOR_FULL:-0} == 1 ]]; then FLOOR_ARGS+=(--full); fi
FLOOR=$("$PYTHON" "$HERE/floor.py" "${FLOOR_ARGS[@]}")
floor_part() { awk -v k="$1" '$1 == k {print $2}' <<<"$FLOOR"; }
FLOOR_TOTAL=$(awk -v a="$(floor_part floor_blas_dct_s)" -v e="$EIGEN" 'BEGIN {printf "%.2f", a + e}')

echo
echo "best of $N wall times (s); median in parentheses; ratio = numpy best / kvstat best"
printf '%-10s %20s %20s %14s\n' "case" "kvstat analyze" "numpy_analyze.py" "numpy/kvstat"
for case in full spectra; do
    read -r kb km < <(stats "kvstat_$case")
    read -r nb nm < <(stats "numpy_$case")
    if [[ $kb == - || $SHOW == 0 ]]; then ratio="-"
    else ratio=$(awk -v n="$nb" -v k="$kb" 'BEGIN {printf "%.2fx", n / k}')$MARK; fi
    printf '%-10s %20s %20s %14s\n' "$case" "$kb ($km)" "$nb ($nm)" "$ratio"
done

echo
echo "floor of the full analysis (kvstat's libopenblas $(floor_part corename), $(floor_part threads) threads):"
printf '  %-34s %8.2f s\n' "SSYRK, every block of every tensor" "$(floor_part ssyrk_s)"
printf '  %-34s %8.2f s\n' "SGEMM, every block of every pair" "$(floor_part sgemm_s)"
printf '  %-34s %8.2f s\n' "eigen (kvstat's eigen stage)" "$EIGEN"
printf '  %-34s %8.2f s   %s\n' "DCT, FFTW's best plan" "$(floor_part dct_s)" "$(floor_part dct_variant)"
printf '  %-34s %8.2f s\n' "floor" "$FLOOR_TOTAL"
read -r kb _ < <(stats kvstat_full)
if [[ $SHOW == 1 ]]; then
    awk -v k="$kb" -v f="$FLOOR_TOTAL" 'BEGIN {printf "kvstat full analysis / floor: %.2fx\n", k / f}'
fi

echo
echo "kvstat stage times (round $best_round, --timings):"
sed -n 's/^kvstat: timing /  /p' "$WORKDIR/kvstat_full.$best_round.log"
syrk=$(awk '$1 == "ssyrk" {print $2}' <<<"$CALIBRATION")
gemm=$(awk '$1 == "sgemm" {print $2}' <<<"$CALIBRATION")
gram=$(awk '/timing gram/ {print $6}' "$WORKDIR/kvstat_full.$best_round.log")
cross=$(awk '/timing cross/ {print $6}' "$WORKDIR/kvstat_full.$best_round.log")
share() { # NAME RATE CALIBRATION ROUTINE
    awk -v n="$1" -v r="$2" -v c="$3" -v b="$4" \
        'BEGIN {printf "%-12s %.1f GFLOP/s = %.0f %% of %s calibration (%.1f)\n", n, r, 100 * r / c, b, c}'
}
share "Gram stage:" "$gram" "$syrk" SSYRK
[[ -z $cross ]] || share "cross stage:" "$cross" "$gemm" SGEMM
[[ $CREATED == 1 && ${KEEP:-0} != 1 ]] || echo "outputs kept in $WORKDIR"
[[ $AGREE == 1 ]] || exit 1

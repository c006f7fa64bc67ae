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
# Threads: neither side is pinned. OPENBLAS_CORETYPE / OPENBLAS_L2_SIZE may be set
# on this machine because Debian's older OpenBLAS (the one kvstat links) needs them;
# they would slow numpy's newer bundled OpenBLAS, so the numpy runs get both unset
# (NUMPY_KEEP_ENV=1 keeps them) and the kernel numpy then uses is printed.
#
# Calibration: before the rounds, Benchmarks/blas_calibration.py measures this
# machine's SSYRK and SGEMM rate on one analyze block (4096 x 1024) through the
# libopenblas kvstat links. The full kvstat runs use --timings, and the table
# ends with the Gram stage (SSYRK + float64 accumulation) and the cross stage
# (SGEMM + accumulation) as a fraction of those rates.
#
# Usage:  Benchmarks/analyze_vs_numpy.sh KVSTAT_BIN DUMP
# Environment: N (3), PYTHON (python3), WORKDIR (default: a new mktemp -d, deleted
# at the end unless KEEP=1), WARM (1), KVSTAT_ARGS (extra arguments for both
# kvstat runs, e.g. "--threads 2"; split on spaces).
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
if ! "$KVSTAT" analyze --help 2>&1 | grep -q -- '--only'; then
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
echo "python:  $("$PYTHON" -c 'import sys, numpy, scipy, h5py; print(sys.version.split()[0], "numpy", numpy.__version__, "scipy", scipy.__version__, "h5py", h5py.__version__)')"
echo "machine: $(nproc) CPUs; OPENBLAS_CORETYPE=${OPENBLAS_CORETYPE-<unset>} OPENBLAS_L2_SIZE=${OPENBLAS_L2_SIZE-<unset>} OPENBLAS_NUM_THREADS=${OPENBLAS_NUM_THREADS-<unset>} OMP_NUM_THREADS=${OMP_NUM_THREADS-<unset>}"
NUMPY_ENV=(env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE)
if [[ ${NUMPY_KEEP_ENV:-0} == 1 ]]; then NUMPY_ENV=(env); fi
echo "numpy BLAS: $("${NUMPY_ENV[@]}" "$PYTHON" -c 'import numpy, threadpoolctl; i = threadpoolctl.threadpool_info()[0]; print(i["internal_api"], i["version"], i["architecture"], i["num_threads"], "threads")' 2>/dev/null || echo unknown)"
echo "load average at start: $(cut -d' ' -f1-3 /proc/loadavg)"
CALIBRATION=$("$PYTHON" "$HERE/blas_calibration.py" --kvstat "$KVSTAT")
echo "calibration (kvstat's libopenblas, GFLOP/s): $(tr '\n' ' ' <<<"$CALIBRATION")"
if [[ ${WARM:-1} == 1 ]]; then cat "$DUMP" >/dev/null; fi

for ((i = 1; i <= N; i++)); do
    echo "round $i/$N"
    rm -rf "$WORKDIR/kvstat-full"
    run_timed kvstat_full "$KVSTAT" analyze "$DUMP" -o "$WORKDIR/kvstat-full" --timings "${EXTRA[@]}"
    cp "$WORKDIR/kvstat_full.log" "$WORKDIR/kvstat_full.$i.log"
    run_timed numpy_full "${NUMPY_ENV[@]}" "$PYTHON" "$HERE/numpy_analyze.py" "$DUMP" --json "$WORKDIR/numpy-full.json"
    if [[ $HAVE_ONLY == 1 ]]; then
        rm -rf "$WORKDIR/kvstat-spectra"
        run_timed kvstat_spectra "$KVSTAT" analyze "$DUMP" --only spectra -o "$WORKDIR/kvstat-spectra" "${EXTRA[@]}"
    fi
    run_timed numpy_spectra "${NUMPY_ENV[@]}" "$PYTHON" "$HERE/numpy_analyze.py" "$DUMP" --only spectra \
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

echo
echo "best of $N wall times (s); median in parentheses; ratio = numpy best / kvstat best"
printf '%-10s %20s %20s %14s\n' "case" "kvstat analyze" "numpy_analyze.py" "numpy/kvstat"
for case in full spectra; do
    read -r kb km < <(stats "kvstat_$case")
    read -r nb nm < <(stats "numpy_$case")
    if [[ $kb == - ]]; then ratio="-"
    else ratio=$(awk -v n="$nb" -v k="$kb" 'BEGIN {printf "%.2fx", n / k}'); fi
    printf '%-10s %20s %20s %14s\n' "$case" "$kb ($km)" "$nb ($nm)" "$ratio"
done

# BLAS efficiency of kvstat's Gram stages, from the fastest full run's --timings.
best_round=$(for ((i = 1; i <= N; i++)); do
    awk -v i="$i" '/timing gram/ {print $6, i}' "$WORKDIR/kvstat_full.$i.log"; done | sort -g -r | head -n 1 | cut -d' ' -f2)
if [[ -n $best_round ]]; then
    echo
    echo "kvstat stage times (round $best_round, --timings):"
    sed -n 's/^kvstat: timing /  /p' "$WORKDIR/kvstat_full.$best_round.log"
    syrk=$(awk '$1 == "ssyrk" {print $2}' <<<"$CALIBRATION")
    gemm=$(awk '$1 == "sgemm" {print $2}' <<<"$CALIBRATION")
    gram=$(awk '/timing gram/ {print $6}' "$WORKDIR/kvstat_full.$best_round.log")
    cross=$(awk '/timing cross/ {print $6}' "$WORKDIR/kvstat_full.$best_round.log")
    awk -v g="$gram" -v s="$syrk" 'BEGIN {printf "Gram stage:  %.1f GFLOP/s = %.0f %% of SSYRK calibration (%.1f)\n", g, 100 * g / s, s}'
    [[ -z $cross ]] || awk -v c="$cross" -v s="$gemm" 'BEGIN {printf "cross stage: %.1f GFLOP/s = %.0f %% of SGEMM calibration (%.1f)\n", c, 100 * c / s, s}'
fi
[[ $CREATED == 1 && ${KEEP:-0} != 1 ]] || echo "outputs kept in $WORKDIR"

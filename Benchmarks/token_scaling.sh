#!/usr/bin/env bash
# Benchmarks/token_scaling.sh: how `kvstat analyze` time and memory grow with the sequence length.
#
# Generates 4-layer Llama-shaped dumps (8 KV heads x 128, float16) of 8k, 16k, 32k, 64k and 128k tokens in
# WORKDIR (0.125 ... 2 GiB; reused when they exist), runs `kvstat analyze --timings` on each (page cache warm),
# and prints wall time, time per token, peak RSS, and the DCT stage per token. Everything but the DCT is linear
# in tokens; the DCT along tokens costs O(T log T), so time per token may grow at most like log2 T. The last
# column divides the growth of time per token since 8k by the growth of log2 T since 8k: <= 1.0 means the run
# grows no faster than the DCT's log T.
#
# Usage:  Benchmarks/token_scaling.sh KVSTAT_BIN
# Environment: PYTHON (python3), WORKDIR (/tmp/kvstat-scaling; dumps kept for reruns), TOKENS (the list,
# default "8192 16384 32768 65536 131072"). Needs GNU time (apt-get install -y time).
set -euo pipefail

if [[ $# -ne 1 || $1 == -h || $1 == --help ]]; then
    sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'
    exit 2
fi
KVSTAT=$1
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
PYTHON=${PYTHON:-python3}
WORKDIR=${WORKDIR:-/tmp/kvstat-scaling}
read -r -a LIST <<<"${TOKENS:-8192 16384 32768 65536 131072}"
[[ -x /usr/bin/time ]] || { echo "error: GNU time not found (apt-get install -y time)" >&2; exit 2; }
mkdir -p "$WORKDIR"

echo "machine: $(nproc) CPUs, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs)"
printf '%8s %9s %12s %10s %12s %14s\n' tokens "wall s" "µs/token" "RSS MiB" "dct µs/tok" "growth/log2T"
first_per_token=""
for t in "${LIST[@]}"; do
    dump="$WORKDIR/scaling-$t.h5"
    if [[ ! -f $dump ]]; then
        "$PYTHON" "$HERE/generate_llama_dump.py" --tokens "$t" --layers 4 --out "$dump" >"$WORKDIR/gen-$t.log" 2>&1
    fi
    cat "$dump" >/dev/null
    out="$WORKDIR/out-$t"
    rm -rf "$out"
    t0=$EPOCHREALTIME
    /usr/bin/time -f '%M' -o "$WORKDIR/rss-$t" "$KVSTAT" analyze "$dump" -o "$out" --timings \
        >"$WORKDIR/log-$t" 2>&1
    t1=$EPOCHREALTIME
    rss=$(tail -n 1 "$WORKDIR/rss-$t")
    dct=$(awk '$3 == "dct" {print $4}' "$WORKDIR/log-$t")
    wall=$(awk -v a="$t0" -v b="$t1" 'BEGIN {printf "%.3f", b - a}')
    per=$(awk -v w="$wall" -v t="$t" 'BEGIN {printf "%.3f", 1e6 * w / t}')
    if [[ -z $first_per_token ]]; then first_per_token=$per; first_tokens=$t; fi
    growth=$(awk -v p="$per" -v p0="$first_per_token" -v t="$t" -v t0="$first_tokens" \
        'BEGIN {printf "%.2f", (p / p0) / (log(t) / log(t0))}')
    printf '%8d %9.2f %12.3f %10.0f %12.3f %14s\n' "$t" "$wall" "$per" "$((rss / 1024))" \
        "$(awk -v d="${dct:-0}" -v t="$t" 'BEGIN {printf "%.3f", 1e6 * d / t}')" "$growth"
done

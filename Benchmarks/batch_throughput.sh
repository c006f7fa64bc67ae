#!/usr/bin/env bash
# Benchmarks/batch_throughput.sh KVSTAT_BIN [WORKDIR]: `kvstat batch` throughput and per-dump overhead.
#
# Inputs: SMALL (default 200) real-model dumps — the bundled MiniLM sample split into single-sequence dumps
# (Tests/Fixtures/split_sample.py, tagged so every file has its own content id) — and LARGE (default 4)
# Llama-shaped dumps from generate_llama_dump.py (LARGE_TOKENS 4096 tokens, LARGE_LAYERS 8 layers).
# Runs, each on a fresh output folder:
#   1. batch --jobs 1 over the small dumps;  2. batch --jobs 2 over the small dumps;
#   3. the same work without the batch: a plain loop `kvstat analyze --save-state` over the small dumps,
#      then `kvstat merge` of their states (the corpus);
#   4. batch --jobs 1 over the large dumps.
# Prints wall times, the jobs-2 ÷ jobs-1 throughput ratio, and the batch's overhead over the plain loop
# ((batch − loop) ÷ loop): hashing, the ledger, scheduling and the corpus merge.
set -euo pipefail
kvstat=$(realpath "$1")
work=${2:-$(mktemp -d /tmp/kvstat-batch-bench.XXXXXX)}
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo=$(cd "$here/.." && pwd)
small=${SMALL:-200} large=${LARGE:-4}
mkdir -p "$work/small" "$work/large"
tags=$(( (small + 2) / 3 ))
if [[ $(find "$work/small" -name '*.h5' | wc -l) -lt $small ]]; then
    for ((t = 0; t < tags; t++)); do python3 "$repo/Tests/Fixtures/split_sample.py" "$repo/notebooks-data/minilm-sample.h5" "$work/small/t$t" "tag-$t"; done
fi
find "$work/small" -name '*.h5' | sort | head -n "$small" > "$work/small.txt"
for ((i = 0; i < large; i++)); do
    [[ -f $work/large/l$i.h5 ]] || python3 "$here/generate_llama_dump.py" --tokens "${LARGE_TOKENS:-4096}" --layers "${LARGE_LAYERS:-8}" --seed "$i" --out "$work/large/l$i.h5" >/dev/null
done
timed() { local t0=$EPOCHREALTIME; "$@" >/dev/null 2>&1 || true; awk -v a="$t0" -v b="$EPOCHREALTIME" 'BEGIN {printf "%.2f", b - a}'; }
echo "machine: $(nproc) CPUs; $(wc -l < "$work/small.txt") small dumps, $large large dumps; kvstat $kvstat"
rm -rf "$work"/out-*
j1=$(timed "$kvstat" batch "$work/small.txt" -o "$work/out-j1" --jobs 1 --quiet)
j2=$(timed "$kvstat" batch "$work/small.txt" -o "$work/out-j2" --jobs 2 --quiet)
loop_start=$EPOCHREALTIME
i=0
while read -r dump; do
    "$kvstat" analyze "$dump" -o "$work/out-loop/$i" --save-state "$work/out-loop/$i/state.h5" --quiet --threads 2
    i=$((i + 1))
done < "$work/small.txt"
"$kvstat" merge "$work"/out-loop/*/state.h5 -o "$work/out-loop/corpus" --quiet
loop=$(awk -v a="$loop_start" -v b="$EPOCHREALTIME" 'BEGIN {printf "%.2f", b - a}')
big=$(timed "$kvstat" batch "$work/large" -o "$work/out-large" --jobs 1 --quiet)
rerun=$(timed "$kvstat" batch "$work/small.txt" -o "$work/out-j1" --jobs 1 --quiet)
echo "small, batch --jobs 1:        $j1 s"
echo "small, batch --jobs 2:        $j2 s   (throughput ratio jobs2/jobs1: $(awk -v a="$j1" -v b="$j2" 'BEGIN {printf "%.2f", a / b}'))"
echo "small, analyze loop + merge:  $loop s   (batch overhead: $(awk -v a="$j1" -v b="$loop" 'BEGIN {printf "%.1f %%", 100 * (a - b) / b}'))"
echo "small, rerun (all skipped):   $rerun s"
echo "large, batch --jobs 1:        $big s"

#!/usr/bin/env bash
# The `dct` stage of `kvstat analyze --only frequency --timings` over the time FFTW's best plans take for the
# same transforms (Benchmarks/dct_fftw_floor.c, compiled here with the toolchain's clang -O2, as SwiftPM
# compiles C in release builds). Not a test: run it on an idle machine.
#
#   Benchmarks/dct_vs_fftw.sh [KVSTAT] DUMP          (N=3 rounds; best of each side)
#   Benchmarks/dct_vs_fftw.sh .build/release/kvstat /tmp/llama32k.h5
#
# The dump's key and value tensors are one window each per sequence (no --dct-window); with several sequences
# the floor is computed for the longest and scaled by tokens, which is approximate.
# Prints: the CPU; FFTW r2c (FFTW_MEASURE, contiguous signals: the FFT the stage is built on) and REDFT10
# (FFTW_MEASURE, the DCT-II itself) per tensor, on all cores; kvstat's kernels alone in C; the stage per
# tensor and its ratios.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
if [[ $# -eq 1 ]]; then kvstat="$here/../.build/release/kvstat"; dump=$1; else kvstat=$1; dump=$2; fi
rounds=${N:-3}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

clang=/opt/swift/usr/bin/clang
[[ -x $clang ]] || clang=$(command -v clang || command -v cc)
"$clang" -O2 -I"$here/../Sources/CKernels/include" -o "$work/floor" "$here/dct_fftw_floor.c" -lfftw3f -lm -lpthread

read -r tokens channels tensors total_tokens < <("$kvstat" inspect "$dump" --json | python3 -c '
import json, sys
d = json.load(sys.stdin)
kinds = [k for k in d["kinds"] if k in ("key", "value")]
print(max(d["sequence_lengths"]), d["kv_heads"] * d["head_dim"], len(d["layer_numbers"]) * len(kinds),
      sum(d["sequence_lengths"]))')
echo "cpu: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//'), $(nproc) cores"
echo "dump: $dump: $tensors key/value tensors, $channels channels, sequences of up to $tokens tokens"

"$work/floor" -n "$tokens" -c "$channels" -r 5 | tee "$work/floor.txt"
r2c=$(awk '/^fftw_r2c_s/ {print $2}' "$work/floor.txt")
redft=$(awk '/^fftw_redft10_s/ {print $2}' "$work/floor.txt")

best=""
for _ in $(seq "$rounds"); do
    "$kvstat" analyze "$dump" --only frequency --timings --quiet --force -o "$work/out" 2>"$work/timings.txt"
    t=$(awk '$2 == "timing" && $3 == "dct" {print $4}' "$work/timings.txt")
    if [[ -z $best ]] || awk -v a="$t" -v b="$best" 'BEGIN {exit !(a < b)}'; then best=$t; fi
done
python3 - "$best" "$tensors" "$r2c" "$redft" "$total_tokens" "$tokens" <<'EOF'
import sys
stage, tensors, r2c, redft, total, longest = map(float, sys.argv[1:])
scale = total / longest  # windows of one tensor, in units of the longest
per_tensor = stage / tensors
print(f"kvstat dct stage: {stage:.3f} s for {int(tensors)} tensors = {per_tensor:.4f} s per tensor "
      "(best of the rounds)")
print(f"ratio to FFTW r2c (MEASURE, all cores):     {per_tensor / (r2c * scale):.2f}")
print(f"ratio to FFTW REDFT10 (MEASURE, all cores): {per_tensor / (redft * scale):.2f}")
EOF

#!/bin/sh
# Builds and runs the micro-benchmark of the outliers-stage kernels (Benchmarks/moment_kernels_bench.c) with
# the flags SwiftPM's release build gives C targets (clang -O2). Prints G values/s on one 4096 × 1024 block.
set -eu
root=$(cd "$(dirname "$0")/.." && pwd)
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
"${CC:-clang}" -O2 -pthread -I "$root/Sources/CKernels/include" \
    "$root/Sources/CKernels/MomentKernels.c" "$root/Benchmarks/moment_kernels_bench.c" -lm -o "$out/bench"
"$out/bench"

#!/usr/bin/env bash
# The README's first command: installs what is missing, builds kvstat (release), and analyses the two bundled
# real samples into kvstat-out/ (stats.json, CSVs, summary.md and report.html): a dump of the encoder
# sentence-transformers/all-MiniLM-L6-v2, and one of the decoder SmolLM2-135M-Instruct (RoPE, GQA, keys before and
# after RoPE).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
swift build -c release --product kvstat 2>&1 | tail -n 1
bin=$(swift build -c release --show-bin-path)/kvstat
"$bin" inspect notebooks-data/minilm-sample.h5
# MiniLM is an encoder: its queries see every token (--no-causal) when attention-mass sinks are measured.
"$bin" analyze notebooks-data/minilm-sample.h5 -o kvstat-out/minilm-sample --no-causal
echo
cat kvstat-out/minilm-sample/summary.md
echo
"$bin" inspect notebooks-data/smollm2-sample.h5
"$bin" analyze notebooks-data/smollm2-sample.h5 -o kvstat-out/smollm2-sample
echo
cat kvstat-out/smollm2-sample/summary.md
echo "open kvstat-out/minilm-sample/report.html and kvstat-out/smollm2-sample/report.html for the plots"


#!/usr/bin/env bash
# The README's first command: installs what is missing, builds kvstat (release), and analyses the bundled
# real sample (a dump of sentence-transformers/all-MiniLM-L6-v2) into kvstat-out/ (stats.json, CSVs,
# summary.md and report.html).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
swift build -c release --product kvstat 2>&1 | tail -n 1
bin=$(swift build -c release --show-bin-path)/kvstat
"$bin" inspect notebooks-data/minilm-sample.h5
"$bin" analyze notebooks-data/minilm-sample.h5 -o kvstat-out/minilm-sample
echo
cat kvstat-out/minilm-sample/summary.md
echo "open kvstat-out/minilm-sample/report.html for the plots"


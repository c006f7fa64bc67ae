#!/usr/bin/env bash
# The README's second command, and all CI runs: installs what is missing, then runs every test —
# the Swift suites (unit and end-to-end against the built binary), the fault corpus and fuzz pass, and the
# Python tools' tests.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
swift build --build-tests
# Tests' `.timeLimit`s are hang guards of 10 minutes: Swift Testing starts a test's clock before one of the
# two cooperative threads (2 cores) is free to run it, and long tests beside it have kept short ones waiting for
# almost 3 minutes. Tests that must be quick measure their own body's time.
swift test --skip-build
# The fault corpus and the mutation fuzz pass against the built binary (Tests/Faults/README.md); each exits
# non-zero on any failed case, which fails this script.
python3 Tests/Faults/run_corpus.py
python3 Tests/Faults/fuzz.py
python3 Tests/Fixtures/check_fixtures.py
# -rs lists every skipped test with its reason: the torch/transformers cross-checks skip when torch is not
# installed in the system Python.
python3 -m pytest -q -rs tools
# The same tests with real torch + transformers (4.x and 5.x) in a venv, where nothing may skip: kvdump.py end
# to end on tiny random models. PyPI's torch wheel brings 5.6 GB of CUDA packages; measured on this workplace's
# registry mirror, the first run took 143 s (about 95 s installing, venv 5.9 GB), well inside CI's 90 minutes.
scripts/check-dumper.sh

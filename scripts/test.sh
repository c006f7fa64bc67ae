#!/usr/bin/env bash
# The README's second command, and all CI runs: installs what is missing, then runs every test —
# the Swift suites (unit and end-to-end against the built binary) and the Python tools' tests.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
swift build --build-tests
swift test --skip-build
python3 Tests/Fixtures/check_fixtures.py
python3 -m pytest -q tools

#!/usr/bin/env bash
# scripts/screenshot.sh REPORT.html OUT.png [WIDTH HEIGHT]: renders a kvstat report in headless Chromium
# (Debian's `chromium`) to a PNG, and writes the rendered DOM beside it (OUT.png.dom.html).
# Used by the report test and to make docs/report-sample.png.
set -euo pipefail
html=$(realpath "$1")
png=$2
width=${3:-1280}
height=${4:-5600}
browser=$(command -v chromium || command -v chromium-browser || true)
if [[ -z $browser ]]; then
    echo "screenshot: no chromium on PATH (scripts/setup.sh installs Debian's chromium)" >&2
    exit 3
fi
args=(--headless --no-sandbox --disable-gpu --hide-scrollbars --mute-audio --no-first-run --disable-dev-shm-usage)
timeout 120 "$browser" "${args[@]}" --window-size="$width,$height" --screenshot="$png" "file://$html" >/dev/null 2>&1
# The same window size as the picture, so the dumped layout (and any script's measurements) match it.
timeout 120 "$browser" "${args[@]}" --window-size="$width,$height" --dump-dom "file://$html" \
  >"$png.dom.html" 2>/dev/null
[[ -s $png && -s $png.dom.html ]]

#!/usr/bin/env python3
"""Checks a headless-Chromium rendering of report.html: the PNG is not blank, and in the rendered DOM every
expected section exists and holds at least one SVG plot (or, for SECTION:table, a table).
Usage: check_report_png.py OUT.png SECTION[:table]...
Prints one line per check; exits 1 on the first failure."""
import re
import sys

from PIL import Image

png, sections = sys.argv[1], sys.argv[2:]
image = Image.open(png).convert("RGB")
width, height = image.size
small = image.resize((width // 8, height // 8))
raw = small.tobytes()
pixels = [raw[i:i + 3] for i in range(0, len(raw), 3)]
non_white = sum(1 for p in pixels if sum(p) < 720) / len(pixels)
colours = len(set(pixels))
print(f"png {width}x{height}: {non_white:.1%} non-white, {colours} colours")
if non_white < 0.05 or colours < 50:
    sys.exit("blank-looking screenshot")
dom = open(png + ".dom.html", encoding="utf-8").read()
for spec in sections:
    section, _, want = spec.partition(":")
    want = want or "svg"
    m = re.search(rf'<section id="{section}">(.*?)</section>', dom, re.S)
    if not m:
        sys.exit(f"section {section}: missing from the rendered page")
    found = m.group(1).count("<" + want)
    print(f"section {section}: {found} {want} elements")
    if found == 0:
        sys.exit(f"section {section}: no {want}")
print("ok")

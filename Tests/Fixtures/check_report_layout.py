#!/usr/bin/env python3
"""Checks that every chart of a kvstat report.html reads, using headless Chromium's own layout and screenshot.

Usage: check_report_layout.py REPORT.html WORKDIR [--crop SECTION OUT.png]

A copy of the page gets a small inline script that, once Chromium has laid it out, writes into the DOM each
chart's text boxes (getBoundingClientRect), its plot area (`rect.plot`) and the extent of its data (`g.data`).
scripts/screenshot.sh then renders the copy to a PNG and dumps the DOM. Checks, per chart (<svg>):
  * labels: no two text boxes overlap (by more than 1 px in both directions) and none leaves the SVG;
  * extent (line charts): the data's bounding box spans >= 50 % of the plot width and >= 20 % of its height,
    unless the data are a single point or a flat line (then the drawn extent is what there is);
  * cells (heatmaps): the drawn cells cover >= 50 % of the grid (a diagonal band on a blank grid fails);
  * pixels: in the screenshot, the plot area holds more than one colour (something is drawn there).
With --crop, the section's box is cut from the screenshot and saved (the docs' picture).
Prints one line per chart with a problem and a summary; exits 1 if any check failed."""
import json
import os
import re
import subprocess
import sys

from PIL import Image

SCRIPT = r"""<script>
(function () {
  const box = (r) => ({x: r.left + scrollX, y: r.top + scrollY, w: r.width, h: r.height});
  const charts = [...document.querySelectorAll('svg')].map((svg) => {
    const plot = svg.querySelector('rect.plot');
    const data = svg.querySelector('g.data');
    let cells = 0, points = 0;
    if (data) {
      for (const e of data.children) {
        if (e.tagName === 'rect') cells += e.width.baseVal.value * e.height.baseVal.value;
        if (e.tagName === 'circle') points += 1;
      }
    }
    const dataBox = data && data.children.length ? data.getBBox() : null;
    return {
      section: (svg.closest('section') || {}).id || '', label: svg.getAttribute('aria-label'),
      kind: svg.getAttribute('data-chart') || '', svg: box(svg.getBoundingClientRect()),
      plot: plot ? box(plot.getBoundingClientRect()) : null,
      plotUser: plot ? {w: plot.width.baseVal.value, h: plot.height.baseVal.value} : null,
      data: dataBox ? {x: dataBox.x, y: dataBox.y, w: dataBox.width, h: dataBox.height} : null,
      cells: cells, points: points,
      texts: [...svg.querySelectorAll('text')].map((t) => Object.assign(box(t.getBoundingClientRect()),
        {s: t.textContent}))
    };
  });
  const sections = {};
  for (const s of document.querySelectorAll('section')) sections[s.id] = box(s.getBoundingClientRect());
  const out = document.createElement('pre');
  out.id = 'kvstat-layout';
  out.style.display = 'none';
  out.textContent = JSON.stringify({height: document.documentElement.scrollHeight, charts, sections});
  document.body.appendChild(out);
})();
</script>"""


def overlap(a, b, tolerance=1.0):
    dx = min(a["x"] + a["w"], b["x"] + b["w"]) - max(a["x"], b["x"])
    dy = min(a["y"] + a["h"], b["y"] + b["h"]) - max(a["y"], b["y"])
    return dx > tolerance and dy > tolerance


def render(page, png, height):
    script = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "scripts", "screenshot.sh")
    subprocess.run([script, page, png, "1280", str(height)], check=True)
    dom = open(png + ".dom.html", encoding="utf-8").read()
    m = re.search(r'<pre id="kvstat-layout"[^>]*>(.*?)</pre>', dom, re.S)
    if not m:
        sys.exit("the layout script did not run (no #kvstat-layout in the dumped DOM)")
    text = m.group(1).replace("&quot;", '"').replace("&lt;", "<").replace("&gt;", ">").replace("&amp;", "&")
    return json.loads(text)


def main():
    html, work = sys.argv[1], sys.argv[2]
    crop = sys.argv[sys.argv.index("--crop") + 1:sys.argv.index("--crop") + 3] if "--crop" in sys.argv else None
    os.makedirs(work, exist_ok=True)
    source = open(html, encoding="utf-8").read()
    page = os.path.join(work, "layout.html")
    with open(page, "w", encoding="utf-8") as f:
        f.write(source.replace("</body>", SCRIPT + "</body>"))
    png = os.path.join(work, "layout.png")
    layout = render(page, png, 3000)
    if layout["height"] > 3000:
        layout = render(page, png, layout["height"])
    image = Image.open(png).convert("RGB")
    problems = []
    for i, c in enumerate(layout["charts"]):
        name = f"chart {i} ({c['section']}: {c['label']})"
        texts = c["texts"]
        for a in range(len(texts)):
            t = texts[a]
            s = c["svg"]
            if (t["x"] < s["x"] - 1 or t["y"] < s["y"] - 1 or t["x"] + t["w"] > s["x"] + s["w"] + 1
                    or t["y"] + t["h"] > s["y"] + s["h"] + 1):
                problems.append(f"{name}: label {t['s']!r} leaves the chart")
            for b in range(a + 1, len(texts)):
                if overlap(t, texts[b]):
                    problems.append(f"{name}: labels {t['s']!r} and {texts[b]['s']!r} overlap")
        plot, data, user = c["plot"], c["data"], c["plotUser"]
        if plot is None or data is None:
            if not any(t["s"] == "no data" for t in texts):
                problems.append(f"{name}: no plot area or data group")
            continue
        if c["kind"] == "heatmap":
            covered = c["cells"] / max(user["w"] * user["h"], 1)
            if covered < 0.5:
                problems.append(f"{name}: cells cover {covered:.0%} of the grid")
        else:
            fw, fh = data["w"] / max(user["w"], 1), data["h"] / max(user["h"], 1)
            flat = data["h"] < 4 or c["points"] == 1
            if fw < 0.5 and c["points"] != 1:
                problems.append(f"{name}: data span {fw:.0%} of the plot width")
            if fh < 0.2 and not flat:
                problems.append(f"{name}: data span {fh:.0%} of the plot height")
        x0, y0 = int(plot["x"]) + 2, int(plot["y"]) + 2
        x1, y1 = int(plot["x"] + plot["w"]) - 2, int(plot["y"] + plot["h"]) - 2
        if y1 > image.size[1] or x1 > image.size[0]:
            problems.append(f"{name}: plot area outside the screenshot")
            continue
        colours = image.crop((x0, y0, x1, y1)).getcolors(1 << 20) or []
        if len(colours) < 2:
            problems.append(f"{name}: the screenshot's plot area is one colour")
    for p in problems:
        print(p)
    print(f"{len(layout['charts'])} charts, {len(problems)} problems, page height {layout['height']}")
    if crop:
        section, out = crop
        b = layout["sections"].get(section)
        if b is None:
            sys.exit(f"no section {section}")
        image.crop((int(b["x"]), int(b["y"]), int(b["x"] + b["w"]), int(b["y"] + b["h"]))).save(out, optimize=True)
    sys.exit(1 if problems else 0)


main()

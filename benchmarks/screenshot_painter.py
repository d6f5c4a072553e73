"""A screenshot of the painter (docs/img/painter.png), taken by headless Chromium as the end-to-end test drives it.

    python benchmarks/screenshot_painter.py [--model src/semsynth/assets/scgan-synthetic-faces] [--out docs/img/painter.png]
    python benchmarks/screenshot_painter.py --model src/semsynth/assets/scgan-synthetic-landscapes \
        --out docs/img/painter-landscapes.png

Starts ``semsynth serve --model DIR --port 0``, opens the page in Debian's ``chromium`` (through the ``playwright``
package with ``executable_path``; ``--chromium`` to point elsewhere), loads one layout of the model's built-in world
(synthetic faces or synthetic landscapes, 256x256, class ids) with "Load label PNG", paints a stroke (hair on a
face, a tree in a landscape), marks a region and re-samples it, then writes the screenshot as a 256-colour PNG
(small enough for the repository).
"""

from __future__ import annotations

import argparse
import io
import json
import re
import shutil
import subprocess
import sys
import tempfile
import threading
from pathlib import Path

import numpy as np
from PIL import Image

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))

SETTLED_JS = """() => {
  const p = document.getElementById("photo"), l = document.getElementById("layout");
  return p.dataset.state === "ready" && p.dataset.version === l.dataset.version && p.complete;
}"""


def _faces():
    from semsynth.data.synthetic_faces import render_face

    return render_face


def _landscapes():
    from semsynth.data.synthetic_landscapes import render_landscape

    return render_landscape


# world: (its renderer, the class painted, the stroke and the re-sampled region in fractions of the canvas, the
# default layout: one whose region is sky and whose stroke lands on grass)
SCENES = {
    "synthetic-faces": (_faces, "hair", [(0.3, 0.35), (0.27, 0.55), (0.25, 0.75)],  # longer hair on the left
                        [(0.62, 0.62), (0.8, 0.62), (0.8, 0.75), (0.62, 0.75)], 4),
    "synthetic-landscapes": (_landscapes, "tree", [(0.15, 0.45), (0.15, 0.6), (0.2, 0.6), (0.2, 0.45)],  # a tree
                             [(0.6, 0.15), (0.85, 0.15), (0.85, 0.3), (0.6, 0.3)], 22),  # new clouds in the sky
}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", type=Path, default=REPO / "src/semsynth/assets/scgan-synthetic-faces")
    ap.add_argument("--out", type=Path, default=REPO / "docs/img/painter.png")
    ap.add_argument("--chromium", default=shutil.which("chromium") or "/usr/bin/chromium")
    ap.add_argument("--seed", type=int, default=None,
                    help="which synthetic face or landscape to load (default: face 4, landscape 22)")
    args = ap.parse_args()
    from playwright.sync_api import sync_playwright

    world = json.loads((args.model / "config.json").read_text()).get("data", {}).get("name", "synthetic-faces")
    if world not in SCENES:
        raise SystemExit(f"--model {args.model}: a model of {world!r}; this script paints on "
                         f"{' or '.join(SCENES)} layouts")
    render, stroke_class, stroke, region, seed = SCENES[world]
    seed = args.seed if args.seed is not None else seed

    proc = subprocess.Popen([sys.executable, "-m", "semsynth", "serve", "--model", str(args.model), "--port", "0",
                             "--threads", "1"], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    try:
        url = None
        for line in proc.stdout:
            m = re.search(rb"painter is at (http://\S+?)/ ", line)
            if m:
                url = m.group(1).decode()
                break
        if url is None:
            raise SystemExit("semsynth serve did not start")
        threading.Thread(target=proc.stdout.read, daemon=True).start()
        with tempfile.TemporaryDirectory() as tmp, sync_playwright() as p:
            _, label = render()(np.random.default_rng(seed), 256)
            layout = Path(tmp) / "layout.png"
            Image.fromarray(label).save(layout)
            browser = p.chromium.launch(executable_path=args.chromium, headless=True, args=["--no-sandbox"])
            page = browser.new_page(viewport={"width": 1240, "height": 600})
            page.goto(url + "/")
            page.wait_for_function(SETTLED_JS, timeout=60_000)
            page.set_input_files("#label-file", str(layout))
            page.wait_for_function(SETTLED_JS, timeout=60_000)
            box = page.locator("#overlay").bounding_box()

            def drag(points):
                page.mouse.move(box["x"] + points[0][0] * box["width"], box["y"] + points[0][1] * box["height"])
                page.mouse.down()
                for fx, fy in points[1:]:
                    page.mouse.move(box["x"] + fx * box["width"], box["y"] + fy * box["height"], steps=8)
                page.mouse.up()

            cls = page.evaluate(f"() => S.classes.classes.findIndex((c) => c.name === '{stroke_class}')")
            page.click(f"#palette button[data-class='{cls}']")
            page.click("#sizes button[data-size='16']")
            drag(stroke)
            page.click("#region-tool")
            page.click("#sizes button[data-size='32']")
            drag(region)
            page.click("#resample")
            page.wait_for_function(SETTLED_JS, timeout=60_000)
            page.mouse.move(0, 0)
            png = page.screenshot(full_page=True)
            browser.close()
    finally:
        proc.terminate()
        proc.wait(30)
    img = Image.open(io.BytesIO(png)).convert("RGB").quantize(256, method=Image.Quantize.MEDIANCUT)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    img.save(args.out, optimize=True)
    print(f"wrote {args.out} ({img.width}x{img.height}, {args.out.stat().st_size / 1024:.0f} KB)")


if __name__ == "__main__":
    main()

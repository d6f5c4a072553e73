"""The painter in a real headless Chromium (Debian's ``chromium``, driven by the ``playwright`` package through
``executable_path``: ``playwright install`` is never run, it would download a browser) against a real
``semsynth serve`` process (conftest.py's ``live_server``, tiny models).

The test paints a stroke of one class and sees the photo change where the stroke is (and not far from it), undoes
it (the layout and the photo come back exactly), redoes it, marks a region and re-samples it with the OASIS model:
pixels far from the region change less than those inside. It also checks that the page asks nothing of any other
host, logs no error, and that a long stroke sends few requests (debounced) with the last one winning.
"""

from __future__ import annotations

import base64
import io
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from tests.serve.conftest import face_layout

pytestmark = pytest.mark.slow

CHROMIUM_CANDIDATES = ("chromium", "chromium-browser")


def chromium_path() -> str | None:
    env = os.environ.get("SEMSYNTH_CHROMIUM")
    if env:
        return env if Path(env).is_file() else None
    for name in CHROMIUM_CANDIDATES:
        found = shutil.which(name)
        if found:
            return found
    return None


# the pixels of an <img> or a <canvas>, as a PNG data URL (lossless)
PIXELS_JS = """(sel) => {
  const el = document.querySelector(sel);
  let c = el;
  if (el.tagName === "IMG") {
    c = document.createElement("canvas");
    c.width = el.naturalWidth;
    c.height = el.naturalHeight;
    c.getContext("2d").drawImage(el, 0, 0);
  }
  return c.toDataURL("image/png");
}"""

SETTLED_JS = """() => {
  const p = document.getElementById("photo"), l = document.getElementById("layout");
  return p.dataset.state === "ready" && p.dataset.version === l.dataset.version && p.complete;
}"""


def live_example(url: str, index: int) -> bytes:
    """``GET /example?index=`` of the live server (its default model): a PNG of class ids."""
    import urllib.request

    with urllib.request.urlopen(f"{url}/example?index={index}", timeout=30) as r:
        return r.read()


def pixels(page, selector: str) -> np.ndarray:
    url = page.evaluate(PIXELS_JS, selector)
    png = base64.b64decode(url.split(",", 1)[1])
    return np.asarray(Image.open(io.BytesIO(png)).convert("RGBA"), np.int16)


def settle(page) -> np.ndarray:
    """Wait until the photo shows the current layout; its RGB pixels."""
    page.wait_for_function(SETTLED_JS, timeout=30_000)
    return pixels(page, "#photo")[..., :3]


def stroke(page, points: list[tuple[float, float]], steps: int = 10) -> None:
    """Drag the mouse over the layout through ``points`` (fractions of its width and height)."""
    box = page.locator("#overlay").bounding_box()
    xy = [(box["x"] + fx * box["width"], box["y"] + fy * box["height"]) for fx, fy in points]
    page.mouse.move(*xy[0])
    page.mouse.down()
    for p in xy[1:]:
        page.mouse.move(*p, steps=steps)
    page.mouse.up()


def down(a: np.ndarray, size: int = 64) -> np.ndarray:
    """A canvas-size map at the model's resolution (nearest, as the server resizes)."""
    step = a.shape[0] // size
    return a[step // 2 :: step, step // 2 :: step][:size, :size]


@pytest.fixture(scope="module")
def browser():
    exe = chromium_path()
    if exe is None:
        pytest.skip("needs Debian's chromium for the end-to-end test of the painter: `apt-get install chromium` "
                    "(CI's .ci/run installs it), or point SEMSYNTH_CHROMIUM at a Chromium binary")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=exe, headless=True, args=["--no-sandbox"])
        yield b
        b.close()


def test_paint_undo_and_resample_in_the_browser(browser, live_server):
    page = browser.new_page(viewport={"width": 1300, "height": 800})
    requests, errors = [], []
    page.on("request", lambda r: requests.append(r.url))
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.goto(live_server.url + "/")
    settle(page)
    assert page.locator("#model option").all_inner_texts() == ["faces (64x64)", "oasis (64x64)"]
    assert page.locator("#style-box").is_visible()  # the default model has a style encoder
    # a model of a built-in world starts from its validation layout 0 (GET /example), in its own colours
    assert page.locator("#status").inner_text() == "loaded example layout 0 (256x256)"
    palette = np.array(page.evaluate("() => S.classes.classes.map((c) => c.colour)"))
    example0 = np.asarray(Image.open(io.BytesIO(live_example(live_server.url, 0))), np.int64)
    start = pixels(page, "#layout")
    assert np.array_equal(start[..., :3], palette[example0]) and len(np.unique(example0)) > 5
    page.click("#example")  # the next example, an undo step
    page.wait_for_function("() => document.getElementById('status').textContent.startsWith('loaded example "
                           "layout 1')", timeout=30_000)
    assert not np.array_equal(pixels(page, "#layout"), start)
    page.click("#undo")
    assert np.array_equal(pixels(page, "#layout"), start)
    settle(page)

    page.select_option("#model", "oasis")
    page.wait_for_function("() => document.getElementById('model-info').textContent.startsWith('oasis')")
    settle(page)
    page.click("#clear")  # paint on the background class from here on
    before = settle(page)
    layout0 = pixels(page, "#layout")
    assert layout0.shape[:2] == (256, 256)  # the 64x64 model on a canvas 4 times as large
    assert not page.locator("#style-box").is_visible()  # OASIS takes no style image
    assert "generated in" in page.locator("#timing").inner_text()

    # 1. a horizontal stroke of "tree" (class 2) across the middle, 16 canvas pixels wide
    page.click("#palette button[data-class='2']")
    page.click("#sizes button[data-size='16']")
    n_before = sum("/generate" in u for u in requests)
    stroke(page, [(0.1, 0.5), (0.5, 0.5), (0.9, 0.5)], steps=15)
    after = settle(page)
    sent = sum("/generate" in u for u in requests) - n_before
    assert 1 <= sent <= 10, f"{sent} requests for one stroke of 30 moves (debounced: a few)"
    layout1 = pixels(page, "#layout")
    tree = np.array(page.evaluate("() => S.classes.classes[2].colour"))
    painted = down((layout1[..., :3] == tree).all(-1))
    assert painted[30:34, 8:56].all() and not painted[:29].any() and not painted[35:].any()
    diff = np.abs(after - before).sum(-1)
    assert diff[painted].mean() > 20, diff[painted].mean()
    assert diff[:12].max() == 0 and diff[52:].max() == 0  # far from the stroke nothing moved
    assert page.locator("#layout").get_attribute("data-version") == page.locator("#photo").get_attribute(
        "data-version")  # the last request won

    # 2. undo: the layout and the photo are back, exactly; redo brings the stroke back
    page.click("#undo")
    assert np.array_equal(pixels(page, "#layout"), layout0)
    assert np.array_equal(settle(page), before)
    page.keyboard.press("Control+Shift+Z")
    assert np.array_equal(pixels(page, "#layout"), layout1)
    assert np.array_equal(settle(page), after)

    # 3. mark a region at the top left and re-sample it (OASIS: new noise inside, the old noise elsewhere)
    page.click("#region-tool")
    page.click("#sizes button[data-size='32']")
    stroke(page, [(0.1, 0.1), (0.35, 0.1), (0.35, 0.2), (0.1, 0.2), (0.1, 0.3), (0.35, 0.3)])
    marked = down(pixels(page, "#overlay")[..., 3] > 0)
    assert marked[8:18, 8:18].all() and not marked[32:].any()
    assert np.array_equal(settle(page), after)  # marking alone changes nothing
    page.click("#resample")
    resampled = settle(page)
    assert "region seed" in page.locator("#seed").inner_text()
    diff = np.abs(resampled - after).sum(-1)
    yy, xx = np.nonzero(marked)
    far = np.ones_like(marked)
    far[max(0, yy.min() - 12) : yy.max() + 13, max(0, xx.min() - 12) : xx.max() + 13] = False
    assert diff[marked].mean() > 10, diff[marked].mean()
    assert diff[far].mean() < diff[marked].mean() / 10, (diff[far].mean(), diff[marked].mean())
    assert np.array_equal(pixels(page, "#layout"), layout1)  # re-sampling never touches the layout

    # 4. fill bucket (flood a connected area) and eraser (paint the background class)
    page.click("button[data-tool='fill']")
    page.click("#palette button[data-class='3']")
    box = page.locator("#overlay").bounding_box()
    page.mouse.click(box["x"] + 0.5 * box["width"], box["y"] + 0.9 * box["height"])
    road = np.array(page.evaluate("() => S.classes.classes[3].colour"))
    filled = down((pixels(page, "#layout")[..., :3] == road).all(-1))
    assert filled[44:].all() and not filled[30:34, 8:56].any()  # the ground (around the stroke), not the stroke
    settle(page)
    page.click("button[data-tool='eraser']")
    stroke(page, [(0.45, 0.5), (0.55, 0.5)])
    ground = np.array(page.evaluate("() => S.classes.classes[S.classes.background].colour"))
    erased = down((pixels(page, "#layout")[..., :3] == ground).all(-1))
    assert erased[30:34, 30:34].all() and not erased[44:].any()
    settle(page)

    assert not errors, errors
    assert all(u.startswith((live_server.url + "/", "blob:", "data:")) for u in requests), [u for u in requests if not u.startswith(live_server.url)]
    page.close()


def test_load_style_new_style_and_downloads(browser, live_server, tmp_path):
    """The default (SC-GAN) model: load a label PNG of class ids, upload a style image, draw a new style, download
    the label (palette colours, read back by the server as the same layout) and the photo (the shown one)."""
    page = browser.new_page(viewport={"width": 1300, "height": 800}, accept_downloads=True)
    errors = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.goto(live_server.url + "/")
    settle(page)
    page.click("#clear")
    blank = settle(page)

    ids = face_layout()
    Image.fromarray(ids).save(tmp_path / "face.png")
    page.set_input_files("#label-file", str(tmp_path / "face.png"))
    # the page decodes the file asynchronously (createImageBitmap): wait for its message, then check it
    page.wait_for_function("() => document.getElementById('status').textContent.startsWith('loaded')",
                           timeout=30_000)
    assert "loaded face.png (64x64, resized)" in page.locator("#status").inner_text()
    palette = np.array(page.evaluate("() => S.classes.classes.map((c) => c.colour)"))
    shown = down(pixels(page, "#layout")[..., :3])
    assert np.array_equal(shown, palette[ids])
    face = settle(page)
    assert np.abs(face - blank).sum(-1).mean() > 5

    rng = np.random.default_rng(1)
    Image.fromarray(rng.integers(0, 255, (64, 64, 3), dtype=np.uint8)).save(tmp_path / "style.png")
    page.set_input_files("#style-file", str(tmp_path / "style.png"))
    styled = settle(page)
    assert "(style image)" in page.locator("#seed").inner_text()
    assert "style" in page.locator("#timing").inner_text()
    assert np.abs(styled - face).sum(-1).mean() > 5
    page.click("#style-clear")
    assert np.array_equal(settle(page), face)  # back to the seed's picture

    page.click("#new-style")
    other = settle(page)
    assert page.locator("#seed").inner_text() != "seed 0"
    assert np.abs(other - face).sum(-1).mean() > 5
    page.click("#undo")  # undo brings the previous seed back
    assert page.locator("#seed").inner_text() == "seed 0"
    assert np.array_equal(settle(page), face)

    with page.expect_download() as d:
        page.click("#download-label")
    label = np.asarray(Image.open(d.value.path()).convert("RGB"))
    assert label.shape == (256, 256, 3) and np.array_equal(down(label.astype(np.int16)), palette[ids])
    with page.expect_download() as d:
        page.click("#download-photo")
    assert d.value.suggested_filename == "photo-faces-seed0.png"
    assert np.array_equal(np.asarray(Image.open(d.value.path()).convert("RGB"), np.int16), face)
    assert not errors, errors
    page.close()

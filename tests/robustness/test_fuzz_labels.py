"""Property tests of label decoding: hostile files never crash a reader, and the readers agree.

Random small images of every PIL mode with random pixel values, saved as PNG, TIFF or BMP, sometimes truncated,
bit-flipped or replaced by random bytes; random class counts, palettes (duplicates included) and raw-value
tables. Each file goes through the dataset reader (``read_label`` + ``LabelMapping.split``, what ``semsynth data
check`` and training run) and through ``semsynth generate``'s (``Synthesizer.read_label``, around a tiny random
SC-GAN generator). Properties:

* the only exceptions are :class:`~semsynth.errors.SemsynthError` subclasses (no crash, no traceback);
* decoded ids are always channels of the model (``0 <= id < num_classes``);
* a file both accept decodes to the same ids; a file the dataset reader rejects, generate rejects with the same
  kind of problem, except colour RGB(A), which generate decodes with the palette (checked against a plain
  lookup of each pixel's colour).

Derandomized and bounded (``max_examples``), so CI is repeatable and the file runs in seconds.
"""

from __future__ import annotations

import atexit
import functools
import io
import shutil
import tempfile
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from semsynth.data import DatasetInfo
from semsynth.data.folder import SampleError, colour_table, match_colours, read_label
from semsynth.data.transforms import LabelMapping
from semsynth.errors import SemsynthError
from semsynth.inference import Synthesizer
from tests.data.trees import TINY_SCGAN

FUZZ = settings(max_examples=160, deadline=None, derandomize=True, database=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
PER_MODE = settings(FUZZ, max_examples=24)

MODES = ["1", "L", "LA", "P", "PA", "I", "I;16", "I;16B", "F", "RGB", "RGBA", "RGBX", "CMYK", "YCbCr", "LAB"]
FORMATS = {"PNG": {"1", "L", "LA", "P", "I;16", "RGB", "RGBA"}, "BMP": {"1", "L", "P", "RGB"},
           "TIFF": set(MODES)}
SUFFIX = {"PNG": ".png", "BMP": ".bmp", "TIFF": ".tif"}
WORK = Path(tempfile.mkdtemp(prefix="semsynth-fuzz-"))
atexit.register(shutil.rmtree, WORK, True)
# damaged files make PIL warn (truncated TIFF strips, corrupt EXIF) before it raises: expected here
pytestmark = pytest.mark.filterwarnings("ignore::UserWarning:PIL")


@functools.cache
def _generator(num_classes: int):
    import torch

    from semsynth.models import build_generator

    torch.manual_seed(0)
    return build_generator(TINY_SCGAN, num_classes=num_classes, use_instance=False, resolution=[32, 32])


def _synthesizer(n: int, palette: list[tuple[int, int, int]], table: dict[int, int] | None) -> Synthesizer:
    import torch

    info = DatasetInfo(name="fuzzset", num_classes=n, class_names=[f"c{i}" for i in range(n)], palette=palette,
                       resolution=(32, 32))
    config = {"generator": dict(TINY_SCGAN), "label_values": {str(k): v for k, v in table.items()} if table else None}
    return Synthesizer(_generator(n), None, info, config, torch.device("cpu"))


# -- strategies -----------------------------------------------------------------------------------------------


@st.composite
def models(draw):
    """(num_classes, palette, raw-value table or None)."""
    n = draw(st.sampled_from([1, 2, 3, 5, 8, 300]))
    colour = st.tuples(*[st.sampled_from([0, 1, 127, 128, 255])] * 3)
    palette = draw(st.lists(colour, min_size=n, max_size=n)) if n < 20 else [
        ((i * 37) % 256, (i * 91) % 256, i % 7) for i in range(n)]
    table = None
    if draw(st.booleans()):
        raws = draw(st.lists(st.sampled_from([0, 1, 2, 3, 4, 7, 254, 255, 256, 1000, 65535, 65536, 70000, -1]),
                             min_size=1, max_size=8, unique=True))
        table = {r: draw(st.integers(0, n - 1)) for r in raws}
    return n, palette, table


@st.composite
def label_files(draw, mode: str, model):
    """Bytes of a label file in ``mode`` and a random format, maybe damaged; and its suffix. Pixel values are
    mostly the model's valid raw values (or palette colours), sometimes with strays, sometimes anything."""
    fmt = draw(st.sampled_from(sorted(f for f, modes in FORMATS.items() if mode in modes)))
    h, w = draw(st.integers(1, 9)), draw(st.integers(1, 9))
    seed = draw(st.integers(0, 2**32 - 1))
    small = draw(st.sampled_from([True, True, False]))  # values near the class ids, or anything the mode holds
    stray = draw(st.booleans())
    img = _image(mode, h, w, np.random.default_rng(seed), small, stray, model)
    buf = io.BytesIO()
    img.save(buf, fmt)
    data = buf.getvalue()
    damage = draw(st.sampled_from(["none", "truncate", "flip", "none", "random", "none", "empty", "none"]))
    if damage == "truncate":
        data = data[:draw(st.integers(0, max(0, len(data) - 1)))]
    elif damage == "flip":
        b = bytearray(data)
        for _ in range(draw(st.integers(1, 4))):
            b[draw(st.integers(0, len(b) - 1))] ^= 1 << draw(st.integers(0, 7))
        data = bytes(b)
    elif damage == "random":
        data = draw(st.binary(min_size=1, max_size=64))
        if draw(st.booleans()):
            data = b"\x89PNG\r\n\x1a\n" + data
    elif damage == "empty":
        data = b""
    return data, SUFFIX[fmt]


def _image(mode: str, h: int, w: int, rng: np.random.Generator, small: bool, stray: bool, model) -> Image.Image:
    n, palette, table = model
    lo, hi = {"I": (-2**31, 2**31 - 1), "I;16": (0, 65535), "I;16B": (0, 65535)}.get(mode, (0, 255))
    pool = [v for v in (sorted(table) if table else range(n)) if lo <= v <= hi] or [0]
    ids = rng.choice(pool, size=(h, w))
    if stray:
        ids.flat[rng.integers(0, ids.size)] = rng.choice([v for v in (-1, 7, 255, 256, 65535, 70000) if lo <= v <= hi])
    if mode == "1":
        return Image.fromarray(rng.integers(0, 2, (h, w)).astype(bool))
    if mode in ("L", "LA", "P", "PA"):
        img = Image.fromarray((ids if small else rng.integers(0, 256, (h, w))).astype(np.uint8))
        if mode.startswith("P"):
            img = img.convert("P")
            img.putpalette(rng.integers(0, 256, 3 * int(rng.integers(1, 257))).astype(np.uint8).tobytes())
        if mode.endswith("A"):
            img = img.convert(mode)
            img.putalpha(Image.fromarray(rng.integers(0, 256, (h, w)).astype(np.uint8)))
        return img
    if mode == "I":
        return Image.fromarray((ids if small else rng.integers(-2**31, 2**31 - 1, (h, w))).astype(np.int32))
    if mode.startswith("I;16"):
        img = Image.fromarray((ids if small else rng.integers(0, 65536, (h, w))).astype(np.uint16))
        return img if mode == "I;16" else img.convert(mode)
    if mode == "F":
        return Image.fromarray(rng.normal(0, 100, (h, w)).astype(np.float32))
    kind = rng.integers(0, 3) if small else 2
    if kind == 0 and palette:  # painted with the model's palette
        rgb = np.array(palette, np.uint8)[rng.integers(0, len(palette), (h, w))]
    elif kind == 1:  # grey: ids in three equal channels
        rgb = np.repeat(ids.astype(np.uint8)[..., None], 3, -1)
    else:
        rgb = rng.integers(0, 256, (h, w, 3)).astype(np.uint8)
    img = Image.fromarray(rgb)
    if mode == "RGBA":
        img.putalpha(Image.fromarray(rng.integers(0, 256, (h, w)).astype(np.uint8)))
        return img
    return img if mode == "RGB" else img.convert(mode)


# -- properties -------------------------------------------------------------------------------------------------


def _write(data: bytes, suffix: str) -> Path:
    path = WORK / f"label{suffix}"
    path.write_bytes(data)
    return path


def _dataset_read(path: Path, mapping: LabelMapping):
    """(kind or None, mapped ids or colours); only SemsynthErrors may escape a reader."""
    try:
        read = read_label(path)
    except SampleError as e:
        return e.kind, None
    assert read.values.ndim == 2
    mapped, bad = mapping.split(read.values)
    if bad:
        return "out-of-range", None
    return None, mapped


def _generate_read(syn: Synthesizer, path: Path):
    try:
        ids = syn.read_label(path).numpy()
    except SampleError as e:
        assert str(path) in str(e) and "Fix:" in str(e), str(e)
        return e.kind, None
    assert ids.dtype == np.int64 and ids.ndim == 2
    assert ids.size == 0 or (ids.min() >= 0 and ids.max() < syn.info.num_classes), "ids out of range"
    return None, ids


def _palette_ids(rgb: np.ndarray, palette) -> np.ndarray | None:
    """The plain reference: each pixel's colour looked up in the palette (first match), None if one is absent."""
    out = np.empty(rgb.shape[:2], np.int64)
    for idx in np.ndindex(*rgb.shape[:2]):
        c = tuple(int(v) for v in rgb[idx])
        if c not in palette:
            return None
        out[idx] = palette.index(c)
    return out


@pytest.mark.parametrize("mode", MODES)
@PER_MODE
@given(model=models(), data=st.data())
def test_dataset_and_generate_readers_never_crash_and_agree(mode, model, data):
    n, palette, table = model
    syn = _synthesizer(n, palette, table)
    blob, suffix = data.draw(label_files(mode, model))
    path = _write(blob, suffix)
    mapping = LabelMapping(table if table else {v: v for v in range(n)}, n, "fuzz")
    ds_kind, ds_ids = _dataset_read(path, mapping)
    gen_kind, gen_ids = _generate_read(syn, path)
    if ds_kind is None:
        assert gen_kind is None, gen_kind
        np.testing.assert_array_equal(gen_ids, ds_ids.astype(np.int64))
    elif ds_kind == "rgb-label":  # colours: generate decodes them with the palette
        rgb = np.asarray(Image.open(path).convert("RGB"))
        want = _palette_ids(rgb, palette)
        if want is None:
            assert gen_kind == "unknown-colour", gen_kind
        else:
            assert gen_kind is None, gen_kind
            np.testing.assert_array_equal(gen_ids, want)
    else:
        assert gen_kind == ds_kind, (ds_kind, gen_kind)
    # the colour reading of the custom dataset (palette decoding) never crashes either
    try:
        cols = read_label(path, colours=True).values
    except SampleError:
        return
    assert cols.ndim == 3 and cols.shape[-1] == 3 and cols.dtype == np.uint8


@FUZZ
@given(data=st.data(), n=st.integers(1, 300))
def test_label_mapping_split_maps_exactly(data, n):
    dtype = data.draw(st.sampled_from([np.uint8, np.uint16, np.int32, np.int64]))
    info = np.iinfo(dtype)
    lo, hi = max(int(info.min), -70000), min(int(info.max), 70000)
    values = st.one_of(st.integers(lo, hi), st.sampled_from([v for v in (0, 1, 2, 255, 65535, 65536) if lo <= v <= hi]))
    raw = np.array(data.draw(st.lists(values, min_size=1, max_size=40)), dtype=dtype).reshape(-1, 1)
    keys = data.draw(st.lists(st.integers(-70000, 70000) | st.sampled_from([0, 1, 255, 65535]), max_size=10,
                              unique=True))
    table = {k: data.draw(st.integers(0, n - 1)) for k in keys}
    mapping = LabelMapping(table, n, "fuzz")
    mapped, bad = mapping.split(raw)
    assert mapped.shape == raw.shape
    want_bad: dict[int, int] = {}
    for v, m in zip(raw.ravel().tolist(), mapped.ravel().tolist(), strict=True):
        if v in table:
            assert m == table[v]
        else:
            assert m == mapping.invalid
            want_bad[v] = want_bad.get(v, 0) + 1
    assert bad == want_bad


@FUZZ
@given(data=st.data())
def test_palette_decoding_is_exact(data):
    n = data.draw(st.integers(1, 12))
    colour = st.tuples(*[st.sampled_from([0, 1, 254, 255])] * 3)
    palette = data.draw(st.lists(colour, min_size=n, max_size=n))  # duplicates: the first class wins
    h, w = data.draw(st.integers(1, 6)), data.draw(st.integers(1, 6))
    pixels = data.draw(st.lists(colour, min_size=h * w, max_size=h * w))
    rgb = np.array(pixels, np.uint8).reshape(h, w, 3)
    want = _palette_ids(rgb, palette)
    ids, unknown = match_colours(rgb, colour_table(palette))
    syn = _synthesizer(n, palette, None)
    if want is None:
        missing = {(c >> 16, (c >> 8) & 255, c & 255) for _, c in unknown}
        assert missing == {tuple(p) for p in pixels} - set(palette)
        assert sum(px for px, _ in unknown) == sum(tuple(p) not in palette for p in pixels)
        with pytest.raises(SampleError, match=r"are not in the fuzzset palette") as e:
            syn._decode_colours(rgb, Path("layout.png"))
        assert e.value.kind == "unknown-colour"
    else:
        assert unknown == []
        np.testing.assert_array_equal(ids, want)
        np.testing.assert_array_equal(syn._decode_colours(rgb, Path("layout.png")), want)


def test_hostile_files_raise_only_semsynth_errors():
    """A few fixed hostile files besides the random ones: not an image, a directory, a huge declared size."""
    syn = _synthesizer(3, [(0, 0, 0), (255, 0, 0), (0, 255, 0)], None)
    (WORK / "dir.png").mkdir(exist_ok=True)
    big = WORK / "big.png"
    Image.new("L", (1, 1)).save(big)
    blob = bytearray(big.read_bytes())
    blob[16:24] = (100000).to_bytes(4, "big") * 2  # IHDR width and height: 10^10 pixels (CRC now wrong too)
    big.write_bytes(bytes(blob))
    for path in (WORK / "dir.png", big, _write(b"GIF89a" + bytes(20), ".png"), _write(b"II*\x00" + bytes(30), ".tif")):
        for reader in (read_label, syn.read_label):
            with pytest.raises(SemsynthError, match=str(path)):
                reader(path)

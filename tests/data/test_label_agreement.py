"""`semsynth data check` and `semsynth generate` read label files alike: one reader, the same modes, the same ids.

Each case writes one label file in some PIL mode. `data check` scans it as the only label map of a custom dataset
(class ids 0..4, 255 = don't care); `generate`'s reader (`Synthesizer.read_label`) reads it for a model trained
on that dataset (its classes, palette and raw-value table, as an exported model records them). Both accept it
with the same ids, or both reject it with the same kind of problem. The one difference is by design: a colour
RGB(A) layout, which a dataset of class ids rejects, is decoded by `generate` with the model's palette, exactly as
the custom dataset decodes it when given that palette.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import yaml
from PIL import Image

from semsynth.data import build_dataset
from semsynth.data.check import check_dataset
from semsynth.data.folder import SampleError, lenient_index
from semsynth.errors import DataError
from semsynth.inference import list_labels

from .trees import blocks, tiny_synthesizer

H = W = 32
IDS = [0, 1, 2, 4, 255]  # 255 = don't care
META = {"num_classes": 5, "dontcare": 255}
PALETTE = [(0, 0, 0), (200, 10, 0), (0, 150, 60), (40, 40, 220), (250, 250, 0)]


def _grey(values: list[int], dtype=np.uint8, seed: int = 0) -> np.ndarray:
    return blocks(H, W, values, seed).astype(dtype)


def _tiff(arr: np.ndarray, mode: str | None = None):
    return Image.fromarray(arr) if mode is None else Image.fromarray(arr).convert(mode), ".tif"


def _with_alpha(mode: str, base: Image.Image) -> Image.Image:
    img = base.convert(mode)  # P -> PA keeps the indices
    img.putalpha(Image.fromarray(_grey([0, 128, 255], seed=7)))
    return img


def _palette_image(values: list[int]) -> Image.Image:
    img = Image.fromarray(_grey(values), "L").convert("P")
    rng = np.random.default_rng(3)
    img.putpalette(rng.integers(0, 256, 768).astype(np.uint8).tobytes())  # colours that mean nothing
    return img


def _colour(palette_ids: list[int], extra: tuple[int, int, int] | None = None) -> np.ndarray:
    rgb = np.array(PALETTE, np.uint8)[_grey(palette_ids)]
    if extra is not None:
        rgb[:4, :4] = extra
    return rgb


# id -> (image, extension); the expected outcome of both readers: "ok" or the kind of problem
CASES = {
    "1": (lambda: (Image.fromarray(_grey([0, 1]).astype(bool)), ".png"), "ok"),
    "L": (lambda: (Image.fromarray(_grey(IDS)), ".png"), "ok"),
    "L out of range": (lambda: (Image.fromarray(_grey([0, 1, 9])), ".png"), "out-of-range"),
    "LA": (lambda: (_with_alpha("LA", Image.fromarray(_grey(IDS))), ".png"), "ok"),
    "LA out of range": (lambda: (_with_alpha("LA", Image.fromarray(_grey([3, 7]))), ".png"), "out-of-range"),
    "P": (lambda: (_palette_image([0, 2, 4]), ".png"), "ok"),
    "P out of range": (lambda: (_palette_image([0, 6]), ".png"), "out-of-range"),
    "PA": (lambda: (_with_alpha("PA", _palette_image([1, 3])), ".tif"), "ok"),
    "I (32-bit)": (lambda: _tiff(_grey(IDS, np.int32)), "ok"),
    "I negative and huge": (lambda: _tiff(_grey([0, -3, 70000], np.int32)), "out-of-range"),
    "I;16": (lambda: (Image.fromarray(_grey(IDS, np.uint16)), ".png"), "ok"),
    "I;16 scaled": (lambda: (Image.fromarray(_grey([0, 1, 2], np.uint16) * 257), ".png"), "out-of-range"),
    "I;16B": (lambda: _tiff(_grey(IDS, np.uint16), "I;16B"), "ok"),
    "RGB grey": (lambda: (Image.fromarray(np.repeat(_grey(IDS)[..., None], 3, -1)), ".png"), "ok"),
    "RGBA grey": (lambda: (_with_alpha("RGBA", Image.fromarray(np.repeat(_grey(IDS)[..., None], 3, -1))), ".png"),
                  "ok"),
    "RGBX (TIFF, read as RGB)": (lambda: _tiff(np.repeat(_grey(IDS)[..., None], 3, -1), "RGBX"), "ok"),
    "BMP": (lambda: (Image.fromarray(_grey(IDS)), ".bmp"), "ok"),
    "CMYK": (lambda: _tiff(_colour([0, 1, 2]), "CMYK"), "unsupported-mode"),
    "F (float)": (lambda: _tiff(_grey([0, 1, 2], np.float32)), "unsupported-mode"),
    "YCbCr": (lambda: _tiff(_colour([0, 1, 2]), "YCbCr"), "unsupported-mode"),
    "LAB": (lambda: _tiff(_colour([0, 1, 2]), "LAB"), "unsupported-mode"),
    "corrupt": (lambda: (b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR truncated", ".png"), "unreadable"),
    "empty file": (lambda: (b"", ".png"), "unreadable"),
}
# Colour layouts: rejected by a dataset of class ids (rgb-label), decoded by generate with the model's palette.
COLOUR_CASES = {
    "RGB colour": (lambda: Image.fromarray(_colour([0, 1, 2, 3, 4])), "ok"),
    "RGBA colour": (lambda: _with_alpha("RGBA", Image.fromarray(_colour([1, 4]))), "ok"),
    "RGB colour off the palette": (lambda: Image.fromarray(_colour([0, 3], extra=(1, 2, 3))), "unknown-colour"),
}


def _write(path: Path, made) -> Path:
    obj, ext = made
    path = path.with_suffix(ext)
    path.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(obj, bytes):
        path.write_bytes(obj)
    else:
        obj.save(path)
    return path


def _dataset_root(tmp: Path, meta: dict) -> Path:
    root = tmp / "ds"
    (root / "labels").mkdir(parents=True)
    (root / "dataset.yaml").write_text(yaml.safe_dump(meta))
    return root


def _check(root: Path) -> tuple[set[str], np.ndarray | None]:
    """`data check`'s verdict on the dataset's one label map: the kinds of its errors, and the ids it serves."""
    rep = check_dataset("custom", root, "train", {"images": False})
    if not rep.ok:
        return {p.kind for p in rep.errors}, None
    ds = build_dataset({"name": "custom", "root": str(root), "images": False})
    assert len(ds) == 1
    return set(), ds.load_channels(ds.files[0])


def _generate(syn, path: Path) -> tuple[str, np.ndarray | None]:
    try:
        return "ok", syn.read_label(path).numpy()
    except SampleError as e:
        assert str(path) in str(e) and "Fix:" in str(e), str(e)  # the message names the file and the fix
        return e.kind, None


def _model_of(root: Path):
    """A model as if trained on the dataset at ``root``: its facts and raw-value table."""
    with lenient_index():  # the facts only: the folder may be empty yet
        ds = build_dataset({"name": "custom", "root": str(root), "images": False})
    return tiny_synthesizer(ds.info, ds.mapping.table)


@pytest.mark.parametrize("case", list(CASES), ids=list(CASES))
def test_data_check_and_generate_agree_on_every_mode(tmp_path, case):
    make, expected = CASES[case]
    root = _dataset_root(tmp_path, META)
    syn = _model_of(root)  # 6 channels: 0..4 and don't care 255 -> 5
    path = _write(root / "labels" / "x", make())
    kinds, ds_ids = _check(root)
    gen_kind, gen_ids = _generate(syn, path)
    if expected == "ok":
        assert not kinds and gen_kind == "ok", (kinds, gen_kind)
        assert ds_ids.shape == gen_ids.shape == (H, W)
        np.testing.assert_array_equal(gen_ids, ds_ids.astype(np.int64))
        assert gen_ids.min() >= 0 and gen_ids.max() < syn.info.num_classes
    else:
        assert kinds == {expected} and gen_kind == expected, (kinds, gen_kind)


def test_every_mode_case_decodes_the_values_written(tmp_path):
    """Not only do both readers agree: they read the ids that were written (255 -> the don't-care channel)."""
    root = _dataset_root(tmp_path, META)
    syn = _model_of(root)
    want = _grey(IDS).astype(np.int64)
    want[want == 255] = 5
    for case in ("L", "LA", "I (32-bit)", "I;16", "I;16B", "RGB grey", "RGBA grey", "RGBX (TIFF, read as RGB)"):
        path = _write(tmp_path / "one" / case.split()[0], CASES[case][0]())
        np.testing.assert_array_equal(syn.read_label(path).numpy(), want, err_msg=case)
    p = _write(tmp_path / "one" / "P", CASES["P"][0]())
    np.testing.assert_array_equal(syn.read_label(p).numpy(), _grey([0, 2, 4]))  # indices, not colours
    p = _write(tmp_path / "one" / "1", CASES["1"][0]())
    np.testing.assert_array_equal(syn.read_label(p).numpy(), _grey([0, 1]))


@pytest.mark.parametrize("case", list(COLOUR_CASES), ids=list(COLOUR_CASES))
def test_colour_layouts_decode_like_a_palette_dataset(tmp_path, case):
    make, expected = COLOUR_CASES[case]
    # a dataset of class ids rejects the colour file; generate decodes it with the model's palette...
    ids_root = _dataset_root(tmp_path / "ids", {**META})
    meta = {"num_classes": 5, "palette": [list(c) for c in PALETTE]}
    (ids_root / "dataset.yaml").write_text(yaml.safe_dump(meta))  # colours for pictures only: ids expected
    path = _write(ids_root / "labels" / "x", (make(), ".png"))
    kinds, _ = _check(ids_root)
    assert kinds == {"rgb-label"}
    # ... exactly as the custom dataset decodes it when its palette maps class names to colours
    pal_root = _dataset_root(tmp_path / "pal", {"palette": {f"c{i}": list(c) for i, c in enumerate(PALETTE)}})
    _write(pal_root / "labels" / "x", (make(), ".png"))
    pal_kinds, pal_ids = _check(pal_root)
    syn = _model_of(ids_root)
    assert syn.info.palette == _model_of(pal_root).info.palette == PALETTE
    gen_kind, gen_ids = _generate(syn, path)
    if expected == "ok":
        assert not pal_kinds and gen_kind == "ok"
        np.testing.assert_array_equal(gen_ids, pal_ids.astype(np.int64))
        np.testing.assert_array_equal(gen_ids[8:, 8:] >= 0, True)
    else:
        assert pal_kinds == {expected} and gen_kind == expected
        with pytest.raises(DataError, match=r"colours \[\[1, 2, 3\]\] are not in the custom palette"):
            syn.read_label(path)


def test_a_model_table_with_impossible_channels_is_an_error(tmp_path):
    root = _dataset_root(tmp_path, META)
    syn = _model_of(root)
    syn = tiny_synthesizer(syn.info, {0: 0, 1: 9})
    path = _write(tmp_path / "x", (Image.fromarray(_grey([0, 1])), ".png"))
    with pytest.raises(DataError, match=r"label_values \(config.json\) map 1 -> 9, but its channels are 0..5"):
        syn.read_label(path)


# -- broken links and hidden files (generate's side; data check's side is in test_bad_inputs.py) -------------------


def test_generate_stops_on_a_broken_layout_link(tmp_path):
    d = tmp_path / "layouts"
    _write(d / "a", (Image.fromarray(_grey([0, 1])), ".png"))
    os.symlink(tmp_path / "gone" / "b.png", d / "b.png")
    os.symlink(tmp_path / "gone" / "notes.txt", d / "notes.txt")  # not a layout: ignored like any other
    with pytest.raises(DataError, match=rf"--labels {d}: 1 layout file\(s\) are symbolic links to nothing .*: "
                                        rf"b.png -> {tmp_path / 'gone' / 'b.png'}; repair or remove the link"):
        list_labels(d)
    with pytest.raises(DataError, match=r"a symbolic link to .*gone/b.png, which does not exist; repair or remove"):
        list_labels(d / "b.png")
    root = _dataset_root(tmp_path, META)
    syn = _model_of(root)
    with pytest.raises(SampleError, match=r"b.png: label map file is a symbolic link to .*gone/b.png, which does "
                                          r"not exist. Fix: repair or remove the link") as e:
        syn.read_label(d / "b.png")
    assert e.value.kind == "broken-link"
    (d / "b.png").unlink()
    os.symlink("b.png", d / "b.png")  # a link to itself: a loop
    with pytest.raises(DataError, match=r"b.png -> b.png"):
        list_labels(d)


def test_generate_names_the_hidden_files_it_skips(tmp_path, capsys):
    d = tmp_path / "layouts"
    d.mkdir()
    for name in ("a.png", "..png", ".b.png", "._a.png"):
        Image.fromarray(_grey([0, 1])).save(d / name, format="PNG")
    (d / ".a.png.tmp1234").write_bytes(b"semsynth's own temporary")
    (d / ".DS_Store").write_bytes(b"")
    assert list_labels(d) == [d / "a.png"]
    err = capsys.readouterr().err
    assert f"semsynth generate: skipped 3 hidden file(s) in {d} (names starting with '.'): ..png, ._a.png, .b.png" \
           in err and "rename them" in err
    assert "tmp1234" not in err and "DS_Store" not in err
    # a hidden file named on the command line is read: the user asked for it
    assert list_labels(d / "..png") == [d / "..png"]
    (d / "a.png").unlink()
    with pytest.raises(DataError, match=r"no label maps .* \(3 hidden file\(s\) skipped: rename them"):
        list_labels(d)

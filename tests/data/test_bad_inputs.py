"""A corpus of broken datasets: each gives its own plain-words message, in `data check` and when loading."""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from semsynth.cli import main
from semsynth.data import build_dataset
from semsynth.data.check import check_dataset
from semsynth.errors import DataError, SemsynthError

from .trees import blocks, celeba_tree, cityscapes_tree, coco_tree, custom_tree, save, save16

CUSTOM5 = {"num_classes": 5}


def _custom(tmp: Path, meta: dict | None = CUSTOM5, **kw) -> Path:
    return custom_tree(tmp / "ds", meta=meta, **kw)


def _label(root: Path, name: str = "s1.png") -> Path:
    return root / "labels" / name


# Each case: (id, make(tmp) -> (dataset name, root, options), kind, message regex, failing file or None).
# A failing file means the problem is per file: loading that sample must raise DataError naming it.


def unpaired_image(tmp):
    root = _custom(tmp)
    shutil.copy(root / "images" / "s0.png", root / "images" / "extra.png")
    return "custom", root, {}, "unpaired-image", r"1 image\(s\) have no label map", None


def unpaired_label(tmp):
    root = _custom(tmp)
    (root / "images" / "s1.png").unlink()
    return "custom", root, {}, "unpaired-label", r"label map\(s\) have no image.*\n.*s1.png", None


def count_mismatch(tmp):
    root = coco_tree(tmp / "coco", n=3)
    next((root / "train_label").iterdir()).unlink()
    return "coco-stuff", root, {}, "count-mismatch", r"holds 3 images but .*train_label holds 2 label maps", None


def corrupt_label(tmp):
    root = _custom(tmp)
    _label(root).write_bytes(b"\x89PNG\r\n\x1a\n this is not a png")
    return "custom", root, {}, "unreadable", r"cannot read this label map", "s1.png"


def corrupt_image(tmp):
    root = _custom(tmp)
    (root / "images" / "s2.png").write_bytes(b"GIF89a garbage")
    return "custom", root, {}, "unreadable", r"cannot read this image", "s2.png"


def size_mismatch(tmp):
    root = _custom(tmp)
    save(root / "images" / "s0.png", np.zeros((48, 40, 3), np.uint8))
    return "custom", root, {}, "size-mismatch", r"image is 40x48 but its label map \(s0.png\) is 48x48", "s0.png"


def out_of_range(tmp):
    root = _custom(tmp)
    lab = np.asarray(Image.open(_label(root))).copy()
    lab[:8, :8] = 9
    save(_label(root), lab)
    return "custom", root, {}, "out-of-range", r"64 pixels hold label values outside .*: 9 \(64 px\); valid values " \
                                               r"are 0..4", "s1.png"


def rgb_label(tmp):
    root = _custom(tmp)
    save(_label(root), np.stack([blocks(48, 48, [0, 200]), blocks(48, 48, [10, 90], 1),
                                 np.zeros((48, 48), np.int64)], -1).astype(np.uint8))
    return "custom", root, {}, "rgb-label", r"colour \(RGB\) images where class ids are expected", "s1.png"


def binary_mask(tmp):
    root = _custom(tmp, meta={"num_classes": 2}, num_classes=2)
    save(_label(root), (blocks(48, 48, [0, 1]) * 255).astype(np.uint8))
    return "custom", root, {}, "out-of-range", r"binary mask saved as 0/255", "s1.png"


def missing_instance(tmp):
    root = coco_tree(tmp / "coco", n=3)
    sorted((root / "train_inst").iterdir())[1].unlink()
    return "coco-stuff", root, {}, "missing-instance", r"1 label map\(s\) have no instance map", None


def missing_instance_folder(tmp):
    root = coco_tree(tmp / "coco", n=2, inst=False)
    return "coco-stuff", root, {}, "missing-instance", r"train_inst does not exist.*use_instance=false", None


def empty_folder(tmp):
    root = _custom(tmp)
    for p in (root / "labels").iterdir():
        p.unlink()
    return "custom", root, {}, "empty-folder", r"no label maps", None


def lossy_labels(tmp):
    root = _custom(tmp)
    for p in sorted((root / "labels").iterdir()):
        Image.open(p).save(p.with_suffix(".jpg"))
        p.unlink()
    return "custom", root, {}, "wrong-extension", r"3 label map file\(s\) .* are lossy \(.jpg\)", None


def foreign_files(tmp):
    root = _custom(tmp)
    (root / "labels" / "notes.txt").write_text("hello")
    return "custom", root, {}, "wrong-extension", r"not label maps .* ignored(.|\n)*notes.txt", None


def sixteen_bit(tmp):
    root = _custom(tmp)
    save16(_label(root), blocks(48, 48, [0, 1, 2]) * 257)
    return "custom", root, {}, "out-of-range", r"16-bit and the values look scaled by 256 or 257", "s1.png"


def palette_mode(tmp):
    root = _custom(tmp)
    img = Image.fromarray(blocks(48, 48, [0, 1, 7]).astype(np.uint8), mode="L").convert("P")
    img.putpalette([0, 0, 0, 255, 0, 0, 0, 255, 0] + [9] * 759)
    img.save(_label(root))
    return "custom", root, {}, "out-of-range", r"palette-mode PNG: its palette indices are read as the ids", "s1.png"


def palette_mode_ok(tmp):
    root = _custom(tmp)
    img = Image.fromarray(blocks(48, 48, [0, 1, 4]).astype(np.uint8), mode="L").convert("P")
    img.save(_label(root))
    return "custom", root, {}, "palette-mode", r"palette indices are read as class ids", None


def dontcare_255_undeclared(tmp):
    root = _custom(tmp)
    lab = np.asarray(Image.open(_label(root))).copy()
    lab[-8:, -8:] = 255
    save(_label(root), lab)
    return "custom", root, {}, "out-of-range", r"Value 255 usually marks unlabeled pixels, but this dataset " \
                                               r"declares no don't-care value", "s1.png"


def missing_root(tmp):
    return "ade20k", tmp / "nothing-here", {}, "missing-folder", r"dataset root folder .* does not exist", None


def duplicate_stem(tmp):
    root = _custom(tmp)
    Image.open(root / "images" / "s0.png").save(root / "images" / "s0.jpg")
    return "custom", root, {}, "duplicate", r"share a name with another file", None


def unknown_colour(tmp):
    pal = [[0, 0, 0], [255, 0, 0], [0, 0, 255]]
    root = _custom(tmp, meta={"palette": {"bg": pal[0], "red": pal[1], "blue": pal[2]}}, num_classes=3,
                   rgb_palette=pal)
    rgb = np.asarray(Image.open(_label(root))).copy()
    rgb[:4, :4] = (1, 2, 3)
    save(_label(root), rgb)
    return "custom", root, {}, "unknown-colour", r"not in the palette(.|\n)*#010203 \(16 px\)", "s1.png"


def float_label(tmp):
    root = _custom(tmp)
    _label(root).unlink()
    Image.fromarray(blocks(48, 48, [0, 1]).astype(np.float32)).save(_label(root, "s1.tif"))
    return "custom", root, {}, "unsupported-mode", r"PIL mode 'F'; class ids must be integers", "s1.tif"


def instance_size(tmp):
    root = coco_tree(tmp / "coco", n=2)
    p = sorted((root / "train_inst").iterdir())[0]
    save(p, np.zeros((10, 10), np.uint8))
    return "coco-stuff", root, {}, "size-mismatch", r"instance map is 10x10 but the label map is 64x48", p.name


def cityscapes_train_ids(tmp):
    root = cityscapes_tree(tmp / "cs", n=1, cities=("ulm",))
    p = next((root / "gtFine" / "train" / "ulm").glob("*_labelIds.png"))
    save(p, blocks(32, 64, [0, 13, 18, 255]).astype(np.uint8))
    return "cityscapes", root, {}, "out-of-range", r"look like trainIds", p.name


def celeba_missing_list(tmp):
    root = celeba_tree(tmp / "celeba")
    (root / "train_list.txt").unlink()
    return "celebamask-hq", root, {}, "missing-list", r"train_list.txt does not exist.*split_lists=false", None


def ade_value_out_of_range(tmp):
    from .trees import ade_tree

    base = ade_tree(tmp / "ade", n=2)
    p = sorted((base / "annotations" / "training").iterdir())[0]
    save(p, blocks(48, 64, [0, 151, 200]).astype(np.uint8))
    return "ade20k", base, {}, "out-of-range", r"valid values are 0 \(unlabeled\) and 1..150", p.name


def broken_label_link(tmp):
    root = _custom(tmp)
    _label(root).unlink()
    os.symlink(tmp / "gone" / "s1.png", _label(root))
    return "custom", root, {}, "broken-link", r"1 file\(s\) in .*labels are symbolic links to nothing(.|\n)*" \
                                              r"s1.png -> .*gone/s1.png(.|\n)*fix: repair or remove the link", None


def broken_image_link(tmp):
    root = _custom(tmp)
    (root / "images" / "s2.png").unlink()
    os.symlink("../elsewhere/s2.png", root / "images" / "s2.png")
    return "custom", root, {}, "broken-link", r"in .*images are symbolic links to nothing(.|\n)*" \
                                              r"s2.png -> ../elsewhere/s2.png", None


def label_link_loop(tmp):
    root = _custom(tmp)
    _label(root).unlink()
    os.symlink("s1.png", _label(root))
    return "custom", root, {}, "broken-link", r"s1.png -> s1.png", None


def broken_other_link(tmp):
    root = _custom(tmp)
    os.symlink(tmp / "gone" / "notes.txt", root / "labels" / "notes.txt")
    return "custom", root, {}, "broken-link", r"symbolic links to nothing(.|\n)*notes.txt -> ", None


def hidden_files(tmp):
    root = _custom(tmp)
    shutil.copy(_label(root), root / "labels" / "..png")
    shutil.copy(_label(root), root / "labels" / "._s1.png")
    shutil.copy(_label(root), root / "labels" / ".s1.png.tmp4242")  # semsynth's own temporary: not reported
    return "custom", root, {}, "hidden-file", r"2 hidden file\(s\) in .*labels \(names starting with '.'\) are " \
                                              r"skipped\n\.\.png\n\._s1\.png\nfix: rename them", None


CASES: list[Callable] = [unpaired_image, unpaired_label, count_mismatch, corrupt_label, corrupt_image, size_mismatch,
                         out_of_range, rgb_label, binary_mask, missing_instance, missing_instance_folder, empty_folder,
                         lossy_labels, foreign_files, sixteen_bit, palette_mode, palette_mode_ok,
                         dontcare_255_undeclared, missing_root, duplicate_stem, unknown_colour, float_label,
                         instance_size, cityscapes_train_ids, celeba_missing_list, ade_value_out_of_range,
                         broken_label_link, broken_image_link, label_link_loop, broken_other_link, hidden_files]
WARNINGS_ONLY = {"foreign_files", "palette_mode_ok", "broken_other_link", "hidden_files"}


@pytest.mark.parametrize("case", CASES, ids=[c.__name__ for c in CASES])
def test_bad_input_is_explained(tmp_path, case):
    name, root, opts, kind, pattern, bad_file = case(tmp_path)
    rep = check_dataset(name, root, "train", opts)
    found = [p for p in rep.problems if p.kind == kind]
    text = rep.text(max_files=50)
    assert found, text
    import re

    assert any(re.search(pattern, p.message + "\n" + "\n".join(p.files) + "\nfix: " + p.fix, re.S) for p in found), text
    assert rep.ok == (case.__name__ in WARNINGS_ONLY), text
    assert f"[{kind}]" in text and ("fix:" in text or rep.ok)
    if rep.ok:
        return
    # Loading fails before training with the same explanation, naming the file.
    if bad_file is None:
        with pytest.raises(SemsynthError, match=re.escape(f"[{kind}]")):
            build_dataset({"name": name, "root": str(root), **opts})
    else:
        ds = build_dataset({"name": name, "root": str(root), **opts})
        with pytest.raises(DataError, match=re.escape(bad_file)) as e:
            for i in range(len(ds)):
                ds[i]
        head = pattern.split("(.|\\n)")[0]
        assert re.search(head, str(e.value)) or kind in ("rgb-label", "unreadable", "size-mismatch"), str(e.value)
        assert "Fix:" in str(e.value)


def test_bad_label_in_a_dataloader_worker_is_a_data_error(tmp_path):
    name, root, opts, *_ = out_of_range(tmp_path)
    ds = build_dataset({"name": name, "root": str(root)})
    for workers in (0, 1):
        loader = torch.utils.data.DataLoader(ds, batch_size=3, num_workers=workers)
        with pytest.raises(DataError, match="s1.png"):
            next(iter(loader))


def test_cli_exit_codes(tmp_path, capsys):
    root = _custom(tmp_path)
    assert main(["data", "check", "--dataset", "custom", "--root", str(root)]) == 0
    assert "result: OK" in capsys.readouterr().out
    out_of_range(tmp_path / "bad")
    bad = tmp_path / "bad" / "ds"
    assert main(["data", "check", "--dataset", "custom", "--root", str(bad)]) == 2
    out = capsys.readouterr().out
    assert "[out-of-range]" in out and "s1.png" in out and "num_classes: 10" in out and "(exit 2)" in out
    assert main(["data", "check", "--dataset", "custom", "--root", str(bad), "--set", "num_classes=10"]) == 0
    capsys.readouterr()
    assert main(["data", "check", "--dataset", "nope", "--root", str(root)]) == 2
    assert "unknown dataset 'nope'" in capsys.readouterr().err
    rgb_label(tmp_path / "rgb")
    assert main(["data", "check", "--dataset", "custom", "--root", str(tmp_path / "rgb" / "ds")]) == 2
    out = capsys.readouterr().out
    assert "palette.yaml skeleton" in out and "'#c80a00'" in out  # the colours found, to start a palette


def test_check_with_label_only_and_config(tmp_path, capsys):
    coco_tree(tmp_path, n=2, images=False, inst=False)
    assert main(["data", "check", "--dataset", "coco-stuff", "--root", str(tmp_path), "--label-only",
                 "--set", "use_instance=false"]) == 0
    capsys.readouterr()
    assert main(["data", "check", "--config", "scgan-coco", "--root", str(tmp_path), "--label-only"]) == 0
    out = capsys.readouterr().out
    assert "use_instance=false" in out and "2 complete samples" in out


def test_hidden_files_are_listed_but_not_semsynth_temporaries(tmp_path, capsys):
    name, root, opts, *_ = hidden_files(tmp_path)
    assert main(["data", "check", "--dataset", name, "--root", str(root)]) == 0
    out = capsys.readouterr().out
    assert "[hidden-file]" in out and "..png" in out and "._s1.png" in out and "tmp4242" not in out
    assert "result: OK, 3 samples" in out
    # a folder listed twice (Cityscapes' label and instance maps share gtFine/) reports them once
    cs = cityscapes_tree(tmp_path / "cs", n=1, cities=("ulm",))
    lab = next((cs / "gtFine" / "train" / "ulm").glob("*_labelIds.png"))
    shutil.copy(lab, lab.with_name("." + lab.name))
    rep = check_dataset("cityscapes", cs, "train")
    hidden = [p for p in rep.problems if p.kind == "hidden-file"]
    assert len(hidden) == 1 and hidden[0].files == [f"ulm/.{lab.name}"] and rep.ok, rep.text()


def test_broken_links_stop_celebamask_part_masks(tmp_path):
    root = celeba_tree(tmp_path / "celeba", parts=True, merged=False)
    part = min((root / "CelebAMask-HQ-mask-anno" / "0").iterdir())
    part.unlink()
    os.symlink("/nonexistent/" + part.name, part)
    rep = check_dataset("celebamask-hq", root, "train")
    assert [p.files for p in rep.errors if p.kind == "broken-link"] == [[f"0/{part.name} -> /nonexistent/{part.name}"]]
    with pytest.raises(DataError, match=r"\[broken-link\] 1 file\(s\) in .* are symbolic links to nothing"):
        build_dataset({"name": "celebamask-hq", "root": str(root)})


def test_a_folder_link_to_an_ancestor_does_not_loop(tmp_path):
    cs = cityscapes_tree(tmp_path / "cs", n=1, cities=("ulm",))
    os.symlink("..", cs / "gtFine" / "train" / "ulm" / "up")  # recursive listing would walk up forever
    rep = check_dataset("cityscapes", cs, "train")
    assert rep.ok and rep.samples == 1, rep.text()


def test_cli_check_names_a_broken_link_and_its_target(tmp_path, capsys):
    name, root, *_ = broken_label_link(tmp_path)
    assert main(["data", "check", "--dataset", name, "--root", str(root)]) == 2
    out = capsys.readouterr().out
    assert "[broken-link]" in out and f"s1.png -> {tmp_path / 'gone' / 's1.png'}" in out
    assert "repair or remove the link" in out and "(exit 2)" in out

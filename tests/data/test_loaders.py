"""Each loader on a tiny tree that mirrors the real layout: facts, label mapping, alignment, splits, label-only."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from semsynth.config import dataset_info
from semsynth.data import DATASETS, build_dataset
from semsynth.data.ade20k import ADE_CLASSES
from semsynth.data.celebamask_hq import PARTS
from semsynth.errors import ConfigError, SemsynthError

from .trees import ade_tree, celeba_tree, cityscapes_tree, coco_tree, colour_of, custom_tree

PRESETS = Path(__file__).resolve().parents[2] / "src" / "semsynth" / "configs"


def _raw_colour(label: torch.Tensor, inverse: dict[int, int]) -> np.ndarray:
    raw = label.numpy().copy()
    for ch, v in inverse.items():
        raw[label.numpy() == ch] = v
    return colour_of(raw).astype(np.int32)


def _image_u8(image: torch.Tensor) -> np.ndarray:
    return ((image.permute(1, 2, 0).numpy() + 1) * 127.5).round().astype(np.int32)


def _interior(label: np.ndarray, r: int = 2) -> np.ndarray:
    """Pixels whose (2r+1)^2 neighbourhood holds one label: there resampling cannot mix colours."""
    h, w = label.shape
    pad = np.pad(label, r, mode="edge")
    same = np.ones((h, w), bool)
    for dy in range(2 * r + 1):
        for dx in range(2 * r + 1):
            same &= pad[dy:dy + h, dx:dx + w] == label
    return same


def _assert_aligned(sample: dict, inverse: dict[int, int], tol: int) -> None:
    """Inside label regions the photo has the colour of that region's label (up to JPEG / resampling error);
    a crop or flip applied to the image but not the label (or vice versa) breaks this almost everywhere."""
    lab = sample["label"].numpy()
    inside = _interior(lab)
    assert inside.mean() > 0.2
    err = np.abs(_image_u8(sample["image"]) - _raw_colour(sample["label"], inverse)).max(-1)
    assert (err[inside] <= tol).mean() >= 0.99, (err[inside] <= tol).mean()


# -- facts without disk ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("spec, channels, dontcare, inst, res", [
    ({"name": "coco-stuff"}, 183, 182, True, (256, 256)),
    ({"name": "coco-stuff", "use_instance": False}, 183, 182, False, (256, 256)),
    ({"name": "ade20k"}, 151, 150, False, (256, 256)),
    ({"name": "ade20k", "label_convention": "scgan"}, 151, 0, False, (256, 256)),
    ({"name": "cityscapes"}, 35, None, True, (256, 512)),
    ({"name": "celebamask-hq"}, 19, None, False, (512, 512)),
    ({"name": "custom", "num_classes": 7, "dontcare": 255}, 8, 7, False, (256, 256)),
])
def test_describe_needs_no_disk(spec, channels, dontcare, inst, res):
    info = dataset_info({**spec, "root": "/nonexistent/dataset"})
    assert (info.num_classes, info.dontcare_index, info.has_instance, info.resolution) == (channels, dontcare, inst,
                                                                                           res)
    assert len(info.class_names) == len(info.palette) == channels


@pytest.mark.parametrize("preset", sorted(p.stem for p in PRESETS.glob("*.yaml")))
def test_presets_data_sections_are_accepted(preset):
    data = yaml.safe_load((PRESETS / f"{preset}.yaml").read_text())["data"]
    info = dataset_info(data)
    assert info.name == data["name"]
    family = preset.split("-")[0]
    if data["name"] == "coco-stuff":
        # the official SC-GAN and OASIS COCO configs have no instance channel; SPADE's and CC-FPSE's have one
        assert info.semantic_channels == {"scgan": 183, "oasis": 183, "spade": 184, "ccfpse": 184}[family]
    if data["name"] == "cityscapes":
        # SPADE-family codes at 256x512; pix2pixHD's label2city_512p at 512x1024
        assert info.resolution == ((512, 1024) if family == "pix2pixhd" else (256, 512))


def test_class_names_and_eval_map():
    coco = dataset_info({"name": "coco-stuff", "root": "x"})
    assert coco.class_names[0] == "person" and coco.class_names[11] == "unused-11"
    assert coco.class_names[91] == "banner" and coco.class_names[181] == "wood" and coco.class_names[182] == "unlabeled"
    assert sum(n.startswith("unused-") for n in coco.class_names) == 11
    assert len(ADE_CLASSES) == 150 and ADE_CLASSES[0] == "wall" and ADE_CLASSES[-1] == "flag"
    city = dataset_info({"name": "cityscapes", "root": "x"})
    assert city.class_names[7] == "road" and city.class_names[26] == "car" and city.class_names[33] == "bicycle"
    m = city.eval_label_map
    assert (m[7], m[8], m[26], m[33], m[0], m[34]) == (0, 1, 13, 18, 255, 255)
    assert len(city.eval_class_names) == 19 and city.eval_class_names[13] == "car"
    celeba = dataset_info({"name": "celebamask-hq", "root": "x"})
    assert celeba.class_names == PARTS + ["background"] and len(PARTS) == 18
    assert celeba.palette[18] == (0, 0, 0) and celeba.palette[0] == (204, 0, 0)  # skin, as CelebAMask-HQ colours


def test_unknown_split_lists_valid_ones():
    with pytest.raises(ConfigError, match="valid splits are: train, val"):
        dataset_info({"name": "coco-stuff", "root": "x", "split": "validation"})
    with pytest.raises(ConfigError, match="label_convention"):
        dataset_info({"name": "ade20k", "root": "x", "label_convention": "oasis"})


# -- COCO-Stuff ------------------------------------------------------------------------------------------------


def test_coco_stuff(tmp_path):
    root = coco_tree(tmp_path, n=3)
    ds = build_dataset({"name": "coco-stuff", "root": str(root), "load_size": 64, "crop_size": 48})
    assert len(ds) == 3 and ds.files[0].name == "000000000139"
    s = ds[0]
    assert set(s) == {"image", "label", "instance", "name"}
    assert s["label"].dtype == torch.int64 and s["instance"].dtype == torch.int64 and s["label"].shape == (48, 48)
    assert set(s["label"].unique().tolist()) <= {0, 1, 40, 96, 181, 182}  # 255 -> don't-care channel 182
    assert (s["label"] == 182).any()
    _assert_aligned(s, {182: 255}, tol=12)
    no_inst = build_dataset({"name": "coco-stuff", "root": str(root), "use_instance": False})
    assert "instance" not in no_inst[0] and no_inst.info.semantic_channels == 183


def test_coco_alignment_under_crop_and_flip(tmp_path):
    """No resize (load_size = file size): crop and flip must move image, label and instance map together."""
    torch.manual_seed(0)
    root = coco_tree(tmp_path, n=1, size=(64, 64))
    ds = build_dataset({"name": "coco-stuff", "root": str(root), "load_size": 64, "crop_size": 40})
    for _ in range(8):
        s = ds[0]
        _assert_aligned(s, {182: 255}, tol=10)
        # instance ids change exactly where 8x8 blocks of the label may change: edges line up
        inst, lab = s["instance"], s["label"]
        assert not ((lab[:, 1:] != lab[:, :-1]) & (inst[:, 1:] == inst[:, :-1])).any()


def test_coco_val_split_and_label_only(tmp_path):
    coco_tree(tmp_path, n=2, split="val", images=False, inst=False)
    ds = build_dataset({"name": "coco-stuff", "root": str(tmp_path), "split": "test", "images": False,
                        "use_instance": False})
    assert len(ds) == 2 and "image" not in ds[0] and not ds.pre.train
    with pytest.raises(SemsynthError, match="image folder .*val_img does not exist.*data.images=false"):
        build_dataset({"name": "coco-stuff", "root": str(tmp_path), "split": "val", "use_instance": False})
    # a plain folder of COCO-Stuff label maps (label-only inference)
    flat = tmp_path / "val_label"
    ds = build_dataset({"name": "coco-stuff", "root": str(flat), "split": "val", "images": False,
                        "use_instance": False})
    assert len(ds) == 2 and ds[1]["label"].max() <= 182


# -- ADE20K ----------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("convention, expected", [("spade", {0: 150, 1: 0, 2: 1, 75: 74, 150: 149}),
                                                  ("scgan", {0: 0, 1: 1, 2: 2, 75: 75, 150: 150})])
def test_ade20k_conventions(tmp_path, convention, expected):
    ade_tree(tmp_path, n=2, size=(64, 96))
    ds = build_dataset({"name": "ade20k", "root": str(tmp_path), "label_convention": convention,
                        "preprocess": "none", "flip": False})  # root = the folder holding ADEChallengeData2016
    assert len(ds) == 2 and ds.files[0].name == "ADE_train_00000001"
    from PIL import Image

    raw = np.asarray(Image.open(ds.files[0].label))
    lab = ds[0]["label"].numpy()
    for v, ch in expected.items():
        assert (lab[raw == v] == ch).all()
    assert ds.info.class_names[expected[1]] == "wall"
    assert ds.info.class_names[ds.info.dontcare_index] == "unlabeled"
    inverse = {ch: v for v, ch in expected.items()}
    _assert_aligned(ds[0], inverse, tol=12)


def test_ade20k_validation_and_label_only(tmp_path):
    base = ade_tree(tmp_path, n=2, split="validation", images=False)
    ds = build_dataset({"name": "ade20k", "root": str(base), "split": "val", "images": False})
    assert len(ds) == 2 and "image" not in ds[0] and ds.files[0].name == "ADE_val_00000001"
    assert ds[0]["label"].shape == (256, 256)


# -- Cityscapes ------------------------------------------------------------------------------------------------


def test_cityscapes(tmp_path):
    root = cityscapes_tree(tmp_path, n=2)
    ds = build_dataset({"name": "cityscapes", "root": str(root), "crop_size": 64, "flip": False})
    assert len(ds) == 4 and ds.files[0].name == "aachen_000000_000019"  # _color / _polygons files ignored
    s = ds[0]
    assert s["image"].shape == (3, 32, 64) and s["label"].shape == (32, 64)  # fixed: crop_size x crop_size / 2
    assert s["instance"].max() >= 24000  # 16-bit instance ids read as they are
    assert set(s["label"].unique().tolist()) <= {0, 7, 11, 21, 23, 24, 26, 33}
    _assert_aligned(s, {}, tol=4)
    things = s["instance"] >= 1000
    assert (s["instance"][things] // 1000 == s["label"][things]).all()
    assert ds.index_problems == []


def test_cityscapes_label_only_flat_folder(tmp_path):
    cityscapes_tree(tmp_path, n=1, split="val", cities=("lindau",), images=False)
    flat = tmp_path / "gtFine" / "val" / "lindau"
    ds = build_dataset({"name": "cityscapes", "root": str(flat), "split": "val", "images": False})
    assert len(ds) == 1 and set(ds[0]) == {"label", "instance", "name"}


# -- CelebAMask-HQ ---------------------------------------------------------------------------------------------


def test_celebamask_hq_merged(tmp_path):
    root = celeba_tree(tmp_path)
    ds = build_dataset({"name": "celebamask-hq", "root": str(root), "load_size": 32, "crop_size": 32})
    assert [f.name for f in ds.files] == ["0", "1", "2"]  # train_list.txt
    s = ds[0]
    assert s["image"].shape == (3, 32, 32)  # 64 px image and 32 px mask: resized to one geometry
    from PIL import Image

    raw = np.asarray(Image.open(ds.files[0].label))
    ds_noflip = build_dataset({"name": "celebamask-hq", "root": str(root), "load_size": 32, "crop_size": 32,
                               "flip": False})
    lab = ds_noflip[0]["label"].numpy()
    assert (lab[raw == 0] == 18).all() and (lab[raw == 1] == 0).all() and (lab[raw == 18] == 17).all()
    _assert_aligned(ds_noflip[0], {18: 0, **{v - 1: v for v in range(1, 19)}}, tol=16)
    test = build_dataset({"name": "celebamask-hq", "root": str(root), "split": "val"})
    assert [f.name for f in test.files] == ["3"] and not test.pre.train


def test_celebamask_hq_parts_merge_like_g_mask(tmp_path):
    merged = celeba_tree(tmp_path / "m", ids=(0, 2001), test=())
    parts = celeba_tree(tmp_path / "p", ids=(0, 2001), test=(), parts=True, merged=False)
    assert list((parts / "CelebAMask-HQ-mask-anno" / "1").glob("02001_*.png"))
    a = build_dataset({"name": "celebamask-hq", "root": str(merged), "preprocess": "none", "flip": False})
    b = build_dataset({"name": "celebamask-hq", "root": str(parts), "preprocess": "none", "flip": False})
    assert [f.name for f in b.files] == ["0", "2001"] and b.files[0].parts
    for i in range(2):
        assert torch.equal(a[i]["label"], b[i]["label"])


def test_celebamask_hq_part_order_overwrites(tmp_path):
    from semsynth.data.celebamask_hq import merge_parts

    from .trees import save

    skin = np.zeros((8, 8), np.uint8)
    skin[2:6, 2:6] = 255
    hair = np.zeros((8, 8), np.uint8)
    hair[:4] = 255  # hair (13) comes after skin (1): it wins where they overlap
    p1, p2 = save(tmp_path / "00000_skin.png", skin), save(tmp_path / "00000_hair.png", hair)
    out = merge_parts([(13, p2), (1, p1)])
    assert out[3, 3] == 13 and out[5, 5] == 1 and out[7, 0] == 0 and out[0, 0] == 13


# -- custom ----------------------------------------------------------------------------------------------------


def test_custom_ids_with_yaml_and_instances(tmp_path):
    root = custom_tree(tmp_path, meta={"num_classes": 5, "class_names": list("abcde"), "dontcare": 255,
                                       "instance_dir": "instances"}, inst=True)
    ds = build_dataset({"name": "custom", "root": str(root), "load_size": 48, "crop_size": 32})
    assert ds.info.num_classes == 6 and ds.info.dontcare_index == 5 and ds.info.class_names[-1] == "dontcare"
    assert ds.info.has_instance and set(ds[0]) == {"image", "label", "instance", "name"}
    _assert_aligned(ds[1], {}, tol=2)


def test_custom_rgb_palette(tmp_path):
    colours = {"sky": [70, 130, 180], "grass": "#00ff00", "road": "128,64,128"}
    rgb = [[70, 130, 180], [0, 255, 0], [128, 64, 128]]
    root = custom_tree(tmp_path, num_classes=3, rgb_palette=rgb, size=(64, 64))
    (root / "palette.json").write_text(__import__("json").dumps(colours))
    ds = build_dataset({"name": "custom", "root": str(root), "palette": "palette.json", "preprocess": "none",
                        "flip": False})
    assert ds.info.class_names == ["sky", "grass", "road"] and ds.info.palette[1] == (0, 255, 0)
    s = ds[0]
    from PIL import Image

    rgb_file = np.asarray(Image.open(ds.files[0].label))
    assert (np.array(rgb)[s["label"].numpy()] == rgb_file).all()


def test_custom_inferred_classes_print_a_confirmation(tmp_path, capsys):
    root = custom_tree(tmp_path, num_classes=4)
    ds = build_dataset({"name": "custom", "root": str(root)})
    assert ds.info.num_classes == 4
    err = capsys.readouterr().err
    assert "num_classes is declared nowhere" in err and "num_classes=4" in err


def test_custom_split_subfolders_and_flip_only_on_train(tmp_path):
    custom_tree(tmp_path / "train", meta=None)
    custom_tree(tmp_path / "val", n=2)
    (tmp_path / "dataset.yaml").write_text("num_classes: 5\n")
    tr = build_dataset({"name": "custom", "root": str(tmp_path)})
    va = build_dataset({"name": "custom", "root": str(tmp_path), "split": "val"})
    assert len(tr) == 3 and len(va) == 2 and tr.pre.train and not va.pre.train


def test_synthetic_faces_on_disk_through_custom(tmp_path):
    from semsynth.data.synthetic_faces import write_synthetic_faces

    out = write_synthetic_faces(tmp_path / "sf", 4, size=64)
    ds = build_dataset({"name": "custom", "root": str(out), "preprocess": "none"})
    gen = build_dataset({"name": "synthetic-faces", "resolution": 64, "num_samples": 4})
    assert ds.info.num_classes == gen.info.num_classes == 15
    assert ds.info.class_names == gen.info.class_names and ds.info.palette == gen.info.palette
    a = build_dataset({"name": "custom", "root": str(out), "preprocess": "none", "flip": False})
    assert torch.equal(a[2]["label"], gen[2]["label"])
    assert torch.allclose(a[2]["image"], gen[2]["image"])


def test_every_folder_dataset_is_a_torch_dataset_with_a_loader(tmp_path):
    root = coco_tree(tmp_path, n=4)
    ds = build_dataset({"name": "coco-stuff", "root": str(root), "load_size": 64, "crop_size": 32})
    batch = next(iter(torch.utils.data.DataLoader(ds, batch_size=2, num_workers=1)))
    assert batch["image"].shape == (2, 3, 32, 32) and batch["instance"].shape == (2, 32, 32)
    assert {"coco-stuff", "ade20k", "cityscapes", "celebamask-hq", "custom"} <= set(DATASETS.names())


# -- label-only folders, every kind -----------------------------------------------------------------------------


@pytest.mark.parametrize("name, make, options", [
    ("coco-stuff", lambda t: coco_tree(t, n=2, images=False, inst=False) / "train_label", {"use_instance": False}),
    ("ade20k", lambda t: ade_tree(t, n=2, images=False) / "annotations" / "training", {}),
    ("cityscapes", lambda t: cityscapes_tree(t, n=1, cities=("ulm", "jena"), images=False), {}),
    ("celebamask-hq", lambda t: celeba_tree(t, ids=(0, 1), test=(), images=False) / "CelebAMask-HQ-mask", {}),
    ("celebamask-hq", lambda t: celeba_tree(t, ids=(0, 1), test=(), images=False, parts=True, merged=False), {}),
    ("custom", lambda t: custom_tree(t, n=2, meta=None) / "labels", {"num_classes": 5}),
])
def test_label_only_for_every_kind(tmp_path, name, make, options):
    root = make(tmp_path)
    ds = build_dataset({"name": name, "root": str(root), "images": False, "split": "train", **options})
    assert len(ds) == 2
    for i in range(len(ds)):
        s = ds[i]
        assert "image" not in s and s["label"].dtype == torch.int64 and s["label"].max() < ds.info.num_classes
        assert ("instance" in s) == ds.info.has_instance

"""synthetic-faces: the procedural face-parsing dataset (shapes, determinism, content, correlations, files)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import yaml
from PIL import Image

from semsynth.data import DATASETS, build_dataset
from semsynth.data.synthetic_faces import (CLASS_NAMES, PALETTE, SyntheticFaces, render_face,
                                           write_synthetic_faces)
from semsynth.errors import ConfigError

C = {name: i for i, name in enumerate(CLASS_NAMES)}


@pytest.fixture(scope="module")
def samples64() -> list[tuple[np.ndarray, np.ndarray]]:
    ds = SyntheticFaces("train", resolution=64, num_samples=50, seed=11)
    return [ds.sample_arrays(i) for i in range(len(ds))]


def _means(image: np.ndarray, label: np.ndarray) -> dict[int, np.ndarray]:
    f = image.astype(np.float64)
    return {k: f[label == k].mean(0) for k in np.unique(label)}


def test_class_list_and_palette():
    assert CLASS_NAMES[:15] == ["background", "skin", "nose", "l_eye", "r_eye", "l_brow", "r_brow", "l_ear",
                                "r_ear", "mouth", "u_lip", "l_lip", "hair", "neck", "cloth"]
    assert len(PALETTE) == len(CLASS_NAMES) and len(set(PALETTE)) == len(PALETTE)
    assert all(len(c) == 3 and all(0 <= v <= 255 for v in c) for c in PALETTE)


def test_sample_shapes_dtypes_and_ranges():
    ds = SyntheticFaces("val", resolution=64, num_samples=4)
    s = ds[2]
    assert s["name"] == "val_000002"
    assert s["image"].dtype == torch.float32 and s["image"].shape == (3, 64, 64)
    assert -1.0 <= s["image"].min() and s["image"].max() <= 1.0
    assert s["image"].std() > 0.05  # not a flat picture
    assert s["label"].dtype == torch.int64 and s["label"].shape == (64, 64)
    image, label = ds.sample_arrays(2)
    assert image.dtype == np.uint8 and image.shape == (64, 64, 3)
    assert label.dtype == np.uint8 and label.shape == (64, 64)
    # The tensors are the arrays, rescaled.
    assert torch.equal(s["label"], torch.from_numpy(label).long())
    assert torch.allclose((s["image"] + 1) * 127.5, torch.from_numpy(image).permute(2, 0, 1).float(), atol=1e-3)


def test_info():
    ds = SyntheticFaces(resolution=96, num_samples=3)
    info = ds.info
    assert info.name == "synthetic-faces" and info.num_classes == len(CLASS_NAMES)
    assert info.class_names == CLASS_NAMES and info.palette == PALETTE
    assert info.dontcare_index is None and info.has_instance is False and info.resolution == (96, 96)
    assert len(ds) == 3 and ds[0]["image"].shape == (3, 96, 96)


def test_deterministic_and_order_independent():
    a = SyntheticFaces(resolution=64, num_samples=8, seed=5)
    first = a.sample_arrays(3)
    for i in (7, 0, 5):  # other accesses in between must not matter
        a.sample_arrays(i)
    again = a.sample_arrays(3)
    fresh = SyntheticFaces(resolution=64, num_samples=100, seed=5).sample_arrays(3)
    for x in (again, fresh):
        assert np.array_equal(first[0], x[0]) and np.array_equal(first[1], x[1])
    assert torch.equal(a[3]["image"], a[3]["image"])
    assert a[-1]["name"] == "train_000007" and np.array_equal(a.sample_arrays(-1)[0], a.sample_arrays(7)[0])


@pytest.mark.parametrize("other", [dict(seed=6), dict(split="val"), dict(split="test"), dict(index=4)])
def test_different_seed_split_or_index_differ(other):
    base = SyntheticFaces("train", resolution=64, num_samples=8, seed=5).sample_arrays(3)
    ds = SyntheticFaces(other.get("split", "train"), resolution=64, num_samples=8, seed=other.get("seed", 5))
    img, lab = ds.sample_arrays(other.get("index", 3))
    assert not np.array_equal(img, base[0])
    assert not np.array_equal(lab, base[1])


def test_index_out_of_range():
    ds = SyntheticFaces(num_samples=5)
    with pytest.raises(IndexError):
        ds[5]
    with pytest.raises(IndexError):
        ds.sample_arrays(-6)


def test_label_ids_are_classes(samples64):
    for _, label in samples64:
        assert label.max() < len(CLASS_NAMES)


def test_parts_present_in_nearly_all_faces(samples64):
    n = len(samples64)
    present = np.array([np.bincount(lab.ravel(), minlength=len(CLASS_NAMES)) > 0 for _, lab in samples64])
    for name in ["background", "skin", "nose", "l_eye", "r_eye", "hair", "neck", "cloth"]:
        assert present[:, C[name]].sum() >= 0.95 * n, name
    lips = present[:, C["u_lip"]] | present[:, C["l_lip"]] | present[:, C["mouth"]]
    assert lips.sum() >= 0.95 * n
    assert (present[:, C["l_brow"]] & present[:, C["r_brow"]]).sum() >= 0.7 * n
    # Open mouths and ears are optional: each shows up sometimes, but not always.
    assert 0 < present[:, C["mouth"]].sum() < n
    assert present[:, C["l_ear"]].sum() > 0.5 * n and present[:, C["r_ear"]].sum() > 0.5 * n


def test_left_right_convention(samples64):
    """l_* parts are the subject's left: on the image's right."""
    for _, lab in samples64[:20]:
        xs = np.arange(lab.shape[1])
        for left, right in (("l_eye", "r_eye"), ("l_brow", "r_brow")):
            if (lab == C[left]).any() and (lab == C[right]).any():
                assert xs[(lab == C[left]).any(0)].mean() > xs[(lab == C[right]).any(0)].mean()


def test_image_and_label_agree(samples64):
    distinct, explained = 0, []
    for img, lab in samples64:
        m = _means(img, lab)
        distinct += np.linalg.norm(m[C["skin"]] - m[C["background"]]) > 25
        # The per-class mean colour explains most of the image: regions are painted by their class.
        table = np.zeros((len(CLASS_NAMES), 3))
        for k, v in m.items():
            table[k] = v
        f = img.astype(np.float64)
        explained.append(1 - (f - table[lab]).var() / f.var())
    assert distinct >= 0.85 * len(samples64)
    assert np.mean(explained) > 0.6


def test_appearance_correlations():
    """Eyes share an iris colour, brows the hair colour, lips one lip colour, neck the skin tone."""
    ds = SyntheticFaces("test", resolution=128, num_samples=30, seed=2)
    eyes = brows = lips = counted_brows = 0
    rows = []
    for i in range(len(ds)):
        m = _means(*ds.sample_arrays(i))
        d = lambda x, y: np.linalg.norm(m[C[x]] - m[C[y]])  # noqa: E731
        eyes += d("l_eye", "r_eye") < min(d("l_eye", "skin"), d("r_eye", "skin"))
        lips += d("u_lip", "l_lip") < min(d("u_lip", "skin"), d("l_lip", "skin"))
        if C["l_brow"] in m and C["r_brow"] in m:
            counted_brows += 1
            brows += max(d("l_brow", "hair"), d("r_brow", "hair")) < min(d("l_brow", "skin"), d("r_brow", "skin"))
            rows.append([m[C[k]].mean() for k in ("l_brow", "hair", "skin", "neck")])
    assert eyes >= 0.85 * len(ds) and lips >= 0.8 * len(ds)
    assert counted_brows >= 20 and brows >= 0.75 * counted_brows
    brow, hair, skin, neck = np.array(rows).T  # brightness across faces
    assert np.corrcoef(brow, hair)[0, 1] > 0.8 > np.corrcoef(brow, skin)[0, 1]
    assert np.corrcoef(neck, skin)[0, 1] > 0.8


def test_render_face_non_square():
    img, lab = render_face(np.random.default_rng(0), (32, 64))
    assert img.shape == (32, 64, 3) and lab.shape == (32, 64)
    assert (lab == C["skin"]).any()


def test_registered_and_built_from_config():
    assert "synthetic-faces" in DATASETS
    ds = build_dataset({"name": "synthetic-faces", "resolution": 64, "num_samples": 10})
    assert isinstance(ds, SyntheticFaces) and len(ds) == 10
    assert ds.config == {"name": "synthetic-faces", "split": "train", "resolution": 64, "num_samples": 10,
                         "seed": 0}
    batch = next(iter(torch.utils.data.DataLoader(ds, batch_size=4)))
    assert batch["image"].shape == (4, 3, 64, 64) and batch["label"].shape == (4, 64, 64)
    assert batch["name"] == [f"train_{i:06d}" for i in range(4)]


@pytest.mark.parametrize("options, shown", [({"resolution": 50}, "50"), ({"resolution": 16}, "16"),
                                            ({"split": "bogus"}, "bogus"), ({"num_samples": 0}, "0")])
def test_bad_options_raise_config_error(options, shown):
    with pytest.raises(ConfigError, match=shown):
        build_dataset({"name": "synthetic-faces", **options})
    with pytest.raises(ConfigError, match=shown):
        SyntheticFaces(**options)


def test_bad_split_names_valid_ones():
    with pytest.raises(ConfigError, match="train, val, test"):
        SyntheticFaces("bogus")


def test_write_synthetic_faces(tmp_path):
    out = write_synthetic_faces(tmp_path / "faces", num=3, size=64, seed=4, split="val")
    assert out == tmp_path / "faces"
    ds = SyntheticFaces("val", resolution=64, num_samples=3, seed=4)
    for i in range(3):
        img, lab = ds.sample_arrays(i)
        with Image.open(out / "images" / f"val_{i:06d}.png") as f:
            assert f.mode == "RGB" and np.array_equal(np.asarray(f), img)
        with Image.open(out / "labels" / f"val_{i:06d}.png") as f:
            assert f.mode == "L" and np.array_equal(np.asarray(f), lab)
    assert len(list((out / "images").iterdir())) == 3
    meta = yaml.safe_load((out / "dataset.yaml").read_text())
    assert meta["name"] == "synthetic-faces" and meta["class_names"] == CLASS_NAMES
    assert meta["num_classes"] == len(CLASS_NAMES) and meta["dontcare"] is None
    assert meta["palette"] == [list(c) for c in PALETTE]

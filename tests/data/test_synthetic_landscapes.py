"""synthetic-landscapes: the procedural outdoor world (shapes, determinism, content, lighting, files)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import yaml
from PIL import Image

from semsynth.cli import main
from semsynth.data import DATASETS, build_dataset
from semsynth.data.synthetic_landscapes import (CLASS_NAMES, PALETTE, SyntheticLandscapes, _clean, _layout,
                                                _paint, render_landscape, write_synthetic_landscapes)
from semsynth.data.worlds import builtin_worlds, class_frequencies, world_class
from semsynth.errors import ConfigError

C = {name: i for i, name in enumerate(CLASS_NAMES)}
GROUND = [C[n] for n in ("grass", "sand", "road", "flowers", "water")]


@pytest.fixture(scope="module")
def ds64() -> SyntheticLandscapes:
    return SyntheticLandscapes("train", resolution=64, num_samples=150, seed=0)


@pytest.fixture(scope="module")
def samples64(ds64) -> list[tuple[np.ndarray, np.ndarray]]:
    return [ds64.sample_arrays(i) for i in range(len(ds64))]


def test_class_list_and_palette():
    for name in ("sky", "cloud", "mountain", "snow", "rock", "hill", "grass", "tree", "bush", "water", "sand",
                 "road", "house"):
        assert name in CLASS_NAMES
    assert len(PALETTE) == len(CLASS_NAMES) and len(set(PALETTE)) == len(PALETTE)
    assert all(len(c) == 3 and all(0 <= v <= 255 for v in c) for c in PALETTE)


def test_sample_shapes_dtypes_ranges_and_info():
    ds = SyntheticLandscapes("val", resolution=96, num_samples=4)
    s = ds[2]
    assert s["name"] == "val_000002"
    assert s["image"].dtype == torch.float32 and s["image"].shape == (3, 96, 96)
    assert -1.0 <= s["image"].min() and s["image"].max() <= 1.0 and s["image"].std() > 0.05
    assert s["label"].dtype == torch.int64 and s["label"].shape == (96, 96)
    image, label = ds.sample_arrays(2)
    assert image.dtype == np.uint8 and image.shape == (96, 96, 3)
    assert label.dtype == np.uint8 and label.shape == (96, 96)
    assert torch.equal(s["label"], torch.from_numpy(label).long())
    rgb = torch.from_numpy(image).permute(2, 0, 1).float()
    assert torch.allclose((s["image"] + 1) * 127.5, rgb, atol=1e-3)
    info = ds.info
    assert info.name == "synthetic-landscapes" and info.num_classes == len(CLASS_NAMES) == 14
    assert info.class_names == CLASS_NAMES and info.palette == PALETTE
    assert info.dontcare_index is None and info.has_instance is False and info.resolution == (96, 96)


def test_deterministic_and_order_independent():
    a = SyntheticLandscapes(resolution=64, num_samples=8, seed=5)
    first = a.sample_arrays(3)
    for i in (7, 0, 5):  # other accesses in between must not matter
        a.sample_arrays(i)
    again = a.sample_arrays(3)
    fresh = SyntheticLandscapes(resolution=64, num_samples=100, seed=5).sample_arrays(3)
    for x in (again, fresh):
        assert np.array_equal(first[0], x[0]) and np.array_equal(first[1], x[1])
    assert a[-1]["name"] == "train_000007" and np.array_equal(a.sample_arrays(-1)[0], a.sample_arrays(7)[0])
    with pytest.raises(IndexError):
        a[8]


@pytest.mark.parametrize("other", [{"seed": 6}, {"split": "val"}, {"split": "test"}, {"index": 4}])
def test_different_seed_split_or_index_differ(other):
    base = SyntheticLandscapes("train", resolution=64, num_samples=8, seed=5).sample_arrays(3)
    split, seed = other.get("split", "train"), other.get("seed", 5)
    ds = SyntheticLandscapes(split, resolution=64, num_samples=8, seed=seed)
    img, lab = ds.sample_arrays(other.get("index", 3))
    assert not np.array_equal(img, base[0]) and not np.array_equal(lab, base[1])


def test_every_class_appears_in_a_fair_share_of_scenes(samples64):
    counts = np.array([np.bincount(lab.ravel(), minlength=len(CLASS_NAMES)) for _, lab in samples64])
    images, pixels = (counts > 0).mean(0), counts.sum(0) / counts.sum()
    for name in CLASS_NAMES:
        assert images[C[name]] >= 0.1 and pixels[C[name]] >= 0.001, (name, images[C[name]], pixels[C[name]])
    assert images[C["sky"]] == 1.0  # every scene has a sky above its horizon
    # class_frequencies (documented in docs/data.md) reports the same numbers
    small = SyntheticLandscapes("train", resolution=64, num_samples=150, seed=0)
    freq = class_frequencies(small, 20)
    sub = counts[:20]
    assert list(freq) == CLASS_NAMES
    for name, (img_share, px_share) in freq.items():
        assert img_share == pytest.approx((sub[:, C[name]] > 0).mean())
        assert px_share == pytest.approx(sub[:, C[name]].sum() / sub.sum())


def test_label_ids_valid_and_no_pixel_alone(samples64):
    for _, lab in samples64:
        assert lab.max() < len(CLASS_NAMES)
        pad = np.pad(lab, 1, mode="reflect")
        alone = ((pad[:-2, 1:-1] != lab) & (pad[2:, 1:-1] != lab) & (pad[1:-1, :-2] != lab)
                 & (pad[1:-1, 2:] != lab))
        assert not alone.any()


def test_clean_leaves_no_pixel_alone_even_on_noise():
    """A checkerboard is the worst case: every pixel is alone; merging neighbours at once would swap them."""
    rng = np.random.default_rng(0)
    board = np.indices((16, 16)).sum(0).astype(np.uint8) % 2
    for label in (board, rng.integers(0, 4, (40, 40), dtype=np.uint8)):
        look = label.copy() + 100
        _clean(label, look)
        pad = np.pad(label, 1, mode="reflect")
        alone = ((pad[:-2, 1:-1] != label) & (pad[2:, 1:-1] != label) & (pad[1:-1, :-2] != label)
                 & (pad[1:-1, 2:] != label))
        assert not alone.any()
        assert np.array_equal(look, label + 100)  # the carried map moved with the class


@pytest.mark.parametrize("size", [64, 128, (64, 160)])
def test_every_pixel_is_painted(size):
    h, w = (size, size) if isinstance(size, int) else size
    for i in range(25):
        rng = np.random.default_rng([i, h])
        s = _layout(rng, h, w)
        _clean(s.label, s.look, s.mountain_layer, s.hill_layer)
        img = _paint(rng, s)
        assert img.shape == (h, w, 3) and not np.isnan(img).any(), i


def test_same_scene_at_every_resolution():
    """Sizes are in picture heights: the 128 layout, downsampled, is the 64 one but for edge pixels."""
    a = SyntheticLandscapes(resolution=64, num_samples=20, seed=2)
    b = SyntheticLandscapes(resolution=128, num_samples=20, seed=2)
    agree = []
    for i in range(20):
        assert {k: v for k, v in a.sample_meta(i).items() if k != "horizon_row"} == \
            {k: v for k, v in b.sample_meta(i).items() if k != "horizon_row"}
        assert b.sample_meta(i)["horizon_row"] == pytest.approx(2 * a.sample_meta(i)["horizon_row"])
        agree.append((a.sample_arrays(i)[1] == b.sample_arrays(i)[1][::2, ::2]).mean())
    assert np.mean(agree) > 0.93 and min(agree) > 0.85, agree


def test_horizon_and_perspective(ds64, samples64):
    """No ground above the horizon; a road is wider near the camera than far away."""
    roads = wider = 0
    for i, (_, lab) in enumerate(samples64):
        row = ds64.sample_meta(i)["horizon_row"]
        assert not np.isin(lab[: max(int(row) - 1, 0)], GROUND).any(), i
        road = lab == C["road"]
        near, far = road[-2].sum(), road[int(row) + 4].sum()
        if road[-2].any() and road[int(row) + 4].any():
            roads += 1
            wider += near > far
    assert roads >= 10 and wider >= 0.9 * roads


def test_textures_are_not_flat(samples64):
    """Large regions vary inside (texture, shading), but each class region is still mostly its own colour."""
    stds, explained = [], []
    for img, lab in samples64[:60]:
        f = img.astype(np.float64)
        for k in (C["grass"], C["water"], C["mountain"], C["sky"]):
            m = lab == k
            if m.sum() > 300:
                stds.append(f[m].mean(1).std())
        table = np.zeros((len(CLASS_NAMES), 3))
        for k in np.unique(lab):
            table[k] = f[lab == k].mean(0)
        explained.append(1 - (f - table[lab]).var() / f.var())
    assert np.median(stds) > 4.0 and min(stds) > 0.5
    assert np.mean(explained) > 0.6


def test_lighting_ties_the_colours_together():
    """The sky's colour shows on the water; a sunset sky is warmer than a day sky; snow is the brightest."""
    ds = SyntheticLandscapes("val", resolution=64, num_samples=120, seed=1)
    water, sky, warmth, snow_brightest, snowy = [], [], {}, 0, 0
    for i in range(len(ds)):
        img, lab = ds.sample_arrays(i)
        f = img.astype(np.float64)
        s = f[lab == C["sky"]].mean(0)
        warmth.setdefault(ds.sample_meta(i)["tod"], []).append(s[0] - s[2])
        if (lab == C["water"]).sum() > 50:
            water.append(f[lab == C["water"]].mean(0))
            sky.append(s)
        if (lab == C["snow"]).sum() > 30 and (lab == C["rock"]).sum() + (lab == C["mountain"]).sum() > 30:
            snowy += 1
            other = f[(lab == C["rock"]) | (lab == C["mountain"])].mean()
            snow_brightest += f[lab == C["snow"]].mean() > other
    water, sky = np.array(water), np.array(sky)
    assert len(water) >= 40
    assert all(np.corrcoef(water[:, c], sky[:, c])[0, 1] > 0.5 for c in range(3))
    assert np.mean(warmth["sunset"]) > np.mean(warmth["day"]) + 50
    assert snowy >= 20 and snow_brightest >= 0.9 * snowy


def test_render_landscape_non_square_and_meta():
    img, lab, meta = render_landscape(np.random.default_rng(0), (64, 160), return_meta=True)
    assert img.shape == (64, 160, 3) and lab.shape == (64, 160)
    assert meta["tod"] in ("day", "golden", "sunset", "overcast", "dusk")
    assert meta["season"] in ("spring", "summer", "autumn", "winter") and 0 < meta["horizon_row"] < 64


def test_registered_built_from_config_and_listed_as_a_world():
    assert "synthetic-landscapes" in DATASETS
    ds = build_dataset({"name": "synthetic-landscapes", "resolution": 64, "num_samples": 10})
    assert isinstance(ds, SyntheticLandscapes) and len(ds) == 10
    assert ds.config == {"name": "synthetic-landscapes", "split": "train", "resolution": 64,
                         "num_samples": 10, "seed": 0}
    batch = next(iter(torch.utils.data.DataLoader(ds, batch_size=4)))
    assert batch["image"].shape == (4, 3, 64, 64) and batch["label"].shape == (4, 64, 64)
    assert set(builtin_worlds()) == {"synthetic-faces", "synthetic-landscapes"}
    assert world_class("synthetic-landscapes") is SyntheticLandscapes
    with pytest.raises(ConfigError, match="not a built-in world; 'data make' can write: synthetic-faces, "
                                          "synthetic-landscapes"):
        world_class("coco-stuff")


@pytest.mark.parametrize("options, shown", [
    ({"resolution": 32}, "resolution must be a multiple of 32 and >= 64, got 32"),
    ({"resolution": 100}, "got 100"), ({"resolution": 64.0}, "64.0"),
    ({"split": "bogus"}, "train, val, test"),
    ({"num_samples": 0}, "num_samples must be an integer >= 1, got 0"), ({"seed": -1}, "seed must be")])
def test_bad_options_raise_config_error(options, shown):
    with pytest.raises(ConfigError, match=shown):
        build_dataset({"name": "synthetic-landscapes", **options})
    with pytest.raises(ConfigError, match=shown):
        SyntheticLandscapes(**options)


def test_data_make_writes_what_the_folder_dataset_reads_back(tmp_path, capsys):
    out = tmp_path / "land"
    assert main(["data", "make", "synthetic-landscapes", "--out", str(out), "--num", "3",
                 "--resolution", "64", "--seed", "4", "--split", "val"]) == 0
    assert f"wrote 3 synthetic-landscapes samples at 64x64 to {out}" in capsys.readouterr().out
    ds = SyntheticLandscapes("val", resolution=64, num_samples=3, seed=4)
    for i in range(3):
        img, lab = ds.sample_arrays(i)
        with Image.open(out / "images" / f"val_{i:06d}.png") as f:
            assert f.mode == "RGB" and np.array_equal(np.asarray(f), img)
        with Image.open(out / "labels" / f"val_{i:06d}.png") as f:
            assert f.mode == "L" and np.array_equal(np.asarray(f), lab)
    meta = yaml.safe_load((out / "dataset.yaml").read_text())
    assert meta == {"name": "synthetic-landscapes", "num_classes": 14, "class_names": CLASS_NAMES,
                    "palette": [list(c) for c in PALETTE], "dontcare": None}
    # The custom folder dataset reads the same samples back, with the world's class names and palette.
    folder = build_dataset({"name": "custom", "root": str(out), "split": "val", "preprocess": "none",
                            "flip": False})
    assert folder.info.class_names == CLASS_NAMES and folder.info.palette == PALETTE and len(folder) == 3
    for i in range(3):
        a, b = folder[i], ds[i]
        assert torch.equal(a["label"], b["label"])
        assert torch.allclose(a["image"], b["image"], atol=1e-6)


def test_writer_function_and_default_size(tmp_path, capsys):
    out = write_synthetic_landscapes(tmp_path / "w", num=1, size=64, seed=9, progress=False)
    img, _ = SyntheticLandscapes(resolution=64, num_samples=1, seed=9).sample_arrays(0)
    with Image.open(out / "images" / "train_000000.png") as f:
        assert np.array_equal(np.asarray(f), img)
    # Without --size each world writes at its own default: 128 for landscapes, 64 for faces.
    assert main(["data", "make", "synthetic-landscapes", "--out", str(tmp_path / "d"), "--num", "1"]) == 0
    with Image.open(tmp_path / "d" / "labels" / "train_000000.png") as f:
        assert f.size == (128, 128)
    assert main(["data", "make", "synthetic-faces", "--out", str(tmp_path / "f"), "--num", "1"]) == 0
    with Image.open(tmp_path / "f" / "labels" / "train_000000.png") as f:
        assert f.size == (64, 64)

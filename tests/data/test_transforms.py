"""Preprocessing: output sizes per mode, NEAREST for ids, image range, and one geometry for all three maps."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from semsynth.data.transforms import Preprocess, apply_to_ids, apply_to_image, image_to_tensor
from semsynth.errors import ConfigError, DataError


def _pre(**kw) -> Preprocess:
    return Preprocess(**{"mode": "resize_and_crop", "load_size": 286, "crop_size": 256, **kw})


@pytest.mark.parametrize("kw, size, out", [
    ({"mode": "resize_and_crop"}, (640, 480), (256, 256)),
    ({"mode": "resize_and_crop", "train": False}, (640, 480), (256, 256)),
    ({"mode": "scale_width_and_crop", "load_size": 300}, (600, 520), (256, 256)),
    ({"mode": "fixed", "crop_size": 512, "aspect_ratio": 2.0}, (2048, 1024), (256, 512)),
    ({"mode": "none"}, (500, 375), (384, 512)),
])
def test_output_sizes(kw, size, out):
    pre = _pre(**kw)
    plan = pre.plan(size)
    assert plan.out_hw == out
    lab = np.zeros(size[::-1], np.uint8)
    assert apply_to_ids(lab, plan).shape == out
    assert apply_to_image(Image.new("RGB", size), plan).shape == (*out, 3)
    if kw["mode"] != "none":
        assert pre.resolution() == out


def test_eval_split_is_deterministic_and_unflipped():
    pre = _pre(train=False, mode="scale_width_and_crop", load_size=300)
    plans = {pre.plan((600, 700)) for _ in range(20)}
    assert len(plans) == 1
    (plan,) = plans
    assert not plan.flip and plan.size == (256, 298) and plan.box == (0, 21, 256, 256)  # width -> crop_size, centre


def test_random_crops_and_flips_vary_on_train():
    torch.manual_seed(0)
    pre = _pre()
    plans = [pre.plan((640, 480)) for _ in range(40)]
    assert len({p.box for p in plans}) > 10
    assert {p.flip for p in plans} == {True, False}
    assert not any(_pre(flip=False).plan((640, 480)).flip for _ in range(20))


def test_nearest_keeps_ids_and_image_range():
    rng = np.random.default_rng(0)
    lab = rng.choice([3, 77, 182], size=(37, 53)).astype(np.uint8)
    plan = _pre(load_size=100, crop_size=64).plan((53, 37))
    out = apply_to_ids(lab, plan)
    assert set(np.unique(out)) <= {3, 77, 182}  # no interpolated ids
    inst = (rng.integers(0, 40000, size=(37, 53))).astype(np.int32)
    assert set(np.unique(apply_to_ids(inst, plan))) <= set(np.unique(inst))
    img = image_to_tensor(apply_to_image(Image.fromarray(rng.integers(0, 256, (37, 53, 3), dtype=np.uint8)), plan))
    assert img.dtype == torch.float32 and img.shape == (3, 64, 64)
    assert img.min() >= -1 and img.max() <= 1
    assert image_to_tensor(np.full((2, 2, 3), 255, np.uint8)).eq(1).all()
    assert image_to_tensor(np.zeros((2, 2, 3), np.uint8)).eq(-1).all()


def test_same_plan_keeps_maps_aligned():
    """Crop + flip with no resize: the image, label and instance map of each pixel still agree exactly."""
    torch.manual_seed(1)
    ys, xs = np.mgrid[0:64, 0:64]
    lab = ((xs * 3 + ys * 5) % 180).astype(np.uint8)
    img = np.stack([lab, xs.astype(np.uint8), ys.astype(np.uint8)], -1)
    inst = (ys * 1000 + xs).astype(np.int32)
    pre = _pre(load_size=64, crop_size=40)
    for _ in range(10):
        plan = pre.plan((64, 64))
        a, b, c = apply_to_image(Image.fromarray(img), plan), apply_to_ids(lab, plan), apply_to_ids(inst, plan)
        assert np.array_equal(a[..., 0], b)
        assert np.array_equal(a[..., 1].astype(np.int32) + a[..., 2].astype(np.int32) * 1000, c)


@pytest.mark.parametrize("kw, msg", [
    ({"mode": "crop"}, "valid modes are"),
    ({"load_size": 200}, "must be >= crop_size"),
    ({"crop_size": 0}, "positive integer"),
    ({"aspect_ratio": 0}, "aspect_ratio"),
    ({"flip": "yes"}, "true or false"),
])
def test_bad_options(kw, msg):
    with pytest.raises(ConfigError, match=msg):
        _pre(**kw)


def test_scale_width_too_short_is_explained():
    with pytest.raises(DataError, match="preprocess=resize_and_crop"):
        _pre(mode="scale_width_and_crop").plan((640, 360))

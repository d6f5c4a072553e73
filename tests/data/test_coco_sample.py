"""The 13 real COCO-Stuff samples in <repo>/../shared/data/coco_stuff_sample, and the shared encoding."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from semsynth.data import build_dataset
from semsynth.data.check import check_dataset
from semsynth.errors import DataError
from semsynth.layers.functional import instance_edges, one_hot_label, semantic_input

from .trees import COCO_SAMPLE

needs_sample = pytest.mark.skipif(not (COCO_SAMPLE / "train_label").is_dir(),
                                  reason=f"the real COCO-Stuff samples are not at {COCO_SAMPLE}")


@needs_sample
def test_real_samples_load_and_encode():
    ds = build_dataset({"name": "coco-stuff", "root": str(COCO_SAMPLE)})
    assert len(ds) == 13
    info = ds.info
    batch = [ds[i] for i in range(len(ds))]
    for s in batch:
        assert s["image"].shape == (3, 256, 256) and s["label"].shape == s["instance"].shape == (256, 256)
        assert -1 <= s["image"].min() and s["image"].max() <= 1
    for s in batch:  # one sample at a time: 184 x 256 x 256 floats each
        sem = semantic_input(s["label"][None], info.num_classes, s["instance"][None])
        assert sem.shape == (1, 184, 256, 256) and info.semantic_channels == 184
        onehot = sem[:, :183]
        assert torch.equal(onehot.sum(1), torch.ones(1, 256, 256))  # exactly one class per pixel
        assert torch.equal(onehot[0, 182].bool(), s["label"] == 182)
        assert set(sem[0, 183].unique().tolist()) <= {0.0, 1.0}
    assert sum(int((s["label"] == 182).sum()) for s in batch) > 0 and info.class_names[182] == "unlabeled"
    # 255 (unlabeled) in the files lands in the don't-care channel 182, nowhere else
    ds_full = build_dataset({"name": "coco-stuff", "root": str(COCO_SAMPLE), "preprocess": "none", "flip": False,
                             "use_instance": False})
    for i in range(len(ds_full)):
        raw = np.asarray(Image.open(ds_full.files[i].label))
        s = ds_full[i]
        if raw.shape == tuple(s["label"].shape):
            assert torch.equal(torch.from_numpy(raw == 255), s["label"] == 182)


@needs_sample
def test_real_samples_pass_the_check():
    rep = check_dataset("coco-stuff", COCO_SAMPLE)
    assert rep.ok and rep.samples == 13 and not rep.warnings
    assert rep.hist.sum() == sum(np.asarray(Image.open(p)).size for p in (COCO_SAMPLE / "train_label").iterdir())
    assert rep.hist[182] > 0 and rep.hist[0] > 0  # unlabeled and person pixels


def test_instance_edges_on_a_hand_made_example():
    inst = torch.tensor([[1, 1, 2, 2],
                         [1, 1, 2, 2],
                         [3, 3, 3, 3],
                         [3, 3, 3, 3]])
    expected = torch.tensor([[0, 1, 1, 0],
                             [1, 1, 1, 1],
                             [1, 1, 1, 1],
                             [0, 0, 0, 0]], dtype=torch.float32)
    assert torch.equal(instance_edges(inst[None])[0, 0], expected)
    assert instance_edges(torch.zeros(1, 5, 5, dtype=torch.long)).sum() == 0  # one instance: no edge


def test_one_hot_rejects_bad_ids_in_plain_words():
    with pytest.raises(DataError, match=r"class ids \[183\] outside 0..182"):
        one_hot_label(torch.full((1, 2, 2), 183), 183)

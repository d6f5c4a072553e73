"""Tiny dataset trees that mirror the real layouts file for file (names, PIL modes, value ranges), for tests.

Every writer returns the root. Label maps are made of 8x8 blocks whose value is a function of the block, images
paint each block a flat colour derived from its label, and instance maps number the blocks, so any
misalignment between image, label and instance after a crop or flip is visible.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from PIL import Image

REPO = Path(__file__).resolve().parents[2]
SHARED = REPO.parent / "shared"
COCO_SAMPLE = SHARED / "data" / "coco_stuff_sample"
BLOCK = 8


def blocks(h: int, w: int, values: list[int], seed: int = 0) -> np.ndarray:
    """``[h, w]`` map of 8x8 blocks, each holding one of ``values`` (chosen at random)."""
    rng = np.random.default_rng(seed)
    grid = rng.choice(values, size=(-(-h // BLOCK), -(-w // BLOCK)))
    return np.kron(grid, np.ones((BLOCK, BLOCK), dtype=grid.dtype))[:h, :w]


def block_ids(h: int, w: int) -> np.ndarray:
    """A distinct id per 8x8 block (an instance map)."""
    ys, xs = np.mgrid[0:h, 0:w]
    return (ys // BLOCK) * 1000 + xs // BLOCK


def colour_of(label: np.ndarray) -> np.ndarray:
    """A flat, label-determined RGB colour per pixel (the "photo")."""
    lab = label.astype(np.int64)
    return np.stack([(lab * 37) % 256, (lab * 91 + 40) % 256, (lab * 13 + 80) % 256], -1).astype(np.uint8)


def save(path: Path, arr: np.ndarray, **kw) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(arr).save(path, **kw)
    return path


def save16(path: Path, arr: np.ndarray) -> Path:
    """A 16-bit greyscale PNG (as Cityscapes' *_instanceIds.png)."""
    return save(path, arr.astype(np.uint16))


def coco_tree(root: Path, n: int = 3, split: str = "train", size: tuple[int, int] = (48, 64),
              inst: bool = True, images: bool = True) -> Path:
    """SPADE's COCO-Stuff layout: <split>_img/*.jpg, <split>_label/*.png (L, 0..181 + 255), <split>_inst/*.png."""
    h, w = size
    for i in range(n):
        name = f"{i + 139:012d}"  # COCO file names: 000000000139.jpg
        label = blocks(h, w, [0, 1, 40, 96, 181, 255], seed=i).astype(np.uint8)
        save(root / f"{split}_label" / f"{name}.png", label)
        if images:
            save(root / f"{split}_img" / f"{name}.jpg", colour_of(label), quality=98, subsampling=0)
        if inst:
            save(root / f"{split}_inst" / f"{name}.png", (block_ids(h, w) % 251).astype(np.uint8))
    return root


def ade_tree(root: Path, n: int = 3, split: str = "training", size: tuple[int, int] = (48, 64),
             images: bool = True) -> Path:
    """ADEChallengeData2016/images/<split>/ADE_train_*.jpg and annotations/<split>/*.png (L, 0..150)."""
    h, w = size
    base = root / "ADEChallengeData2016"
    tag = "train" if split == "training" else "val"
    for i in range(n):
        name = f"ADE_{tag}_{i + 1:08d}"
        label = blocks(h, w, [0, 1, 2, 75, 150], seed=i).astype(np.uint8)
        save(base / "annotations" / split / f"{name}.png", label)
        if images:
            save(base / "images" / split / f"{name}.jpg", colour_of(label), quality=98, subsampling=0)
    (base / "objectInfo150.txt").write_text("Idx\tRatio\tTrain\tVal\tName\n1\t0.1576\t11664\t1172\twall\n")
    return base


def cityscapes_tree(root: Path, n: int = 2, split: str = "train", size: tuple[int, int] = (32, 64),
                    cities: tuple[str, ...] = ("aachen", "bochum"), images: bool = True) -> Path:
    """leftImg8bit/<split>/<city>/*_leftImg8bit.png and gtFine/<split>/<city>/*_gtFine_{labelIds,instanceIds,
    color}.png + *_polygons.json, with 16-bit instance ids (labelId * 1000 + k for cars and persons)."""
    h, w = size
    for city in cities:
        for i in range(n):
            key = f"{city}_{i:06d}_{19 + i:06d}"
            label = blocks(h, w, [0, 7, 11, 21, 23, 24, 26, 33], seed=i + len(city)).astype(np.uint8)
            inst = label.astype(np.int64)
            thing = np.isin(label, [24, 26])
            inst[thing] = label[thing].astype(np.int64) * 1000 + (block_ids(h, w)[thing] % 7)
            gt = root / "gtFine" / split / city
            save(gt / f"{key}_gtFine_labelIds.png", label)
            save16(gt / f"{key}_gtFine_instanceIds.png", inst)
            save(gt / f"{key}_gtFine_color.png", colour_of(label))
            (gt / f"{key}_gtFine_polygons.json").write_text(json.dumps({"imgHeight": h, "imgWidth": w}))
            if images:
                save(root / "leftImg8bit" / split / city / f"{key}_leftImg8bit.png", colour_of(label))
    return root


def celeba_tree(root: Path, ids: tuple[int, ...] = (0, 1, 2, 3), test: tuple[int, ...] = (3,),
                mask: int = 32, images: bool = True, parts: bool = False, merged: bool = True) -> Path:
    """CelebA-HQ-img/<k>.jpg (2x the mask size, as 1024 vs 512), CelebAMask-HQ-mask/<k>.png (L, 0..18),
    CelebAMask-HQ-mask-anno/<k//2000>/<k:05d>_<part>.png (binary 0/255) and train/test lists."""
    from semsynth.data.celebamask_hq import PARTS

    for k in ids:
        label = blocks(mask, mask, list(range(19)), seed=k).astype(np.uint8)
        if merged:
            save(root / "CelebAMask-HQ-mask" / f"{k}.png", label)
        if parts:
            for pid, part in enumerate(PARTS, start=1):
                m = label == pid
                if m.any():
                    save(root / "CelebAMask-HQ-mask-anno" / str(k // 2000) / f"{k:05d}_{part}.png",
                         (m * 255).astype(np.uint8))
        if images:
            big = np.kron(colour_of(label), np.ones((2, 2, 1), np.uint8))
            save(root / "CelebA-HQ-img" / f"{k}.jpg", big, quality=98, subsampling=0)
    (root / "train_list.txt").write_text("".join(f"{k}.jpg\n" for k in ids if k not in test))
    (root / "test_list.txt").write_text("".join(f"{k}.jpg\n" for k in test))
    return root


def custom_tree(root: Path, n: int = 3, num_classes: int = 5, size: tuple[int, int] = (48, 48),
                meta: dict | None = None, inst: bool = False, rgb_palette: list | None = None) -> Path:
    """images/*.png + labels/*.png (class ids, or RGB colours with ``rgb_palette``) [+ instances/], and
    dataset.yaml from ``meta``."""
    import yaml

    h, w = size
    for i in range(n):
        label = blocks(h, w, list(range(num_classes)), seed=i).astype(np.uint8)
        if rgb_palette is not None:
            save(root / "labels" / f"s{i}.png", np.array(rgb_palette, np.uint8)[label])
        else:
            save(root / "labels" / f"s{i}.png", label)
        save(root / "images" / f"s{i}.png", colour_of(label))
        if inst:
            save(root / "instances" / f"s{i}.png", (block_ids(h, w) % 251).astype(np.uint8))
    if meta is not None:
        (root / "dataset.yaml").write_text(yaml.safe_dump(meta, sort_keys=False))
    return root


TINY_SCGAN = {"name": "scgan", "srg_width": 4, "fc_width": 4, "svg_width": 4, "conv_candidates": 2,
              "norm_candidates": 2, "spade_hidden": 8, "input_mode": "noise", "z_dim": 8}


def tiny_synthesizer(info, label_values: dict[int, int] | None = None):
    """A :class:`~semsynth.inference.Synthesizer` around a tiny random SC-GAN generator for ``info`` (a
    DatasetInfo), with ``label_values`` as an exported model's config.json records it (raw value -> channel)."""
    import torch

    from semsynth.inference import Synthesizer
    from semsynth.models import build_generator

    torch.manual_seed(0)
    G = build_generator(TINY_SCGAN, **info.model_interface())
    config = {"generator": dict(TINY_SCGAN),
              "label_values": {str(k): int(v) for k, v in label_values.items()} if label_values else None}
    return Synthesizer(G, None, info, config, torch.device("cpu"))

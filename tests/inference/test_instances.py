"""Instance maps at inference: ``generate --instances`` and ``evaluate`` feed the instance edges of models whose
dataset has them (converted COCO-Stuff and Cityscapes models), computed as in training."""

import numpy as np
import pytest
import torch
from PIL import Image

from semsynth.cli import main
from semsynth.data import DatasetInfo, build_dataset
from semsynth.errors import DataError, SemsynthError
from semsynth.inference import Synthesizer, instance_names, pair_instances
from semsynth.layers import semantic_input
from semsynth.models import build_generator
from semsynth.training import export_model
from semsynth.utils.images import to_uint8

C = 4  # label channels of the tiny models


def tiny_instance_model(path, info: DatasetInfo | None = None, use_instance: bool = True):
    """A tiny SPADE generator whose input has the instance-edge channel, exported with its dataset facts."""
    torch.manual_seed(0)
    G = build_generator({"name": "spade", "ngf": 1, "spade_hidden": 4, "init": "default"}, num_classes=C,
                        use_instance=use_instance, resolution=32).eval()
    info = info or DatasetInfo(name="custom", num_classes=C, class_names=[f"c{i}" for i in range(C)],
                               has_instance=use_instance, resolution=(32, 32))
    return export_model(path, G, info), G


def layout_and_instances(size: int = 64):
    """Class ids in vertical bands; instances split each band into a left and a right object (edges the labels lack)."""
    ids = np.tile(np.repeat(np.arange(C, dtype=np.uint8), size // C), (size, 1)).T.copy()
    inst = (ids.astype(np.int32) * 10 + (np.arange(size)[None, :] >= size // 2)).astype(np.uint16)
    return ids, inst


def expected_image(G, ids: np.ndarray, inst: np.ndarray | None) -> np.ndarray:
    """``G(semantic_input(label, C, instance))`` at the model's resolution (layouts and instances resized nearest),
    as the saved 8-bit PNG holds it."""
    lab = torch.from_numpy(ids.astype(np.int64))[None, None].float()
    lab = torch.nn.functional.interpolate(lab, size=(32, 32), mode="nearest")[:, 0].long()
    if inst is None:
        edges = torch.zeros_like(lab)
    else:
        edges = torch.from_numpy(inst.astype(np.int64))[None, None].double()
        edges = torch.nn.functional.interpolate(edges, size=(32, 32), mode="nearest")[:, 0].long()
    with torch.no_grad():
        img = G(semantic_input(lab, C, edges))
    return to_uint8(img)[0]  # [H, W, 3]


@pytest.fixture
def setup(tmp_path):
    model, G = tiny_instance_model(tmp_path / "m")
    ids, inst = layout_and_instances()
    (tmp_path / "labels").mkdir()
    (tmp_path / "inst").mkdir()
    Image.fromarray(ids).save(tmp_path / "labels" / "a.png")
    Image.fromarray(inst).save(tmp_path / "inst" / "a.png")
    return model, G, ids, inst, tmp_path


def _png(path) -> np.ndarray:
    return np.asarray(Image.open(path).convert("RGB"))


def _same_image(a: np.ndarray, b: np.ndarray) -> bool:
    """Equal 8-bit images up to one level: `generate` runs the model prepared for inference (folded norms, exact
    up to float rounding), which can move a value across a rounding boundary."""
    return a.shape == b.shape and int(np.abs(a.astype(np.int16) - b.astype(np.int16)).max()) <= 1


def test_generate_feeds_the_instance_edges(setup, capsys):
    model, G, ids, inst, tmp = setup
    assert main(["generate", "--model", str(model), "--labels", str(tmp / "labels"), "--out", str(tmp / "with"),
                 "--instances", str(tmp / "inst")]) == 0
    assert "without --instances" not in capsys.readouterr().err
    assert main(["generate", "--model", str(model), "--labels", str(tmp / "labels"), "--out", str(tmp / "without")]) \
        == 0
    err = capsys.readouterr().err
    assert "reads an instance-edge channel (custom); without --instances it is empty" in err
    assert err.count("--instances DIR") == 1  # one line, not one per layout
    with_inst, without = _png(tmp / "with" / "a.png"), _png(tmp / "without" / "a.png")
    assert np.abs(with_inst.astype(np.int16) - without).max() > 1
    assert _same_image(with_inst, expected_image(G, ids, inst))
    assert _same_image(without, expected_image(G, ids, None))
    # one layout with one instance file
    assert main(["generate", "--model", str(model), "--labels", str(tmp / "labels" / "a.png"), "--out",
                 str(tmp / "file"), "--instances", str(tmp / "inst" / "a.png")]) == 0
    assert np.array_equal(_png(tmp / "file" / "a.png"), with_inst)


def test_the_python_api_takes_instances_too(setup):
    model, G, ids, inst, _ = setup
    syn = Synthesizer.from_pretrained(model, "cpu")
    label, instance = torch.from_numpy(ids.astype(np.int64)), torch.from_numpy(inst.astype(np.int64))
    sem = syn.prepare(label[None], instance[None])
    assert sem.shape == (1, C + 1, 32, 32) and sem[:, C].sum() > 0
    a = syn.generate(label[None], instances=instance[None])
    b = syn.generate(label[None])
    assert not torch.equal(a, b)
    with pytest.raises(SemsynthError, match="differ in size"):
        syn.prepare(label[None], instance[None, :32])


def test_a_size_mismatch_is_named(setup, capsys):
    model, _, ids, inst, tmp = setup
    Image.fromarray(inst[:32]).save(tmp / "inst" / "a.png")
    assert main(["generate", "--model", str(model), "--labels", str(tmp / "labels"), "--out", str(tmp / "o"),
                 "--instances", str(tmp / "inst")]) == 2
    err = capsys.readouterr().err
    assert "a.png: instance map is 64x32 but the layout a.png is 64x64" in err
    assert not (tmp / "o").exists()


def test_instance_maps_are_paired_by_name(tmp_path):
    for name in ("x.png", "y.png", "z_gtFine_instanceIds.png"):
        (tmp_path / name).write_bytes(b"")
    layouts = [tmp_path / "l" / "x.png", tmp_path / "l" / "y.bmp", tmp_path / "l" / "z_gtFine_labelIds.png"]
    assert pair_instances(tmp_path, layouts) == [tmp_path / "x.png", tmp_path / "y.png",
                                                 tmp_path / "z_gtFine_instanceIds.png"]
    assert instance_names(layouts[2])[:2] == ["z_gtFine_labelIds.png", "z_gtFine_labelIds.bmp"]
    with pytest.raises(DataError, match=r"no instance map for 1 layout\(s\): w.png"):
        pair_instances(tmp_path, [tmp_path / "l" / "w.png"])
    with pytest.raises(DataError, match="a single instance map, but --labels gives 3 layouts"):
        pair_instances(tmp_path / "x.png", layouts)


def test_a_model_without_instance_edges_refuses_instances(tmp_path, capsys):
    model, _ = tiny_instance_model(tmp_path / "m", use_instance=False)
    ids, inst = layout_and_instances()
    Image.fromarray(ids).save(tmp_path / "a.png")
    Image.fromarray(inst).save(tmp_path / "i.png")
    assert main(["generate", "--model", str(model), "--labels", str(tmp_path / "a.png"), "--out", str(tmp_path / "o"),
                 "--instances", str(tmp_path / "i.png")]) == 2
    assert "reads no instance-edge channel" in capsys.readouterr().err
    assert main(["generate", "--model", str(model), "--labels", str(tmp_path / "a.png"), "--out",
                 str(tmp_path / "o")]) == 0
    assert "instance" not in capsys.readouterr().err


def test_evaluate_feeds_the_datasets_instance_maps(tmp_path):
    """A custom dataset with instance maps: evaluate's images are G(semantic_input(label, C, instance))."""
    from semsynth.evaluation import evaluate

    root = tmp_path / "data"
    for d in ("images", "labels", "instances"):
        (root / d).mkdir(parents=True)
    rng = np.random.default_rng(0)
    for k in range(2):
        ids, inst = layout_and_instances(32)
        Image.fromarray(np.roll(ids, k, axis=0)).save(root / "labels" / f"s{k}.png")
        Image.fromarray(np.roll(inst, k, axis=0)).save(root / "instances" / f"s{k}.png")
        Image.fromarray(rng.integers(0, 255, (32, 32, 3), dtype=np.uint8)).save(root / "images" / f"s{k}.png")
    spec = {"name": "custom", "root": str(root), "instance_dir": "instances", "num_classes": C, "crop_size": 32,
            "load_size": 32, "flip": False, "split": "val"}
    ds = build_dataset(spec)
    assert ds.info.has_instance
    model, G = tiny_instance_model(tmp_path / "m", info=ds.info)
    res = evaluate(tmp_path / "eval", model, dataset_spec=spec, metrics=(), progress=False, device="cpu")
    assert res["layouts"] == 2
    samples = [ds[k] for k in range(2)]
    labels = torch.stack([s["label"] for s in samples])
    instances = torch.stack([s["instance"] for s in samples])
    with torch.no_grad():  # one batch, as evaluate runs them
        fed = to_uint8(G(semantic_input(labels, C, instances)))
        empty = to_uint8(G(semantic_input(labels, C, torch.zeros_like(instances))))
    for k, sample in enumerate(samples):
        saved = _png(tmp_path / "eval" / "images" / f"{sample['name']}.png")
        assert np.array_equal(saved, fed[k])
        assert not np.array_equal(saved, empty[k])

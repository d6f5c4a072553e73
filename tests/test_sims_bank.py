"""SIMS's memory bank: segments, the depth order, the bank file, retrieval and canvases, on hand-made cases."""

import json

import numpy as np
import pytest
import torch

from semsynth.data import DatasetInfo, build_dataset
from semsynth.sims import BankError, build_bank, compose, depth_order, find_segments, load_bank, parse_order
from semsynth.sims.bank import read_header
from semsynth.sims.canvas import compose_canvas
from semsynth.sims.ordering import containment_votes
from semsynth.sims.retrieval import query_segments, retrieve
from semsynth.sims.segments import coverage, mode_grid

COLOURS = {0: (0, 0, 0), 1: (255, 0, 0), 2: (0, 0, 255), 3: (0, 255, 0)}


class Toy:
    """A hand-made dataset: label maps, each class painted in one colour (``COLOURS``, per photo ``tint``)."""

    def __init__(self, labels, num_classes=4, tints=None):
        self.labels = [np.asarray(lab, dtype=np.int64) for lab in labels]
        self.tints = tints or [0] * len(labels)
        h, w = self.labels[0].shape
        self.info = DatasetInfo(name="toy", num_classes=num_classes,
                                class_names=[f"c{i}" for i in range(num_classes)], resolution=(h, w))

    def __len__(self):
        return len(self.labels)

    def __getitem__(self, i):
        lab = self.labels[i]
        rgb = np.zeros((3, *lab.shape), np.float32)
        for c, col in COLOURS.items():
            for j in range(3):
                rgb[j][lab == c] = min(255, col[j] + self.tints[i]) / 127.5 - 1
        return {"image": torch.from_numpy(rgb), "label": torch.from_numpy(lab), "name": f"p{i}"}


def square(size=16, boxes=(), base=0):
    """A ``size x size`` label map of class ``base`` with (class, top, left, bottom, right) boxes painted in order."""
    lab = np.full((size, size), base, np.int64)
    for c, t, l, b, r in boxes:
        lab[t:b, l:r] = c
    return lab


# -- segments ------------------------------------------------------------------------------------------------


def test_segments_are_connected_regions_of_a_class_above_the_minimum_area():
    lab = square(8, [(1, 0, 0, 2, 2), (1, 2, 2, 4, 4), (1, 6, 6, 8, 8), (2, 0, 6, 1, 7)])
    # the two class-1 squares touch at a corner: one segment (8-neighbours); the third is apart; class 2 has 1 px
    segs = find_segments(lab, min_area=2)
    assert segs.classes.tolist() == [0, 1, 1] and segs.areas.tolist() == [51, 8, 4]
    assert (segs.components[lab == 2] == 0).all()  # below min_area: not a segment
    assert set(np.unique(segs.components[:4, :4][lab[:4, :4] == 1])) == {2}
    assert find_segments(lab, min_area=1, skip=(0,)).classes.tolist() == [1, 1, 2]
    assert len(find_segments(lab, min_area=1, max_segments=2)) == 2  # the largest two


def test_coverage_and_mode_grids():
    comp = np.zeros((4, 4), np.int64)
    comp[0, 0] = 1
    comp[2:, 2:] = 2
    cov = coverage(comp, 2, (2, 2))
    assert cov[0].tolist() == [[0.25, 0.0], [0.0, 0.0]] and cov[1].tolist() == [[0.0, 0.0], [0.0, 1.0]]
    lab = square(4, [(2, 0, 0, 2, 1)], base=1)
    assert mode_grid(lab, 3, (2, 2)).tolist() == [[1, 1], [1, 1]]  # a tie (2 and 2 pixels) goes to the smaller id
    assert mode_grid(lab, 3, (4, 4))[0, 0] == 2


# -- depth order ---------------------------------------------------------------------------------------------


def test_the_depth_order_is_learnt_from_containment():
    # background 0 around a face 1 around an eye 2; class 3 never touches anything it is inside of
    maps = [square(16, [(1, 2, 2, 14, 12), (2, 5, 5, 7, 8), (3, 14, 0, 16, 16)]) for _ in range(3)]
    votes = None
    for m in maps:
        votes = containment_votes(m, 4, votes)
    assert votes[1, 0] == 3 and votes[2, 1] == 3 and votes[0, 1] == 0
    order = depth_order(votes)
    assert order.index(0) < order.index(1) < order.index(2)
    # contradictions form a cycle: the relation with the smallest margin gives way
    v = np.zeros((3, 3), np.int64)
    v[1, 0], v[2, 1], v[0, 2] = 5, 5, 1  # 1 over 0, 2 over 1, and weakly 0 over 2
    assert depth_order(v) == [0, 1, 2]
    assert parse_order("c2, 0,c1 ,3", [f"c{i}" for i in range(4)]) == [2, 0, 1, 3]
    with pytest.raises(ValueError, match="missing: c3"):
        parse_order("c0,c1,c2", [f"c{i}" for i in range(4)])


# -- the bank and its file -------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def faces_bank():
    ds = build_dataset({"name": "synthetic-faces", "resolution": 64, "num_samples": 6})
    return ds, build_bank(ds, data_spec={"name": "synthetic-faces", "num_samples": 6})


def test_a_bank_of_synthetic_faces_holds_every_segment_and_photo(faces_bank):
    ds, bank = faces_bank
    assert bank.num_images == 6 and bank.num_classes == 15 and bank.resolution == (64, 64)
    total = 0
    for i in range(6):
        sample = ds[i]
        segs = find_segments(sample["label"].numpy(), round(0.002 * 64 * 64))
        total += len(segs)
        assert np.array_equal(bank.components[i].numpy(), segs.components)
        photo = bank.images[i].float() / 127.5 - 1
        assert (photo - sample["image"]).abs().max() <= 1 / 127.5
        mine = bank.seg_image == i
        assert sorted(bank.seg_class[mine].tolist()) == sorted(segs.classes.tolist())
    assert bank.num_segments == total
    offsets = bank.class_offsets.tolist()
    for c in range(15):  # rows sorted by class
        assert (bank.seg_class[offsets[c]:offsets[c + 1]] == c).all()
    assert bank.meta["names"][0] == ds[0]["name"] and sorted(bank.order) == list(range(15))
    assert bank.order.index(0) < bank.order.index(1) < bank.order.index(3)  # background, skin, an eye


def test_the_bank_file_round_trips(faces_bank, tmp_path):
    _, bank = faces_bank
    path = bank.save(tmp_path / "bank.safetensors")
    back = load_bank(path)
    assert back.meta == json.loads(json.dumps(bank.meta))
    assert set(back.tensors) == set(bank.tensors)
    for k, v in bank.tensors.items():
        assert back.tensors[k].dtype == v.dtype and torch.equal(back.tensors[k], v), k
    assert read_header(path)["fingerprint"] == bank.fingerprint


def test_a_corrupt_or_foreign_bank_file_is_refused_with_a_clear_message(faces_bank, tmp_path):
    from safetensors.torch import load_file, save_file

    _, bank = faces_bank
    good = bank.save(tmp_path / "good.safetensors")
    torn = tmp_path / "torn.safetensors"
    torn.write_bytes(good.read_bytes()[:200])
    with pytest.raises(BankError, match="is not a readable safetensors file"):
        load_bank(torn)
    pickled = tmp_path / "pickle.safetensors"
    torch.save({"images": torch.zeros(1)}, pickled)
    with pytest.raises(BankError, match="never a pickle"):
        load_bank(pickled)
    weights = tmp_path / "weights.safetensors"
    save_file({"conv.weight": torch.zeros(2, 2)}, str(weights), metadata={"format": "pt"})
    with pytest.raises(BankError, match="not a SIMS memory bank"):
        load_bank(weights)
    tensors = load_file(str(good))
    for meta_change, says in (({"format": "other"}, "not a SIMS memory bank"),
                              ({"version": 99}, "newer semsynth")):
        p = tmp_path / "header.safetensors"
        save_file(tensors, str(p), metadata={"semsynth": json.dumps({**bank.meta, **meta_change})})
        with pytest.raises(BankError, match=says):
            load_bank(p)
    bad = dict(tensors)
    bad["class_offsets"] = bad["class_offsets"].flip(0).contiguous()
    p = tmp_path / "inconsistent.safetensors"
    save_file(bad, str(p), metadata={"semsynth": json.dumps(bank.meta)})
    with pytest.raises(BankError, match="damaged or inconsistent: class_offsets"):
        load_bank(p)
    del bad["masks"]
    save_file(bad, str(p), metadata={"semsynth": json.dumps(bank.meta)})
    with pytest.raises(BankError, match="'masks' is missing"):
        load_bank(p)
    with pytest.raises(BankError, match="does not exist"):
        load_bank(tmp_path / "nowhere.safetensors")


# -- retrieval -----------------------------------------------------------------------------------------------


def iou(a: np.ndarray, b: np.ndarray) -> float:
    return float((a & b).sum() / (a | b).sum())


def test_retrieval_returns_the_segment_of_the_class_whose_mask_fits_best():
    # three photos with a class-1 square (at different places and sizes) and a class-2 bar
    photos = [square(16, [(1, 2, 2, 8, 8), (2, 12, 0, 14, 16)]),
              square(16, [(1, 3, 3, 10, 10), (2, 0, 0, 1, 16)]),
              square(16, [(1, 8, 8, 15, 15)])]
    bank = build_bank(Toy(photos), mask_size=16, min_area=0.0)
    query = square(16, [(1, 3, 2, 9, 9), (2, 13, 0, 15, 16)])
    q = query_segments(torch.from_numpy(query)[None], bank)
    best = retrieve(q, bank, context_weight=0.0)
    ones = [(p == 1) for p in photos]
    by_hand = int(np.argmax([iou(query == 1, m) for m in ones]))
    assert by_hand == 1  # IoU 36 / 55 against 30 / 48 (photo 0) and 1 / 90 (photo 2)
    row = best[q.cls == 1].item()
    assert bank.seg_class[row] == 1 and bank.seg_image[row] == by_hand
    row2 = best[q.cls == 2].item()
    assert bank.seg_class[row2] == 2 and bank.seg_image[row2] == 0  # the bar at the bottom, not the one on top
    assert best[q.cls == 0].ge(0).all()  # the background gets one too
    # a class no photo has: nothing retrieved
    q3 = query_segments(torch.from_numpy(square(16, [(3, 0, 0, 4, 4)]))[None], bank)
    assert retrieve(q3, bank)[q3.cls == 3].item() == -1


def test_context_decides_between_equal_shapes():
    # the same class-1 square in both photos; around it class 2 in photo 0, class 3 in photo 1
    photos = [square(16, [(2, 0, 0, 16, 16), (1, 4, 4, 12, 12)], base=0),
              square(16, [(3, 0, 0, 16, 16), (1, 4, 4, 12, 12)], base=0)]
    bank = build_bank(Toy(photos), mask_size=16, context_size=8, min_area=0.0)
    query = square(16, [(3, 0, 0, 16, 16), (1, 4, 4, 12, 12)])
    query[0, 0] = 0  # not any photo's own layout
    q = query_segments(torch.from_numpy(query)[None], bank)
    row = retrieve(q, bank, context_weight=1.0, self_match=None)[q.cls == 1].item()
    assert bank.seg_image[row] == 1


def test_a_layout_never_gets_segments_of_its_own_photo_or_its_mirror_image(faces_bank):
    ds, bank = faces_bank
    labels = torch.stack([ds[0]["label"], ds[1]["label"].flip(-1)])
    q = query_segments(labels, bank)
    best = retrieve(q, bank)
    photos = bank.seg_image[best[best >= 0]]
    mine = q.image[best >= 0]
    assert not ((mine == 0) & (photos == 0)).any() and not ((mine == 1) & (photos == 1)).any()
    assert (best >= 0).float().mean() > 0.8
    kept = retrieve(q, bank, self_match=None)  # without the rule, a layout's own photo fits best
    assert (bank.seg_image[kept[(q.image == 0) & (kept >= 0)]] == 0).float().mean() > 0.9


# -- canvases ------------------------------------------------------------------------------------------------


def test_the_canvas_puts_the_class_in_front_that_the_depth_order_says():
    # photo 0: class 1 everywhere (red); photo 1: class 2 square (blue) on class 3 (green)
    photos = [square(16, base=1), square(16, [(2, 4, 4, 12, 12)], base=3)]
    query = square(16, [(2, 4, 4, 12, 12)], base=1)
    query[0, :2] = 3  # a bit of class 3, so that the layout is not photo 1's own
    labels = torch.from_numpy(query)[None]
    inner = torch.from_numpy(query == 2)
    for order, front in (([0, 3, 1, 2], "blue"), ([0, 3, 2, 1], None)):
        bank = build_bank(Toy(photos), mask_size=16, min_area=0.0, order=order)
        q = query_segments(labels, bank)
        best = retrieve(q, bank, context_weight=0.0)
        assert bank.seg_image[best[q.cls == 1]].item() == 0 and bank.seg_image[best[q.cls == 2]].item() == 1
        canvas = compose(q, best, bank, labels)[0]
        assert (canvas[3][~inner & torch.from_numpy(query == 1)] == 1).all()  # red where the layout has class 1
        assert torch.allclose(canvas[:3, 8, 0], torch.tensor([1.0, -1.0, -1.0]))
        if front == "blue":  # class 2 in front of class 1's red photo: blue inside the square
            assert (canvas[3][inner] == 1).all()
            assert torch.allclose(canvas[:3][:, inner], torch.tensor([-1.0, -1.0, 1.0])[:, None])
        else:  # class 1 in front: its red covers the square, which the layout says is class 2: a hole
            assert (canvas[3][inner] == 0).all() and (canvas[:3][:, inner] == 0).all()


def test_a_training_canvas_takes_the_shapes_from_other_photos_and_the_colours_from_the_sample(faces_bank):
    ds, bank = faces_bank
    labels = torch.stack([ds[2]["label"], ds[3]["label"]])
    real = torch.stack([ds[2]["image"], ds[3]["image"]])
    torch.manual_seed(0)
    canvas = compose_canvas(bank, labels, real=real, pool=100)
    covered = canvas[:, 3] > 0
    assert covered.float().mean() > 0.5
    assert torch.equal(canvas[:, :3][covered[:, None].expand(-1, 3, -1, -1)],
                       real[covered[:, None].expand(-1, 3, -1, -1)])
    test_time = compose_canvas(bank, labels)  # bank colours: other faces
    assert not torch.equal(test_time[:, :3], canvas[:, :3])
    torch.manual_seed(0)
    holes = compose_canvas(bank, labels, real=real, pool=100, elision=1.0)
    assert holes[:, 3].sum() < canvas[:, 3].sum()  # the boundary band is removed


# -- the command ---------------------------------------------------------------------------------------------


def test_sims_index_command_writes_a_bank(tmp_path, capsys):
    from semsynth.cli import main
    from semsynth.data.synthetic_faces import CLASS_NAMES

    out = tmp_path / "banks" / "faces.safetensors"
    order = list(reversed(CLASS_NAMES))
    assert main(["sims", "index", "--dataset", "synthetic-faces", "--set", "data.num_samples=3", "--out", str(out),
                 "--mask-size", "16", "--order", ",".join(order)]) == 0
    text = capsys.readouterr().out
    assert "3 images (64x64) of synthetic-faces" in text and f"wrote {out}" in text
    bank = load_bank(out)
    assert bank.num_images == 3 and bank.mask_size == (16, 16) and bank.context_size == (8, 8)
    assert [CLASS_NAMES[c] for c in bank.order] == order and bank.meta["order_source"] == "given"
    assert bank.meta["data"] == {"name": "synthetic-faces", "num_samples": 3, "split": "train"}
    assert main(["sims", "index", "--dataset", "synthetic-faces", "--set", "data.num_samples=2", "--out",
                 str(tmp_path / "b2.safetensors"), "--max-images", "1"]) == 0
    assert load_bank(tmp_path / "b2.safetensors").num_images == 1

"""The exact piecewise-constant path of ``PreparedSPADE`` (issue 13): on a one-hot layout, the SPADE modulation is a
per-class table in region interiors and exact look-ups + one matrix product on the band within 2 pixels of a class
boundary or the border. Its output equals the unprepared eval-mode SPADE's within 1e-5 (float32) on blocky layouts
and on the real COCO-Stuff label maps, and the dense convs are used for inputs it does not cover (not one-hot,
gradients, too much boundary)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from semsynth.inference_prep import PreparedSPADE, one_hot_ids, prepare_for_inference
from semsynth.layers import SPADE
from semsynth.layers.spade_piecewise import interior
from semsynth.models import build_generator

from .test_inference_prepare import randomise, scgan_ade_small

TOL = 1e-5
COCO = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "coco_stuff_sample" / "train_label"


def onehot(ids: torch.Tensor, classes: int) -> torch.Tensor:
    return F.one_hot(ids, classes).permute(0, 3, 1, 2).float().contiguous()


def rects(classes: int, h: int, w: int, batch: int = 2, seed: int = 0, count: int = 12) -> torch.Tensor:
    """Class ids: random rectangles over a background (piecewise constant, boundaries at any offset)."""
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(0, classes, (batch, 1, 1), generator=g).expand(batch, h, w).clone()
    for b in range(batch):
        for _ in range(count):
            y0, y1 = sorted(int(v) for v in torch.randint(0, h + 1, (2,), generator=g))
            x0, x1 = sorted(int(v) for v in torch.randint(0, w + 1, (2,), generator=g))
            ids[b, y0:y1, x0:x1] = int(torch.randint(0, classes, (1,), generator=g))
    return ids


def spade(c: int = 6, classes: int = 9, hidden: int = 7, norm: str = "syncbatch", seed: int = 0) -> SPADE:
    torch.manual_seed(seed)
    s = SPADE(c, classes, hidden, 3, norm)
    with torch.no_grad():
        for m in (s.mlp_shared[0], s.mlp_gamma, s.mlp_beta):
            m.weight.mul_(3)
            m.bias.normal_()
        if norm == "syncbatch":
            s.param_free_norm.running_mean.normal_()
            s.param_free_norm.running_var.uniform_(0.5, 2)
    return s.eval()


def run(s: SPADE, x: torch.Tensor, seg: torch.Tensor, max_band: float = 1.0, chunk_bytes: int | None = None):
    """(reference, prepared output, whether the piecewise path produced it)."""
    P = PreparedSPADE(s).eval()
    P.max_band = max_band
    if chunk_bytes is not None:
        P.band_chunk_bytes = chunk_bytes
    with torch.no_grad():
        ref = s(x, seg)
        ids = one_hot_ids(F.interpolate(seg, size=x.shape[2:], mode="nearest"))
        took = ids is not None and P._piecewise_mod(F.interpolate(seg, size=x.shape[2:], mode="nearest"), ids) \
            is not None
        out = P(x, seg)
    return ref, out, took


@pytest.mark.parametrize("h,w,label_size,norm", [(24, 24, (24, 24), "syncbatch"), (17, 29, (17, 29), "instance"),
                                                 (16, 16, (64, 64), "syncbatch"), (12, 20, (30, 50), "none"),
                                                 (5, 5, (5, 5), "syncbatch")])
def test_piecewise_equals_spade_on_blocky_layouts(h, w, label_size, norm):
    s = spade(norm=norm)
    seg = onehot(rects(9, *label_size), 9)
    x = torch.randn(2, 6, h, w)
    ref, out, took = run(s, x, seg)
    assert took and ref.abs().max() > 1
    assert (out - ref).abs().max().item() <= TOL


def test_band_in_chunks_equals_band_at_once():
    """The band's neighbourhood matrix is built in chunks (memory): any chunk size gives the same output, down to
    one band pixel per chunk."""
    s = spade()
    seg = onehot(rects(9, 24, 24), 9)
    x = torch.randn(2, 6, 24, 24)
    ref, whole, took = run(s, x, seg, chunk_bytes=1 << 40)
    assert took
    for chunk in (1, 7 * 9 * 4 * 5, 7 * 9 * 4 * 64):  # 1 row (the minimum), 5 rows, 64 rows of 9 x hidden floats
        _, out, _ = run(s, x, seg, chunk_bytes=chunk)
        assert (out - whole).abs().max().item() <= 2e-6 * whole.abs().max().item()  # GEMM blocking only
        assert (out - ref).abs().max().item() <= TOL


def test_piecewise_uniform_map_and_float64():
    """One class everywhere: only the 2-pixel border is computed (zero padding), the rest is the table."""
    s = spade().double()
    seg = onehot(torch.full((1, 20, 20), 4), 9).double()
    x = torch.randn(1, 6, 20, 20, dtype=torch.float64)
    ref, out, took = run(s, x, seg)
    assert took and (out - ref).abs().max().item() <= 1e-12
    assert not torch.allclose(ref[:, :, 0, 0], ref[:, :, 10, 10])  # the border differs from the interior


@pytest.mark.skipif(not COCO.is_dir(), reason=f"{COCO} not present (the shared COCO-Stuff sample)")
def test_piecewise_equals_spade_on_coco_stuff_layouts():
    from PIL import Image

    files = sorted(COCO.glob("*.png"))
    assert files
    s = spade(c=5, classes=151, hidden=8)
    for size, some in [((64, 64), files), ((37, 53), files[:4])]:
        maps = [np.array(Image.open(f).resize(size[::-1], Image.NEAREST)).astype(np.int64) for f in some]
        ids = torch.from_numpy(np.stack([np.where(a == 255, 0, a % 150 + 1) for a in maps]))
        x = torch.randn(len(some), 5, *size)
        ref, out, took = run(s, x, onehot(ids, 151))
        assert took
        assert (out - ref).abs().max().item() <= TOL


def test_dense_fallbacks():
    s = spade()
    x = torch.randn(2, 6, 16, 16)
    ids = rects(9, 16, 16)
    soft = onehot(ids, 9) * 0.5 + 0.05  # not one-hot
    two = onehot(ids, 9)
    two[:, 0, 3, 3] = 1  # a pixel with two classes (e.g. a class and an instance-edge channel)
    for seg in (soft, two):
        assert one_hot_ids(seg) is None
        ref, out, took = run(s, x, seg)
        assert not took and (out - ref).abs().max().item() <= TOL
    noise = onehot(torch.randint(0, 9, (2, 16, 16)), 9)  # all boundary: over max_band, dense
    ref, out, took = run(s, x, noise, max_band=0.7)
    assert not took and (out - ref).abs().max().item() <= TOL
    P = PreparedSPADE(s).eval()
    calls = []
    P._piecewise_mod = lambda *a: calls.append(1)
    xg = x.clone().requires_grad_()
    out = P(xg, onehot(ids, 9))  # gradients wanted: dense, differentiable
    out.sum().backward()
    assert not calls and xg.grad is not None


def test_band_of_repeated_windows_takes_the_piecewise_path():
    """Vertical stripes two pixels wide: every pixel is band (its 5x5 window holds two classes), but the windows
    repeat down each column, so the band is computed once per distinct window: the piecewise path is taken under
    max_band 0.7 and equals the dense SPADE."""
    s = spade()
    x = torch.randn(2, 6, 24, 24)
    ids = ((torch.arange(24) // 2) % 3).view(1, 1, 24).expand(2, 24, 24)
    ref, out, took = run(s, x, onehot(ids, 9), max_band=0.7)
    assert took and (out - ref).abs().max().item() <= TOL
    band = ~interior(one_hot_ids(onehot(ids, 9)), 5)
    assert band.float().mean() > 0.7  # by band pixels alone it would have run the dense convs


def test_ids_cache_follows_in_place_edits():
    """The class ids are computed once per label map and reused by the next layer; an in-place edit of the map
    (new version) is seen."""
    s = spade()
    P = PreparedSPADE(s).eval()
    seg = onehot(rects(9, 16, 16), 9)
    x = torch.randn(2, 6, 16, 16)
    with torch.no_grad():
        first = P(x, seg)
        assert (first - s(x, seg)).abs().max() <= TOL
        seg[:, :, 4:12, 4:12] = 0
        seg[:, 2, 4:12, 4:12] = 1
        assert (P(x, seg) - s(x, seg)).abs().max() <= TOL


def test_prepared_generator_under_inference_mode_and_threads():
    """`semsynth serve` runs prepared generators under torch.inference_mode (tensors without a version counter),
    several at once in threads: each forward reads its own map, also one edited in place between two forwards."""
    from concurrent.futures import ThreadPoolExecutor

    torch.manual_seed(0)
    G = build_generator({"name": "spade", "ngf": 2, "resolution": 64, "use_vae": False}, num_classes=9).eval()
    P = prepare_for_inference(G)
    maps = [onehot(rects(9, 64, 64, batch=1, seed=k), 9) for k in range(4)]
    with torch.no_grad():
        refs = [G(m) for m in maps]
    with torch.inference_mode():
        seg = maps[0].clone()
        assert (P(seg) - refs[0]).abs().max() <= 1e-4
        seg.copy_(maps[1])  # the same tensor object, new content, no version to tell
        assert (P(seg) - refs[1]).abs().max() <= 1e-4

    def one(k):
        with torch.inference_mode():
            return max((P(maps[k]) - refs[k]).abs().max().item() for _ in range(3))

    with ThreadPoolExecutor(4) as pool:
        assert max(pool.map(one, [0, 1, 2, 3] * 2)) <= 1e-4


@pytest.mark.slow  # ~4 s of it is the first generator build of a session (warm-up)
def test_scgan_prepared_uses_piecewise_path_and_is_exact():
    """The whole small ADE20K-layout SC-GAN, prepared, on a coarse layout: its shortcut SPADEs take the piecewise
    path, and in float64 the output equals the unprepared model's within 1e-10 (exact algebra). Float32 is checked
    per layer above; for the whole model in float32 the piecewise path is 1.6e-6 from the dense prepared path on
    this layout, and both prepared paths are 2.1e-5 from the unprepared model, which is itself 1.7e-5 from the
    float64 result (the model's own float32 rounding, as in test_inference_prepare)."""
    torch.manual_seed(0)
    G = build_generator(scgan_ade_small())
    sem = onehot(rects(151, 64, 64, batch=1, count=6, seed=2), 151)
    randomise(G, sem, None)
    taken = []
    orig = PreparedSPADE._band  # the exact algebra's work, for the contiguous and the channels-last paths

    def spy(self, *a):
        out = orig(self, *a)
        taken.append(out is not None)
        return out

    with torch.no_grad():
        G.double()
        ref = G(sem.double())
        P = prepare_for_inference(G, copy=False, stripes=1)
        PreparedSPADE._band = spy
        try:
            out = P(sem.double())
        finally:
            PreparedSPADE._band = orig
    assert len(taken) == 4 and taken[2:] == [True, True]  # the 8x8 and 16x16 levels here are mostly band
    assert ref.abs().max() > 0.5
    assert (out - ref).abs().max().item() <= 1e-10


def test_one_copy_of_the_merged_kernel_for_both_paths():
    """The piecewise path's matrix over (tap, hidden) is a view of the merged kernel the dense path convolves with
    (no second copy: on SPADE's generator the copies were 96 MiB), and both paths give the module's output."""
    s = spade(c=6, classes=9, hidden=7)
    P = PreparedSPADE(s).eval()
    w2 = P.pw_w2
    assert w2.shape == (9 * 7, 12) and w2.untyped_storage().data_ptr() == P.weight.untyped_storage().data_ptr()
    assert sum(b.numel() for n, b in P.named_buffers() if b.untyped_storage().data_ptr()
               == P.weight.untyped_storage().data_ptr()) == P.weight.numel()  # no other buffer holds it
    x, seg = torch.randn(2, 6, 16, 16), onehot(rects(9, 16, 16, 2, 3, 6), 9)
    ref, out, took = run(s, x, seg)
    assert took and (out - ref).abs().max() < 1e-5
    ref, out, took = run(s, x, seg, max_band=0.0)  # the dense path
    assert not took and (out - ref).abs().max() < 1e-5

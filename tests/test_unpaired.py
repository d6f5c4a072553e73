"""Unpaired image-to-image translation (SC-GAN supplement B.2): the scgan-unpaired generator, the unpaired
objective, the unpaired datasets, the preset trained by the one training function, and ``semsynth translate``.

The CLI's bad inputs (empty or missing domain folders, images of mixed sizes, non-images, bad references) are cases
of tests/robustness/test_cli_bad_inputs.py.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image
from torch import nn

from semsynth.cli import main
from semsynth.config import load_config
from semsynth.data import DatasetInfo, build_dataset
from semsynth.data.unpaired import SyntheticUnpaired, UnpairedFolder, unpaired_info
from semsynth.errors import ConfigError, DataError, SemsynthError
from semsynth.losses.structure import edge_distance, edge_maps, sobel_magnitude
from semsynth.models import build_discriminator, build_generator
from semsynth.models.outputs import DiscriminatorOutput, GeneratorOutput
from semsynth.objectives import build_objective
from semsynth.objectives.unpaired import check_image_only
from semsynth.training import export_model, train
from semsynth.training.loop import collate, to_semantic
from semsynth.translation import Translator, evaluate_translation

# the CPU preset at a size that trains in seconds
TINY = ["data.num_samples=8", "generator.srg_width=2", "generator.fc_width=2", "generator.svg_width=4",
        "generator.spade_hidden=4", "generator.conv_candidates=2", "generator.norm_candidates=2",
        "discriminator.width=4", "train.batch_size=4", "train.images=8", "train.log_every=4",
        "train.sample_every=1000", "train.checkpoint_every=1000", "train.tensorboard=false", "train.num_samples=2"]
TINY_G = {"name": "scgan-unpaired", "srg_width": 2, "fc_width": 2, "svg_width": 4, "spade_hidden": 4,
          "conv_candidates": 2, "norm_candidates": 2, "init_gain": 1.0, "shortcut_condition": "source"}
DATA = {"name": "synthetic-unpaired", "resolution": 64, "num_samples": 4, "seed": 0}


@pytest.fixture(autouse=True)
def _one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _u8(x: torch.Tensor) -> np.ndarray:
    return ((x.clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8).permute(1, 2, 0).numpy()


# -- the preset, trained by the training function -------------------------------------------------------------


def test_preset_steps_change_every_parameter_that_should_learn():
    cfg = load_config("scgan-unpaired-synthetic", TINY)
    assert cfg.generator["name"] == "scgan-unpaired" and cfg.loss["name"] == "unpaired"
    assert cfg.discriminator["name"] == "fp" and cfg.encoder is None
    ds = build_dataset(cfg.data)
    G, D = build_generator(cfg.generator).train(), build_discriminator(cfg.discriminator).train()
    objective = build_objective(cfg.loss).prepare("cpu")
    batch = collate([ds[i] for i in range(4)])
    sem, real = to_semantic(batch, ds.info, torch.device("cpu")), batch["image"]
    assert torch.equal(sem, batch["source"]) and "label" not in batch  # the source is the generator's input
    g0 = {k: p.detach().clone() for k, p in G.named_parameters()}
    d0 = {k: p.detach().clone() for k, p in D.named_parameters()}
    opt_g = torch.optim.Adam(G.parameters(), lr=1e-3, betas=(0.0, 0.999))
    opt_d = torch.optim.Adam(D.parameters(), lr=1e-3, betas=(0.0, 0.999))
    for _ in range(2):
        opt_g.zero_grad()
        loss, stats, _ = objective.generator_loss(G, D, None, sem, real)
        loss.backward()
        opt_g.step()
        opt_d.zero_grad()
        d_loss, _ = objective.discriminator_loss(D, sem, real, objective.generate(G, None, sem, real))
        d_loss.backward()
        opt_d.step()
    assert set(stats) == {"G/adv", "G/fm", "G/content", "G/semantic", "G/total"}
    still = [k for k, p in G.named_parameters() if torch.equal(p, g0[k])]
    assert not still, f"generator parameters that did not change: {still}"
    still = [k for k, p in D.named_parameters() if torch.equal(p, d0[k])]
    assert not still, f"discriminator parameters that did not change: {still}"
    # the SVG learns from the reference (L_s) and the SRG's first layer from the source
    assert any(k.startswith("svg.to_rgb") for k in g0) and "fc.weight" in g0


def test_preset_trains_with_the_training_function(tmp_path):
    run = train(load_config("scgan-unpaired-synthetic", TINY), outdir=tmp_path)
    rows = [json.loads(line) for line in (run / "stats.jsonl").read_text().splitlines()]
    assert rows[-1]["images"] == 8
    assert all(k in rows[-1] for k in ("G/adv", "G/fm", "G/content", "G/semantic", "D/real", "D/fake"))
    assert all(np.isfinite(v) for r in rows for v in r.values() if isinstance(v, float))
    config = json.loads((run / "model" / "config.json").read_text())
    assert config["generator"]["name"] == "scgan-unpaired" and config["data"]["name"] == "synthetic-unpaired"
    assert config["dataset"]["num_classes"] == 3
    # the sample grid: source | reference | translation | coarse RGB of the SVG, one row per fixed sample
    grid = np.asarray(Image.open(run / "samples" / "000000008.png"))
    assert grid.shape == (2 * 66 + 2, 4 * 66 + 2, 3)
    ds = build_dataset(config["data"])
    first = ds[0]["source"]  # the fixed rows are dataset[0], dataset[1]; column 0 is their source image
    assert np.array_equal(grid[2:66, 2:66], _u8(first))


# -- the objective: each term is its formula ---------------------------------------------------------------------


class StubG(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.w = nn.Parameter(torch.tensor(0.5))
        self.reference = None

    def forward(self, source, z=None, *, reference=None, return_aux=False):
        self.reference = reference
        image = torch.tanh(self.w * source.flip(-1))
        return GeneratorOutput(image, torch.tanh(self.w * reference)) if return_aux else image


class StubD(nn.Module):
    semantic_embedding = False

    def forward(self, image, semantic):
        return DiscriminatorOutput([image.mean(1, keepdim=True) - 0.1], [[2 * image]])


def test_objective_terms_equal_their_formulas():
    g = torch.Generator().manual_seed(0)
    source, real = torch.rand(2, 3, 32, 32, generator=g) * 2 - 1, torch.rand(2, 3, 32, 32, generator=g) * 2 - 1
    obj = build_objective({"name": "unpaired", "content_loss": "edges", "gan": 1.0, "feature_matching": 10.0,
                           "perceptual": 10.0, "semantic": 2.0}).prepare("cpu")
    G, D = StubG(), StubD()
    loss, stats, fake = obj.generator_loss(G, D, None, source, real)
    assert G.reference is real  # the SVG reads the target-domain image
    f = torch.tanh(0.5 * source.flip(-1))
    adv = -(f.mean(1, keepdim=True) - 0.1).mean()                                  # hinge, generator side
    fm = F.l1_loss(2 * f, 2 * real)                                                # to the target domain
    content = edge_distance(f, source)                                             # to the source
    ls = F.l1_loss(torch.tanh(0.5 * real), real)                                   # L_s: SVG regresses b
    for key, want in (("G/adv", adv), ("G/fm", fm), ("G/content", content), ("G/semantic", ls)):
        torch.testing.assert_close(stats[key], want, rtol=1e-6, atol=1e-7)
    torch.testing.assert_close(loss, adv + 10 * fm + 10 * content + 2 * ls, rtol=1e-6, atol=1e-6)
    torch.testing.assert_close(fake, f)
    d_loss, _ = obj.discriminator_loss(D, source, real, fake)
    want_d = F.relu(1 - (real.mean(1) - 0.1)).mean() + F.relu(1 + (f.mean(1) - 0.1)).mean()
    torch.testing.assert_close(d_loss, want_d, rtol=1e-6, atol=1e-6)
    torch.testing.assert_close(obj.generate(G, None, source, real), f)
    # gradients reach the generator through every term
    loss.backward()
    assert G.w.grad is not None and G.w.grad.abs() > 0


def test_objective_refuses_a_discriminator_that_reads_the_source():
    from semsynth.models.discriminators.fpse import FPDiscriminator, FPSEDiscriminator

    check_image_only(FPDiscriminator, "fp")
    with pytest.raises(ConfigError, match="sees the image only.*discriminator.name=fp"):
        check_image_only(FPSEDiscriminator, "fpse")
    with pytest.raises(ConfigError, match="sees the image only"):
        load_config("scgan-unpaired-synthetic", ["discriminator.name=multiscale"])
    with pytest.raises(ConfigError, match="content_loss = 'lpips'; valid: vgg, edges"):
        build_objective({"name": "unpaired", "content_loss": "lpips"})


def test_edge_distance_sees_boundaries_not_colours():
    x = torch.arange(16.0).view(1, 1, 1, 16).expand(1, 1, 16, 16)
    mag = sobel_magnitude(0.1 * x)
    torch.testing.assert_close(mag[..., 1:-1, 1:-1], torch.full((1, 1, 14, 14), 0.1), rtol=1e-4, atol=1e-5)
    g = torch.Generator().manual_seed(1)
    a = F.interpolate(torch.rand(2, 3, 8, 8, generator=g) * 2 - 1, size=64, mode="nearest")  # blocky scenes
    assert [m.shape[-1] for m in edge_maps(a)] == [32, 16, 8]
    assert float(edge_distance(a, a)) == 0.0
    b = a.roll(8, dims=-1)
    torch.testing.assert_close(edge_distance(a, b), edge_distance(b, a))
    recoloured = (0.5 * a + 0.2).clamp(-1, 1)  # same boundaries, other colours and contrast
    inverted = -a
    moved = float(edge_distance(a, b))
    assert moved > 0.3
    assert float(edge_distance(a, recoloured)) < 0.1 * moved  # the 0.01 of the normalisation: not exactly 0
    assert float(edge_distance(a, inverted)) < 0.05 * moved
    per_image = edge_distance(a, b, reduce=False)
    assert per_image.shape == (2,) and torch.allclose(per_image.mean(), edge_distance(a, b))


# -- the generator -----------------------------------------------------------------------------------------------


def test_generator_wiring_source_and_reference():
    torch.manual_seed(0)
    G = build_generator({**TINY_G, "temperature": 1.0}, num_classes=3, resolution=64).eval()
    assert G.latent_dim == 0 and G.translates_images
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():  # away from the initialisation (SCN candidates start at 0: routing would not show)
        for p in G.parameters():
            p.add_(0.2 * torch.randn(p.shape, generator=g))
    src, ref, ref2 = (torch.rand(1, 3, 64, 64, generator=g) * 2 - 1 for _ in range(3))
    with torch.no_grad():
        out = G(src, reference=ref, return_aux=True)
        assert out.image.shape == (1, 3, 64, 64) and out.coarse_rgb.shape == (1, 3, 64, 64)
        # the reference drives the routing and the SVG's RGB; the output changes with it
        assert (G(src, reference=ref2) - out.image).abs().max() > 1e-3
        assert (G(src, reference=ref2, return_aux=True).coarse_rgb - out.coarse_rgb).abs().max() > 1e-3
        # the SVG's output depends on the reference only
        other_src = torch.rand(1, 3, 64, 64, generator=g) * 2 - 1
        torch.testing.assert_close(G(other_src, reference=ref, return_aux=True).coarse_rgb, out.coarse_rgb)
        # no reference: the source is its own
        torch.testing.assert_close(G(src), G(src, reference=src))
    with pytest.raises(ValueError, match="takes no latent"):
        G(src, torch.zeros(1, 8), reference=ref)
    with pytest.raises(SemsynthError, match="same shape"):
        G(src, reference=torch.zeros(1, 3, 32, 32))
    with pytest.raises(ConfigError, match="translates RGB images"):
        build_generator(TINY_G, num_classes=15, resolution=64)


# -- the synthetic domains ---------------------------------------------------------------------------------------


def test_synthetic_domains_differ_are_deterministic_and_never_the_same_scene():
    ds = SyntheticUnpaired("train", num_samples=12, resolution=64, seed=0)
    again = SyntheticUnpaired("train", num_samples=12, resolution=64, seed=0)
    other = SyntheticUnpaired("train", num_samples=12, resolution=64, seed=1)
    # the scenes are what the domains say (the world's own record of each scene's choices)
    for d, season in ((0, "summer"), (1, "winter")):
        for k in range(12):
            assert ds.probes[d].sample_meta(ds.world_index(d, k))["season"] == season
    a = torch.stack([ds.domain_image(0, k) for k in range(12)])
    b = torch.stack([ds.domain_image(1, k) for k in range(12)])
    assert torch.equal(a, torch.stack([again.domain_image(0, k) for k in range(12)]))
    assert torch.equal(b, torch.stack([again.domain_image(1, k) for k in range(12)]))
    assert not torch.equal(a[0], other.domain_image(0, 0))
    # A and B of an index come from two seed streams: never the same scene
    assert all(not torch.equal(a[k], b[k]) for k in range(12))
    assert ds.worlds[0].seed != ds.worlds[1].seed
    # colour statistics: winter ground is snow: the lower half is far whiter (min over RGB) than summer's
    white_a = ((a[:, :, 32:] + 1) / 2).min(1).values.mean()
    white_b = ((b[:, :, 32:] + 1) / 2).min(1).values.mean()
    assert white_b > white_a + 0.15
    assert ((b + 1) / 2).mean() > ((a + 1) / 2).mean() + 0.08


def test_synthetic_pairs_and_domains_modes():
    ds = SyntheticUnpaired("train", num_samples=5, resolution=64)
    assert ds.info.num_classes == 3 and len(ds) == 5
    s = ds[2]
    assert set(s) == {"source", "image", "name", "reference_name", "source_label"}
    assert torch.equal(s["source"], ds.domain_image(0, 2)) and torch.equal(s["source_label"], ds.domain_label(0, 2))
    # training pairs: a random target image each time (seeded by the training loop), never from the source's stream
    torch.manual_seed(3)
    refs = [ds[0]["reference_name"] for _ in range(12)]
    torch.manual_seed(3)
    assert refs == [ds[0]["reference_name"] for _ in range(12)] and len(set(refs)) > 1
    test = SyntheticUnpaired("test", num_samples=5, resolution=64)
    assert test[3]["reference_name"] == test.domain_name(1, 3) and torch.equal(test[3]["image"], test.domain_image(1, 3))
    doms = SyntheticUnpaired("val", num_samples=3, resolution=64, serve="domains")
    assert doms.info.class_names == ["A: summer", "B: winter"] and len(doms) == 6
    labels = [int(doms[i]["label"].unique()) for i in range(6)]
    assert labels == [0, 1, 0, 1, 0, 1]  # balanced from the start (a validation subset sees both)
    assert torch.equal(doms[3]["image"], doms.domain_image(1, 1))
    dusk = SyntheticUnpaired("train", num_samples=2, domain_a="day", domain_b="summer+dusk")
    assert dusk.probes[1].sample_meta(dusk.world_index(1, 0))["tod"] == "dusk"
    with pytest.raises(ConfigError, match="neither a season nor a time of day"):
        SyntheticUnpaired(domain_b="snowy")
    with pytest.raises(ConfigError, match="same domain"):
        SyntheticUnpaired(domain_a="winter", domain_b="winter")
    with pytest.raises(ConfigError, match="synthetic-faces has none"):
        SyntheticUnpaired(world="synthetic-faces")


# -- the folder data ---------------------------------------------------------------------------------------------


def _write(folder: Path, sizes: list[tuple[int, int]], mode: str = "RGB", start: int = 0) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    out = []
    for i, (w, h) in enumerate(sizes):
        arr = np.random.default_rng(start + i).integers(0, 256, (h, w, 3), dtype=np.uint8)
        p = folder / f"img{start + i}.png"
        Image.fromarray(arr).convert(mode).save(p)
        out.append(p)
    return out


def test_folder_layouts_sizes_and_modes(tmp_path):
    root = tmp_path / "s2w"
    _write(root / "trainA", [(40, 30), (90, 70), (64, 64)], start=0)
    _write(root / "trainB", [(50, 50)], mode="L", start=10)
    _write(root / "testA", [(64, 64)], mode="RGBA", start=20)
    _write(root / "testB", [(64, 64), (32, 48)], start=30)
    (root / "trainA" / "notes.txt").write_text("not an image")
    ds = UnpairedFolder("train", root=str(root), load_size=72, crop_size=64)
    assert len(ds) == 3 and ds.domain_size(1) == 1 and ds.info.resolution == (64, 64)
    assert any("notes.txt" in n for n in ds.notes)
    for i in range(3):  # mixed sizes and modes: resized, cropped, RGB
        s = ds[i]
        assert s["source"].shape == (3, 64, 64) and s["image"].shape == (3, 64, 64)
    test = UnpairedFolder("test", root=str(root), load_size=72, crop_size=64)
    assert [test.domain_name(0, 0), test.domain_name(1, 1)] == ["img20", "img31"]
    assert test[1]["reference_name"] == "img31"  # fixed pairing i mod |B| outside training
    # root_a / root_b: the domains' folders themselves, for every split; each overrides root's
    mixed = UnpairedFolder("test", root=str(root), root_b=str(root / "trainB"), load_size=72, crop_size=64)
    assert mixed.files[0] == test.files[0] and mixed.files[1] == ds.files[1]
    doms = UnpairedFolder("train", root=str(root), load_size=72, crop_size=64, serve="domains")
    assert doms.info.class_names == ["A", "B"] and len(doms) == 4
    named = UnpairedFolder("train", root_a=str(root / "trainA"), root_b=str(root / "testB"), load_size=72,
                           crop_size=64, serve="domains")
    assert named.info.class_names == ["A: trainA", "B: testB"]


def test_folder_bad_inputs_name_the_file_or_folder(tmp_path):
    a = _write(tmp_path / "a", [(64, 64), (48, 64)])
    _write(tmp_path / "b", [(64, 64)], start=5)
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match=r"no images in the domain B folder .*empty; .*data.root_b"):
        UnpairedFolder(root_a=str(tmp_path / "a"), root_b=str(tmp_path / "empty"))
    with pytest.raises(DataError, match=r"domain A folder .*nowhere does not exist; check data.root_a"):
        UnpairedFolder(root_a=str(tmp_path / "nowhere"), root_b=str(tmp_path / "b"))
    with pytest.raises(DataError, match=r"domain A folder .*trainA does not exist; check data.root "):
        UnpairedFolder(root=str(tmp_path))
    with pytest.raises(ConfigError, match="data.root_b not given"):
        UnpairedFolder(root_a=str(tmp_path / "a"))
    with pytest.raises(DataError, match=rf"{a[0].name} is 64x64, .*{a[1].name} is 48x64 .*preprocess=resize_and_crop"):
        UnpairedFolder(root_a=str(tmp_path / "a"), root_b=str(tmp_path / "b"), preprocess="none")
    (tmp_path / "b" / "fake.png").write_bytes(b"this is text, not a PNG")
    with pytest.raises(DataError, match=r"fake\.png: cannot read this image"):
        UnpairedFolder(root_a=str(tmp_path / "a"), root_b=str(tmp_path / "b"))
    (tmp_path / "b" / "fake.png").unlink()
    same = _write(tmp_path / "c", [(64, 96), (64, 96)])
    ds = UnpairedFolder(root_a=str(tmp_path / "c"), root_b=str(tmp_path / "c"), preprocess="none")
    assert ds.info.resolution == (96, 64) and ds[0]["source"].shape == (3, 96, 64) and len(same) == 2


# -- translate: the exported model directory ------------------------------------------------------------------


def _model_dir(tmp: Path) -> tuple[Path, nn.Module]:
    torch.manual_seed(0)
    G = build_generator(TINY_G, num_classes=3, resolution=64)
    with torch.no_grad():  # a few training-mode passes: batch-norm statistics that are not the defaults
        for _ in range(3):
            G(torch.rand(4, 3, 64, 64) * 2 - 1, reference=torch.rand(4, 3, 64, 64) * 2 - 1)
    info = unpaired_info("synthetic-unpaired", "pairs", (64, 64), ("summer", "winter"))
    d = export_model(tmp / "model", G.eval(), info, extra={"data": {**DATA, "split": "train"}})
    return d, G


def test_translate_round_trip_through_an_exported_model(tmp_path):
    d, G = _model_dir(tmp_path)
    tr = Translator.from_pretrained(d, "cpu")
    src_dir = tmp_path / "sources"
    src_dir.mkdir()
    world = SyntheticUnpaired("val", num_samples=2, resolution=64)
    for k in range(2):
        Image.fromarray(world.domain_arrays(0, k)[0]).save(src_dir / f"s{k}.png")
    Image.fromarray(world.domain_arrays(0, 0)[0]).resize((96, 96)).save(src_dir / "big.jpg")  # resized to 64
    sources = {p.stem: tr.read_image(p) for p in sorted(src_dir.iterdir())}
    assert sources["big"].shape == (3, 64, 64)
    test = SyntheticUnpaired("test", num_samples=4, resolution=64)
    refs = torch.stack([test.domain_image(1, k) for k in (0, 2)])
    torch.testing.assert_close(tr.references([0, 2]), refs)
    with torch.no_grad():
        want = {(stem, k): G(s[None], reference=refs[j : j + 1])[0] for stem, s in sources.items()
                for j, k in enumerate((0, 2))}
        torch.testing.assert_close(tr.translate(sources["s0"][None], refs[:1]), want[("s0", 0)][None])

    out = tmp_path / "out"
    assert main(["translate", "--model", str(d), "--images", str(src_dir), "--out", str(out), "--seeds", "0,2",
                 "--grid"]) == 0
    names = sorted(p.name for p in out.iterdir())
    assert names == sorted([f"{s}_ref{k}.png" for s in sources for k in (0, 2)] + ["grid.png"])
    for (stem, k), img in want.items():
        got = np.asarray(Image.open(out / f"{stem}_ref{k}.png"))
        assert np.array_equal(got, _u8(img)), f"{stem}_ref{k}.png"
    grid = np.asarray(Image.open(out / "grid.png"))  # references on top, then source + 2 translations per row
    assert grid.shape == (4 * 66 + 2, 3 * 66 + 2, 3)
    assert np.array_equal(grid[2:66, 68:132], _u8(refs[0]))

    # one reference file for every source: <stem>.png
    ref_file = tmp_path / "winter.png"
    Image.fromarray(_u8(refs[1])).save(ref_file)
    out2 = tmp_path / "out2"
    assert main(["translate", "--model", str(d), "--images", str(src_dir / "s1.png"), "--out", str(out2),
                 "--reference", str(ref_file)]) == 0
    assert sorted(p.name for p in out2.iterdir()) == ["s1.png"]
    assert np.array_equal(np.asarray(Image.open(out2 / "s1.png")), _u8(want[("s1", 2)]))


def test_evaluate_translation_scores_what_it_says(tmp_path):
    from semsynth.metrics import SegmentationScore
    from semsynth.segmenters import build_segmenter, save_segmenter

    d, _ = _model_dir(tmp_path)
    torch.manual_seed(1)
    cls = build_segmenter({"name": "unet", "width": 4, "depth": 2}, num_classes=2)
    data = SyntheticUnpaired("test", num_samples=4, resolution=64)
    cls_dir = save_segmenter(tmp_path / "cls", cls, unpaired_info("synthetic-unpaired", "domains", (64, 64),
                                                                    ("summer", "winter")))
    seg = build_segmenter({"name": "unet", "width": 4, "depth": 2}, num_classes=14)
    seg_dir = save_segmenter(tmp_path / "seg", seg, data.worlds[0].info)
    res = evaluate_translation(d, tmp_path / "ev", num=4, classifier=cls_dir, segmenter=seg_dir, device="cpu",
                               progress=False)
    m = res["metrics"]
    assert set(m) >= {"fid", "fid_source", "kid", "kid_source", "domain_accuracy", "domain_accuracy_real_a",
                      "domain_accuracy_real_b", "miou", "miou_source", "miou_reference", "edge_distance",
                      "edge_distance_reference"}
    assert json.loads((tmp_path / "ev" / "metrics.json").read_text())["metrics"] == m
    # recomputed from the saved translations and the split's sources / layouts
    fakes = torch.stack([torch.from_numpy(np.array(Image.open(tmp_path / "ev" / "images" / f"{data.domain_name(0, i)}.png"))
                                          ).permute(2, 0, 1).float() / 127.5 - 1 for i in range(4)])
    srcs = torch.stack([data.domain_image(0, i) for i in range(4)])
    refs = torch.stack([data.domain_image(1, i) for i in range(4)])
    assert m["edge_distance"] == pytest.approx(float(edge_distance(fakes, srcs)), abs=1e-5)
    assert m["edge_distance_reference"] == pytest.approx(float(edge_distance(refs, srcs)), abs=1e-5)
    with torch.no_grad():
        share = (cls.eval().predict(fakes) == 1).float().mean((1, 2))
        score = SegmentationScore(14)
        score.update(seg.eval().predict(srcs), torch.stack([data.domain_label(0, i) for i in range(4)]))
    assert m["domain_accuracy"] == pytest.approx(float((share > 0.5).float().mean()))
    assert m["domain_pixel_share"] == pytest.approx(float(share.mean()), abs=1e-5)
    assert m["miou_source"] == pytest.approx(score.result()["miou"])
    with pytest.raises(ConfigError, match="trained on the classes"):  # a classifier of other classes
        evaluate_translation(d, tmp_path / "ev2", num=2, classifier=seg_dir, device="cpu", progress=False)
    with pytest.raises(SemsynthError, match="needs --classifier"):
        evaluate_translation(d, tmp_path / "ev3", num=2, metrics=["domain"], device="cpu", progress=False)


def test_synthesis_commands_refuse_a_translation_model(tmp_path):
    from semsynth.inference import Synthesizer

    d, _ = _model_dir(tmp_path)
    with pytest.raises(SemsynthError, match="use 'semsynth translate"):
        Synthesizer.from_pretrained(d, "cpu")
    faces = tmp_path / "faces"
    G = build_generator({"name": "spade", "ngf": 1, "spade_hidden": 4}, num_classes=4, resolution=32)
    export_model(faces, G, DatasetInfo("custom", 4, list("abcd"), resolution=(32, 32)))
    with pytest.raises(SemsynthError, match="semantic-synthesis model"):
        Translator.from_pretrained(faces, "cpu")

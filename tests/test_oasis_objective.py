"""The OASIS objective: its terms against hand-computed values, its checks, the presets, the EMA's batch-norm refresh
and one training step of OASIS and of SC-GAN with OASIS's discriminator (SC-GAN paper, Table 8)."""

import copy
import math

import pytest
import torch
from torch import nn

from semsynth.config import dataset_info, load_config, resolve_config
from semsynth.errors import ConfigError, MissingWeightsError
from semsynth.models.outputs import DiscriminatorOutput, GeneratorOutput
from semsynth.objectives import build_objective
from semsynth.objectives.oasis import (class_balance_weights, labelmix_loss, labelmix_mask, n1_cross_entropy,
                                       n1_targets)

LN2 = math.log(2)


@pytest.fixture(autouse=True)
def _one_thread():
    """Tiny networks: one thread (on a shared, loaded CPU, two threads spin-wait and run many times slower)."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


# two 2x2 label maps of 3 classes: image 0 [[0, 1], [1, 1]], image 1 [[2, 2], [1, 0]]
IDS = torch.tensor([[[0, 1], [1, 1]], [[2, 2], [1, 0]]])
LABEL = torch.nn.functional.one_hot(IDS, 3).permute(0, 3, 1, 2).float()


def test_class_balancing_weights_by_hand():
    # counts: class 0: 2, class 1: 4, class 2: 2 pixels of 8. With channel 0 don't-care: K = 2 classes present,
    # w_1 = 8 / (2 * 4) = 1, w_2 = 8 / (2 * 2) = 2, w_0 = 0
    w = class_balance_weights(LABEL, dontcare=0)
    assert torch.equal(w, torch.tensor([[[0.0, 1.0], [1.0, 1.0]], [[2.0, 2.0], [1.0, 0.0]]]))
    # without a don't-care channel: K = 3, w_0 = w_2 = 8 / (3 * 2) = 4/3, w_1 = 8 / (3 * 4) = 2/3
    w = class_balance_weights(LABEL, dontcare=None)
    a, b = 4 / 3, 2 / 3
    torch.testing.assert_close(w, torch.tensor([[[a, b], [b, b]], [[a, a], [b, a]]]))
    # a batch of don't-care only: every weight 0, nothing infinite
    only_dontcare = torch.nn.functional.one_hot(torch.zeros(2, 2, 2, dtype=torch.long), 3).permute(0, 3, 1, 2)
    assert torch.equal(class_balance_weights(only_dontcare.float(), 0), torch.zeros(2, 2, 2))


def test_n_plus_1_targets_and_cross_entropy_by_hand():
    assert torch.equal(n1_targets(LABEL, real=True), IDS + 1)  # channel 1 + c is class c
    assert torch.equal(n1_targets(LABEL, real=False), torch.zeros_like(IDS))  # channel 0 is "fake"
    logits = torch.zeros(2, 4, 2, 2)
    logits[1, 3, 0, 0] = math.log(3)  # image 1, pixel (0, 0) (class 2, weight 2): p(class 2) = 3 / 6
    # real, balanced: 6 pixel-weights of CE ln 4 and the weight 2 of that pixel with CE ln 2, over 8 pixels
    torch.testing.assert_close(n1_cross_entropy(logits, LABEL, True, True, 0), torch.tensor((6 * 2 * LN2 + 2 * LN2) / 8))
    # real, unbalanced: 7 pixels of ln 4, one of ln 2
    torch.testing.assert_close(n1_cross_entropy(logits, LABEL, True, False), torch.tensor((7 * 2 * LN2 + LN2) / 8))
    # fake (never weighted): p(fake) = 1 / 6 at that pixel
    torch.testing.assert_close(n1_cross_entropy(logits, LABEL, False, True, 0),
                               torch.tensor((7 * 2 * LN2 + math.log(6)) / 8))


def test_labelmix_mask_is_one_bit_per_class_for_the_whole_batch():
    g = torch.Generator().manual_seed(4)
    mask = labelmix_mask(LABEL, generator=g)
    bits = torch.randint(0, 2, (3,), generator=torch.Generator().manual_seed(4))  # classes 0, 1, 2 in order
    assert mask.shape == (2, 1, 2, 2) and mask.dtype == torch.float32
    assert torch.equal(mask[:, 0], bits[IDS].float())
    # a class absent from the batch draws nothing: classes 0 and 2 present -> two bits
    two = torch.nn.functional.one_hot(torch.tensor([[[0, 2], [2, 0]]]), 3).permute(0, 3, 1, 2).float()
    bits = torch.randint(0, 2, (2,), generator=torch.Generator().manual_seed(9))
    assert torch.equal(labelmix_mask(two, torch.Generator().manual_seed(9))[0, 0],
                       torch.stack([bits[0], bits[1], bits[1], bits[0]]).view(2, 2).float())
    seen = {tuple(labelmix_mask(LABEL, torch.Generator().manual_seed(s)).flatten().tolist()) for s in range(20)}
    assert len(seen) > 2  # the bits vary


def test_labelmix_loss_by_hand():
    mask = torch.tensor([[[[1.0, 0.0], [0.0, 1.0]]]])
    d_real, d_fake = torch.full((1, 4, 2, 2), 2.0), torch.zeros(1, 4, 2, 2)
    # target: 2 where the mask is 1, 0 elsewhere; D(mixed) = 1 everywhere: every squared error is 1
    torch.testing.assert_close(labelmix_loss(mask, torch.ones(1, 4, 2, 2), d_fake, d_real), torch.tensor(1.0))
    torch.testing.assert_close(labelmix_loss(mask, mask.expand(1, 4, 2, 2) * 2, d_fake, d_real), torch.tensor(0.0))


class PixelD(nn.Module):
    """A stand-in segmentation D: per-pixel logits = weight * (mean over RGB) + bias, N + 1 = 4 channels."""

    def __init__(self) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.tensor([0.5, -1.0, 2.0, 1.0]).view(1, 4, 1, 1))
        self.bias = nn.Parameter(torch.tensor([0.1, 0.2, -0.3, 0.0]).view(1, 4, 1, 1))
        self.calls = 0

    def forward(self, image, semantic):
        self.calls += 1
        logits = self.weight * image.mean(dim=1, keepdim=True) + self.bias
        return DiscriminatorOutput([logits], [[logits * 2]])


class FixedG(nn.Module):
    def __init__(self, image, coarse=None) -> None:
        super().__init__()
        self.image, self.coarse, self.scale = image, coarse, nn.Parameter(torch.ones(()))

    def forward(self, semantic, z=None, *, return_aux=False):
        out = GeneratorOutput(self.image * self.scale,
                              coarse_rgb=self.coarse * self.scale if self.coarse is not None else None)
        return out if return_aux else out.image


def test_discriminator_loss_is_the_sum_of_the_hand_computed_terms():
    g = torch.Generator().manual_seed(0)
    real, fake = torch.rand(2, 3, 2, 2, generator=g) * 2 - 1, torch.rand(2, 3, 2, 2, generator=g) * 2 - 1
    semantic = torch.cat([LABEL, torch.zeros(2, 1, 2, 2)], dim=1)  # an instance-edge channel is ignored
    obj = build_objective({"name": "oasis", "lambda_labelmix": 10.0, "dontcare_channel": 0})
    D = PixelD()
    torch.manual_seed(3)
    total, stats = obj.discriminator_loss(D, semantic, real, fake)
    assert D.calls == 3  # fake, real, mixed: one call each, as the official code
    torch.manual_seed(3)
    mask = labelmix_mask(LABEL)
    d = lambda x: PixelD()(x, None).logits[0]  # noqa: E731
    mixed = mask * real + (1 - mask) * fake
    l_fake = n1_cross_entropy(d(fake), LABEL, False)
    l_real = n1_cross_entropy(d(real), LABEL, True, True, 0)
    l_mix = ((mask * d(real) + (1 - mask) * d(fake) - d(mixed)) ** 2).mean()
    torch.testing.assert_close(stats["D/fake"], l_fake.detach())
    torch.testing.assert_close(stats["D/real"], l_real.detach())
    torch.testing.assert_close(stats["D/labelmix"], l_mix.detach())
    torch.testing.assert_close(total.detach(), (l_fake + l_real + 10 * l_mix).detach())
    # LabelMix's gradient reaches D through all three outputs
    total.backward()
    assert D.weight.grad is not None and D.weight.grad.abs().sum() > 0
    off = build_objective({"name": "oasis", "lambda_labelmix": 0.0})
    D2 = PixelD()
    _, stats = off.discriminator_loss(D2, semantic, real, fake)
    assert "D/labelmix" not in stats and D2.calls == 2


def test_generator_loss_with_sc_gans_semantic_term():
    g = torch.Generator().manual_seed(1)
    real, fake, coarse = (torch.rand(2, 3, 2, 2, generator=g) for _ in range(3))
    obj = build_objective({"name": "oasis", "semantic": 2.0, "dontcare_channel": None})
    assert obj.find_unused_parameters is False
    D = PixelD()
    total, stats, out = obj.generator_loss(FixedG(fake, coarse), D, None, LABEL, real)
    adv = n1_cross_entropy(PixelD()(fake, None).logits[0], LABEL, True, True, None)  # D(fake) as real classes
    torch.testing.assert_close(stats["G/adv"], adv.detach())
    torch.testing.assert_close(stats["G/semantic"], (coarse - real).abs().mean())
    torch.testing.assert_close(total.detach(), adv.detach() + 2 * (coarse - real).abs().mean())
    assert torch.equal(out, fake) and set(stats) == {"G/adv", "G/semantic", "G/total"} and D.calls == 1
    # official OASIS: no L_s, no VGG, no feature matching; a generator without a coarse RGB ignores `semantic`
    plain = build_objective({"name": "oasis"})
    assert plain.find_unused_parameters is True and plain.needs_vgg is False
    _, stats, _ = obj.generator_loss(FixedG(fake), PixelD(), None, LABEL, real)
    assert set(stats) == {"G/adv", "G/total"}
    fm = build_objective({"name": "oasis", "feature_matching": 10.0, "dontcare_channel": None})
    _, stats, _ = fm.generator_loss(FixedG(fake), PixelD(), None, LABEL, real)
    d = PixelD()
    expected = (2 * d(fake, None).logits[0] - 2 * d(real, None).logits[0]).abs().mean()
    torch.testing.assert_close(stats["G/fm"], expected.detach())


def test_the_objective_refuses_what_it_cannot_train():
    obj = build_objective({"name": "oasis", "dontcare_channel": 5})
    real = torch.zeros(2, 3, 2, 2)
    with pytest.raises(ValueError, match="loss.dontcare_channel = 5, but the dataset has 3 channels"):
        obj.generator_loss(FixedG(real), PixelD(), None, LABEL, real)

    class PatchD(nn.Module):
        def forward(self, image, semantic):
            return DiscriminatorOutput([torch.zeros(2, 1, 1, 1), torch.zeros(2, 1, 1, 1)])

    with pytest.raises(ValueError, match=r"segmentation discriminator .* \(discriminator: oasis\)"):
        build_objective({"name": "oasis"}).discriminator_loss(PatchD(), LABEL, real, real)
    with pytest.raises(ValueError, match="trains without a style encoder"):
        build_objective({"name": "oasis"}).generator_loss(FixedG(real), PixelD(), nn.Identity(), LABEL, real)


def test_config_checks_and_vgg_weights(tmp_path):
    from tests.helpers import TINY_RAW

    raw = {**TINY_RAW, "generator": {"name": "oasis", "channels": 1, "spade_hidden": 4, "z_dim": 2},
           "discriminator": {"name": "oasis", "channels": 1}, "encoder": None}
    for loss, message in (({"lambda_labelmix": -1}, "loss.lambda_labelmix = -1.0 is out of range"),
                          ({"semantic_loss": "l3"}, "semantic_loss = 'l3'"),
                          ({"dontcare_channel": -2}, "loss.dontcare_channel = -2 is out of range"),
                          ({"labelmix": 1}, "has no option")):
        with pytest.raises(ConfigError, match=message):
            resolve_config({**raw, "loss": {"name": "oasis", **loss}})
    cfg = resolve_config({**raw, "loss": {"name": "oasis", "lambda_vgg": 10, "vgg_weights": str(tmp_path / "v.pth")}})
    with pytest.raises(MissingWeightsError, match=r"the VGG term \(loss.lambda_vgg=10\).*--set loss.lambda_vgg=0"):
        build_objective(cfg.loss).prepare()
    obj = build_objective(cfg.loss).prepare(pretrained=False)  # random VGG: the official term's structure
    real = torch.rand(1, 3, 32, 32)
    _, stats, _ = obj.generator_loss(FixedG(real * 0), PixelD(), None, torch.ones(1, 3, 32, 32) / 3, real)
    assert stats["G/vgg"] > 0


@pytest.mark.parametrize("preset, dontcare", [("oasis-ade20k", 0), ("oasis-coco", 182), ("oasis-cityscapes", 0),
                                              ("oasis-synthetic-faces", None), ("scgan-ade20k-oasisd", 0),
                                              ("scgan-synthetic-faces-oasisd", None)])
def test_presets_use_the_datasets_unlabeled_channel(preset, dontcare):
    cfg = load_config(preset)
    info = dataset_info(cfg.data)
    assert cfg.loss["name"] == "oasis" and cfg.loss["dontcare_channel"] == dontcare
    if dontcare is not None:
        assert info.class_names[dontcare] == "unlabeled"
    if preset == "oasis-cityscapes":  # semsynth's cityscapes marks none; OASIS weights labelId 0 by 0
        assert info.dontcare_index is None and cfg.loss["lambda_labelmix"] == 5.0 and cfg.optim.lr_g == 4e-4
    else:
        assert info.dontcare_index == dontcare
    assert cfg.train.ema and cfg.train.ema_bn_batches > 0 and cfg.discriminator["name"] == "oasis"


@pytest.mark.parametrize("preset, decay, batch", [("oasis-ade20k", 0.9999, 32), ("oasis-coco", 0.9999, 32),
                                                  ("oasis-cityscapes", 0.999, 20), ("scgan-ade20k-oasisd", 0.9999, 16)])
def test_preset_ema_half_lives_are_the_official_decays(preset, decay, batch):
    from semsynth.training.ema import ema_beta

    cfg = load_config(preset)
    assert cfg.train.batch_size == batch and cfg.train.ema_rampup is None
    assert ema_beta(batch, cfg.train.ema_halflife_images, 10**6, None) == pytest.approx(decay, abs=1e-9)


# -- the EMA's batch-norm statistics --------------------------------------------------------------------------


def test_refresh_batchnorm_estimates_the_emas_own_statistics_without_touching_the_rng():
    from semsynth.models import build_generator
    from semsynth.training.ema import has_batchnorm, refresh_batchnorm

    G = build_generator({"name": "oasis", "channels": 1, "spade_hidden": 4, "z_dim": 2, "init_gain": 1.0},
                        num_classes=3, resolution=32).eval()
    bn = G.body[0].norm_0.param_free_norm
    assert has_batchnorm(G) and torch.equal(bn.running_mean, torch.zeros_like(bn.running_mean))
    batches = [torch.nn.functional.one_hot(torch.randint(0, 3, (2, 32, 32)), 3).permute(0, 3, 1, 2).float()
               for _ in range(3)]
    torch.manual_seed(7)
    expected_next = torch.rand(3)
    torch.manual_seed(7)
    assert refresh_batchnorm(G, iter(batches), torch.device("cpu"), seed=1) == 3
    assert torch.equal(torch.rand(3), expected_next)  # the caller's random stream is untouched
    assert not G.training and int(bn.num_batches_tracked) == 3
    assert bn.running_mean.abs().sum() > 0
    again = copy.deepcopy(G)  # from the same state, the same batches and seed: the same statistics
    refresh_batchnorm(G, iter(batches), torch.device("cpu"), seed=1)
    refresh_batchnorm(again, iter(batches), torch.device("cpu"), seed=1)
    assert all(torch.equal(a, b) for a, b in zip(G.buffers(), again.buffers()))  # seeded: reproducible
    no_bn = build_generator({"name": "oasis", "channels": 1, "spade_hidden": 4, "z_dim": 2,
                             "param_free_norm": "instance"}, num_classes=3, resolution=32)
    assert not has_batchnorm(no_bn) and refresh_batchnorm(no_bn, iter(batches), torch.device("cpu"), 0) == 0


def test_a_checkpoint_written_before_ema_bn_batches_existed_resumes_without_a_difference():
    from semsynth.training.checkpoint import numerics_changes

    new = load_config("oasis-synthetic-faces").to_dict()
    old = copy.deepcopy(new)
    old["train"].pop("ema_bn_batches")
    assert numerics_changes(old, {**new, "train": {**new["train"], "ema_bn_batches": 0}}) == []
    assert numerics_changes(old, new) == [("train.ema_bn_batches", 0, 10)]


# -- one training step ---------------------------------------------------------------------------------------

TINY_RUN = ["data.num_samples=8", "data.resolution=32", "discriminator.num_res_blocks=5", "discriminator.channels=1",
            "train.batch_size=4", "train.images=4", "train.log_every=4", "train.sample_every=4",
            "train.checkpoint_every=4", "train.num_samples=2", "train.ema_bn_batches=2", "train.tensorboard=false",
            "train.threads=1"]
TINY_G = {"oasis-synthetic-faces": ["generator.num_res_blocks=5", "generator.channels=1", "generator.spade_hidden=4",
                                    "generator.z_dim=2"],
          "scgan-synthetic-faces-oasisd": ["generator.srg_width=2", "generator.fc_width=2", "generator.svg_width=2",
                                           "generator.conv_candidates=2", "generator.norm_candidates=2",
                                           "generator.spade_hidden=4"]}


@pytest.mark.parametrize("preset", list(TINY_G))
def test_one_training_step_changes_G_and_D(preset, tmp_path, monkeypatch):
    import semsynth.training.loop as loop
    from semsynth.training import load_training_state, train
    from semsynth.training.checkpoint import list_checkpoints

    initial, refreshed = {}, []
    for name in ("build_generator", "build_discriminator"):
        def build(spec, _orig=getattr(loop, name), _name=name, **kw):
            net = _orig(spec, **kw)
            initial[_name] = copy.deepcopy(net.state_dict())
            return net
        monkeypatch.setattr(loop, name, build)
    real_refresh = loop.refresh_batchnorm
    monkeypatch.setattr(loop, "refresh_batchnorm",
                        lambda ema, batches, device, seed: refreshed.append(real_refresh(ema, batches, device, seed)))
    cfg = load_config(preset, TINY_RUN + TINY_G[preset])
    run = train(cfg, outdir=tmp_path)
    state = load_training_state(list_checkpoints(run)[-1])
    changed = {}
    for key, name in (("G", "build_generator"), ("D", "build_discriminator")):
        changed[key] = [k for k, v in initial[name].items()
                        if v.is_floating_point() and not torch.equal(v, state[key][k])]
        assert len(changed[key]) > 5, f"{key} did not train"
    if preset.startswith("scgan"):
        assert any(k.startswith("svg.") for k in changed["G"])  # L_s trains SC-GAN's SVG
        stats = (run / "stats.jsonl").read_text()
        assert '"G/semantic"' in stats and '"D/labelmix"' in stats
    else:
        assert '"D/labelmix"' in (run / "stats.jsonl").read_text()
    # the EMA's batch norms were re-estimated (2 batches) before the samples and the checkpoint used it
    assert refreshed and set(refreshed) == {2}

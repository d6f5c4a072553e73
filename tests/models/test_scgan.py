import pytest
import torch
import torch.nn.functional as F

from semsynth import build_generator, count_parameters, one_hot_label
from semsynth.errors import ConfigError, ShapeError

TINY = {"name": "scgan", "srg_width": 4, "fc_width": 4, "svg_width": 4, "conv_candidates": 3,
        "norm_candidates": 2, "spade_hidden": 8}


def tiny(**kw):
    spec = dict(TINY)
    spec.update(kw)
    return build_generator(spec, num_classes=5, resolution=kw.pop("resolution", 64))


def sem(b=2, h=64, w=64, c=5):
    return one_hot_label(torch.randint(0, c, (b, h, w)), c)


# -- official parameter counts (scgan_official.md §7.2), on the meta device -------------------------------
OFFICIAL = {
    "ade20k": (dict(), 151, 256, 60_854_662, 6_126_531),
    "coco": (dict(fc_width=24, svg_width=24, conv_candidates=2, norm_candidates=3, temperature=0.5), 183, 256,
             41_846_838, 3_928_755),
    "celeba": (dict(srg_width=48, conv_candidates=3, norm_candidates=3, svg_spectral=False, position_encoding=True,
                    pyramid_position=True, position_levels=4, input_mode="noise"), 19, 512, 147_570_054, 4_910_019),
}


@pytest.mark.parametrize("key", list(OFFICIAL))
def test_official_parameter_counts(key):
    kw, c, res, total, svg = OFFICIAL[key]
    with torch.device("meta"):
        G = build_generator({"name": "scgan", **kw}, num_classes=c, resolution=res)
    assert count_parameters(G) == total
    assert count_parameters(G.svg) == svg


def test_ade20k_block_widths_and_candidate_shapes():
    with torch.device("meta"):
        G = build_generator("scgan", num_classes=151, resolution=256)
    assert G.svg.widths == [512, 256, 128, 64, 32, 32]
    assert G.head_0.conv_0.weight.shape == (3, 512, 512, 3, 3)
    assert G.head_0.norm_0.candidates.shape == (4, 1024)
    assert G.up_0.norm_1.candidates.shape == (4, 512)
    assert G.up_0.conv_s.weight.shape == (256, 512, 3, 3)  # (meta models skip the SN parametrisation)
    assert G.up_3.norm_s.mlp_shared[0].weight.shape == (128, 151, 3, 3)
    assert not G.head_0.learned_shortcut and G.up_0.learned_shortcut
    assert G.fc.weight.shape == (512, 151, 3, 3)


def test_forward_shapes_and_aux_outputs():
    G = tiny().train()
    s = sem()
    out = G(s, return_aux=True)
    assert out.image.shape == (2, 3, 64, 64)
    assert out.image.min() >= -1 and out.image.max() <= 1
    assert out.coarse_rgb.shape == (2, 3, 64, 64)
    sizes = [2, 4, 8, 16, 32, 64]
    assert [tuple(r.shape) for r in out.conv_routing] == [(2, 3, s_, s_) for s_ in sizes]
    assert [tuple(r.shape) for r in out.norm_routing] == [(2, 2, s_, s_) for s_ in sizes]
    for r in out.conv_routing:  # softmax over candidates
        torch.testing.assert_close(r.sum(1), torch.ones_like(r[:, 0]))
    assert [f.shape[1] for f in out.semantic_features] == [64, 32, 16, 8, 4, 4]


def test_image_alone_skips_the_coarse_rgb_head():
    """The SVG's RGB head only feeds a training loss: a forward for the image alone does not run it, and the
    image is the same."""
    G = tiny().eval()
    s = sem()
    calls = []
    G.svg.to_rgb.register_forward_hook(lambda *a: calls.append(1))
    with torch.no_grad():
        aux = G(s, return_aux=True)
        assert calls == [1]
        image = G(s)
    assert calls == [1]
    assert torch.equal(image, aux.image)
    feats, rgb = G.svg(s, rgb=False)
    assert rgb is None and all(torch.equal(a, b) for a, b in zip(feats, aux.semantic_features))


def test_bilinear_svg_with_label_lookups_equals_the_dense_stages(monkeypatch):
    """svg_upsample="bilinear": the finest stage's label look-ups (the first conv split by input channels) still
    up-sample the previous stage bilinearly (only nearest up-sampling takes the small-map path)."""
    from semsynth.models.generators.scgan import SVGStage

    monkeypatch.setattr(SVGStage, "onehot_min_work", 0)
    torch.manual_seed(0)
    G = tiny(svg_upsample="bilinear").double().eval()
    s = sem().double()
    with torch.no_grad():
        split = G(s, return_aux=True)
        monkeypatch.setattr(SVGStage, "onehot_min_work", 10**12)  # the stage as written: cat, LReLU, conv
        dense = G(s, return_aux=True)
    assert (split.image - dense.image).abs().max() <= 1e-12
    assert (split.coarse_rgb - dense.coarse_rgb).abs().max() <= 1e-12


def test_routing_is_softmax_of_tau_times_channel_means():
    G = tiny(temperature=0.3).train()
    out = G(sem(), return_aux=True)
    f = out.semantic_features[2]
    bins = [(0, 6), (5, 11), (10, 16)]  # 16 channels, 3 bins
    v = torch.stack([f[:, a:b].mean(1) for a, b in bins], 1)
    torch.testing.assert_close(out.conv_routing[2], torch.softmax(0.3 * v, 1))


def test_svg_bilinear_pyramid_is_area_fractions():
    G = tiny()
    s = sem(1)
    pyr = G.svg.pyramid(s)
    assert [p.shape[-1] for p in pyr] == [2, 4, 8, 16, 32, 64]
    torch.testing.assert_close(pyr[-2], F.avg_pool2d(s, 2))
    torch.testing.assert_close(pyr[0], F.avg_pool2d(s, 32))


def test_backward_reaches_every_parameter():
    G = tiny().train()
    out = G(sem(), return_aux=True)
    (out.image.mean() + out.coarse_rgb.mean()).backward()
    missing = [n for n, p in G.named_parameters() if p.grad is None]
    assert not missing, missing


def test_label_mode_is_deterministic_and_follows_the_layout():
    G = tiny().train()
    s = sem(1)
    G(s)  # warm the batch-norm running statistics
    G.eval()
    a, b = G(s), G(s)
    assert torch.equal(a, b)
    s2 = s.clone()
    s2[:, :, :32] = torch.roll(s2[:, :, :32], 1, dims=1)  # relabel the top half
    assert not torch.allclose(G(s2), a)


@pytest.mark.parametrize("variant", [dict(conv_type="conv"), dict(norm_type="batch"), dict(shortcut="scn"),
                                     dict(mapping="sigmoid"), dict(mapping="tanh"), dict(mapping="relu"),
                                     dict(mapping="none"), dict(svg_upsample="bilinear"),
                                     dict(param_free_norm="instance"), dict(output_activation="tanh"),
                                     dict(spectral=False, svg_spectral=False), dict(conv_candidates=1, norm_candidates=1),
                                     dict(position_encoding=True), dict(position_encoding=True, pyramid_position=True,
                                                                        position_levels=4)])
def test_ablation_variants_train(variant):
    G = tiny(**variant).train()
    out = G(sem(), return_aux=True)
    assert out.image.shape == (2, 3, 64, 64) and torch.isfinite(out.image).all()
    out.image.mean().backward()


@pytest.mark.parametrize("variant", [dict(), dict(norm_type="batch", param_free_norm="none"),
                                     dict(conv_type="conv", param_free_norm="instance")])
def test_in_place_activations_train_exactly_as_out_of_place_ones(variant):
    """The generator's LReLUs overwrite their input (one activation map less kept for backward); the image and
    every gradient must equal those with out-of-place activations, bit for bit, also where a block's norm is the
    identity (there the block must not activate in place: it would overwrite its own input)."""
    torch.manual_seed(0)
    s = sem()
    results = []
    for inplace in (True, False):
        torch.manual_seed(1)
        G = tiny(**variant).train()
        acts = [m for m in G.modules() if isinstance(m, torch.nn.LeakyReLU)]
        assert any(m.inplace for m in acts)
        if variant.get("param_free_norm") == "none":
            assert not any(b.act.inplace for b in (G.head_0, G.up_3))
        if not inplace:
            for m in acts:
                m.inplace = False
        out = G(s, return_aux=True)
        (out.image.square().mean() + out.coarse_rgb.mean()).backward()
        results.append([out.image.detach()] + [p.grad for p in G.parameters()])
    for a, b in zip(*results):
        assert torch.equal(a, b)


def test_conv_ablation_has_n_times_the_convs():
    G = tiny(conv_type="conv")
    assert len(G.up_1.conv_0.convs) == 3
    assert G.up_1.conv_0.convs[0].parametrizations.weight.original.shape[1] == 32 + 3  # input (8g) + V


def test_more_layout_on_2_to_1_images():
    G = build_generator({**TINY, "layout": "more"}, num_classes=5, resolution=[64, 128]).train()
    out = G(sem(2, 64, 128), return_aux=True)
    assert out.image.shape == (2, 3, 64, 128)
    assert len(out.conv_routing) == 7 and out.conv_routing[0].shape[-2:] == (1, 2)
    with pytest.raises(ShapeError, match="divisible by 64"):
        G(sem(1, 32, 96))


def test_noise_mode_is_multimodal():
    G = tiny(input_mode="noise", z_dim=16).train()
    s = sem(1)
    G(s)
    G.eval()
    z1, z2 = torch.randn(1, 16), torch.randn(1, 16)
    assert torch.equal(G(s, z1), G(s, z1))
    assert not torch.allclose(G(s, z1), G(s, z2))
    with pytest.raises(ShapeError, match="z has shape"):
        G(s, torch.randn(1, 8))
    with pytest.raises(ShapeError, match="resolution"):
        G(sem(1, 32, 32))


def test_bad_inputs_and_options():
    G = tiny()
    with pytest.raises(ShapeError, match=r"expects a semantic map \[B, 5, H, W\]"):
        G(sem(1, 64, 64, 4))
    with pytest.raises(ShapeError, match="divisible by 32"):
        G(sem(1, 48, 48))
    with pytest.raises(ConfigError, match="layout = 'diagonal' is not valid; choose one of: normal, more"):
        tiny(layout="diagonal")
    with pytest.raises(ConfigError, match="fewer than the number of candidates"):
        build_generator({**TINY, "conv_candidates": 5, "svg_width": 2}, num_classes=3, resolution=64)
    with pytest.raises(ValueError, match="takes no z"):
        G(sem(1), torch.randn(1, 4))


def test_eval_mode_is_finite_after_warmup():
    G = tiny().train()
    s = sem(4)
    with torch.no_grad():
        for _ in range(5):
            G(s)
    G.eval()
    with torch.no_grad():
        y = G(s)
    assert torch.isfinite(y).all()

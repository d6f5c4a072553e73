import pytest
import torch
import torch.nn.functional as F

from semsynth import build_discriminator, build_encoder, count_parameters, one_hot_label
from semsynth.errors import ShapeError
from semsynth.models.encoders import reparameterize


def test_official_discriminator_and_encoder_counts():
    with torch.device("meta"):
        assert count_parameters(build_discriminator("fpse", num_classes=151)) == 5_190_593
        assert count_parameters(build_discriminator("fpse", num_classes=183)) == 5_194_689
        assert count_parameters(build_discriminator("multiscale", num_classes=19)) == 5_566_594
        assert count_parameters(build_encoder({"name": "conv", "width": 48}, z_dim=256)) == 6_672_656


def test_fpse_outputs_and_pooled_embedding_equals_reference():
    D = build_discriminator({"name": "fpse", "width": 8}, num_classes=4)
    img = torch.randn(2, 3, 64, 64)
    seg = one_hot_label(torch.randint(0, 4, (2, 64, 64)), 4)
    out = D(img, seg)
    assert [tuple(x.shape) for x in out.logits] == [(2, 1, 16, 16), (2, 1, 8, 8), (2, 1, 4, 4)]
    assert [len(g) for g in out.features] == [1, 1, 1, 1]
    assert [g[0].shape[1] for g in out.features] == [16, 32, 64, 64]
    # reference: embed at full resolution, then average-pool (as the official code)
    e = D.embedding(seg)
    e1 = F.avg_pool2d(e, 2)
    e2 = F.avg_pool2d(e1, 2)
    e3 = F.avg_pool2d(e2, 2)
    e4 = F.avg_pool2d(e3, 2)
    feats = [D.final2, D.final3, D.final4]
    e_ = D.enc1(img)
    e2f = D.enc2(e_)
    e3f = D.enc3(e2f)
    e4f = D.enc4(e3f)
    e5f = D.enc5(e4f)
    p5 = D.lat5(e5f)
    p4 = F.interpolate(p5, scale_factor=2.0, mode="bilinear") + D.lat4(e4f)
    p3 = F.interpolate(p4, scale_factor=2.0, mode="bilinear") + D.lat3(e3f)
    p2 = F.interpolate(p3, scale_factor=2.0, mode="bilinear") + D.lat2(e2f)
    for pred, f, emb in zip(out.logits, [feats[0](p2), feats[1](p3), feats[2](p4)], [e2, e3, e4]):
        ref = D.tf(f) + (emb * D.seg(f)).sum(1, keepdim=True)
        torch.testing.assert_close(pred, ref, rtol=1e-4, atol=1e-5)


def test_fpse_in_place_activations_keep_the_values_and_gradients():
    import copy

    D = build_discriminator({"name": "fpse", "width": 8}, num_classes=4).train()
    ref = copy.deepcopy(D)
    acts = [m for m in ref.modules() if isinstance(m, torch.nn.LeakyReLU)]
    assert acts and all(m.inplace for m in acts)
    for m in acts:
        m.inplace = False
    img = torch.randn(2, 3, 64, 64, requires_grad=True)
    seg = one_hot_label(torch.randint(0, 4, (2, 64, 64)), 4)
    results = []
    for net in (D, ref):
        out = net(img, seg)
        loss = sum(p.square().mean() for p in out.logits) + sum(f[0].abs().mean() for f in out.features)
        grads = torch.autograd.grad(loss, [img, *net.parameters()])
        results.append([*out.logits, *(f[0] for f in out.features), *grads])
    for a, b in zip(*results):
        assert torch.equal(a, b)


def test_fp_only_ignores_the_label_map():
    D = build_discriminator({"name": "fp", "width": 8}, num_classes=4).eval()
    assert not hasattr(D, "embedding")
    img = torch.randn(1, 3, 64, 64)
    a = D(img, one_hot_label(torch.zeros(1, 64, 64, dtype=torch.long), 4))
    b = D(img, one_hot_label(torch.ones(1, 64, 64, dtype=torch.long), 4))
    for x, y in zip(a.logits, b.logits):
        assert torch.equal(x, y)


def test_multiscale_outputs():
    D = build_discriminator({"name": "multiscale", "width": 8, "num_scales": 3}, num_classes=4, use_instance=True)
    out = D(torch.randn(2, 3, 64, 64), torch.rand(2, 5, 64, 64))
    assert len(out.logits) == 3 and [len(g) for g in out.features] == [4, 4, 4]  # 4 hidden layers per scale
    # 64 -> 33 -> 17 -> 9 (stride 2, pad 2, k 4) -> 10 -> 11 (stride 1); the next scale sees 32x32
    assert out.logits[0].shape == (2, 1, 11, 11) and out.logits[1].shape == (2, 1, 7, 7)
    with pytest.raises(ShapeError, match="expected \\[B, 5, 64, 64\\]"):
        D(torch.randn(2, 3, 64, 64), torch.rand(2, 4, 64, 64))


def test_discriminators_reject_bad_images():
    D = build_discriminator({"name": "fpse", "width": 8}, num_classes=4)
    with pytest.raises(ShapeError, match="divisible by 32"):
        D(torch.randn(1, 3, 48, 48), torch.rand(1, 4, 48, 48))
    with pytest.raises(ShapeError, match="expects images"):
        D(torch.randn(1, 1, 64, 64), torch.rand(1, 4, 64, 64))


def test_encoder_shapes_and_reparameterization():
    E = build_encoder({"name": "conv", "width": 8, "input_size": 64}, z_dim=16)
    mu, logvar = E(torch.randn(3, 3, 96, 96))  # resized to 64 first
    assert mu.shape == (3, 16) and logvar.shape == (3, 16)
    g = torch.Generator().manual_seed(1)
    z = reparameterize(torch.zeros(10000, 1), torch.full((10000, 1), 2 * torch.log(torch.tensor(3.0))), g)
    assert abs(z.std().item() - 3.0) < 0.1
    with pytest.raises(ValueError, match="power of two"):
        build_encoder({"name": "conv", "input_size": 100}, z_dim=4)

import pytest
import torch

from semsynth.errors import MissingWeightsError
from semsynth.losses import (
    VGGLoss,
    d_adversarial_loss,
    feature_matching_loss,
    find_vgg19_weights,
    g_adversarial_loss,
    kl_divergence,
)


def test_hinge_losses_on_hand_computed_logits():
    real = [torch.tensor([[2.0, 0.5]]), torch.tensor([[-1.0]])]
    fake = [torch.tensor([[-2.0, 0.0]]), torch.tensor([[1.0]])]
    lr, lf = d_adversarial_loss(real, fake, "hinge")
    # real: map1 mean(relu(1-2), relu(1-0.5)) = 0.25; map2 relu(1+1) = 2 -> mean 1.125
    assert lr.item() == pytest.approx(1.125)
    # fake: map1 mean(relu(1-2), relu(1+0)) = 0.5; map2 relu(1+1) = 2 -> 1.25
    assert lf.item() == pytest.approx(1.25)
    # G: -mean per map: map1 1.0, map2 -1.0 -> 0
    assert g_adversarial_loss(fake, "hinge").item() == pytest.approx(0.0)
    assert g_adversarial_loss([torch.tensor([0.0])], "ls").item() == pytest.approx(1.0)
    with pytest.raises(ValueError, match="valid choices"):
        g_adversarial_loss(fake, "wgan")


def test_feature_matching_conventions():
    a = [torch.ones(1, 2, 2, 2)]
    b = [torch.zeros(1, 2, 2, 2)]
    # FPSE style: 4 groups of one -> mean of L1s
    assert feature_matching_loss([a, a, b, b], [b, b, b, b]).item() == pytest.approx(0.5)
    # multiscale: one group per D with several features -> sum within, mean over Ds
    assert feature_matching_loss([a + a, b + b], [b + b, b + b]).item() == pytest.approx(1.0)
    x = torch.randn(2, 3, 4, 4)
    assert feature_matching_loss([[x]], [[x.clone()]]).item() == 0.0


def test_kl_divergence_formula():
    mu, logvar = torch.tensor([[1.0, 0.0]]), torch.tensor([[0.0, 1.0]])
    expected = -0.5 * ((1 + 0 - 1 - 1) + (1 + 1 - 0 - torch.e))
    assert kl_divergence(mu, logvar).item() == pytest.approx(float(expected), rel=1e-6)
    assert kl_divergence(torch.zeros(4, 3), torch.zeros(4, 3)).item() == 0.0


def test_vgg_loss_random_init_formula():
    loss = VGGLoss(pretrained=False)
    x, y = torch.rand(1, 3, 32, 32) * 2 - 1, torch.rand(1, 3, 32, 32) * 2 - 1
    fx, fy = loss.vgg(x), loss.vgg(y)
    assert [f.shape[1] for f in fx] == [64, 128, 256, 512, 512]
    expected = sum(w * (a - b).abs().mean() for w, a, b in zip([1 / 32, 1 / 16, 1 / 8, 1 / 4, 1], fx, fy))
    torch.testing.assert_close(loss(x, y), expected)
    assert loss(x, x).item() == 0.0
    assert all(not p.requires_grad for p in loss.parameters())


def test_missing_vgg_weights_message(tmp_path):
    with pytest.raises(MissingWeightsError, match="loss.perceptual=0") as e:
        find_vgg19_weights(tmp_path / "nope.pth")
    assert "vgg19-dcbb9e9d.pth" in str(e.value) and str(tmp_path / "nope.pth") in str(e.value)


def test_vgg_weights_load_from_a_torchvision_state_dict(tmp_path):
    from semsynth.losses.perceptual import _vgg19_features

    ref = _vgg19_features()
    path = tmp_path / "vgg19-dcbb9e9d.pth"
    # the hub file is torchvision's full state dict; its classifier keys are ignored, so they are left out here
    torch.save({f"features.{k}": v for k, v in ref.state_dict().items()}, path)
    loss = VGGLoss(weights=path)
    x = torch.rand(1, 3, 32, 32)
    torch.testing.assert_close(loss.vgg(x)[-1], ref[:30](x))

"""CRN (models/generators/crn.py) and its objective (objectives/crn.py, losses/regression.py)."""

import numpy as np
import pytest
import torch
from PIL import Image

from semsynth import build_generator, count_parameters, one_hot_label
from semsynth.cli import main
from semsynth.config import load_config
from semsynth.errors import ConfigError, ShapeError
from semsynth.losses.regression import CRNFeatures, perceptual_regression
from semsynth.models import generator_latent_dim
from semsynth.models.generators.crn import official_widths
from semsynth.objectives import build_objective
from semsynth.training import load_training_state, train
from semsynth.training.checkpoint import list_checkpoints, load_model
from semsynth.training.loop import seed_everything

TINY = ["generator.widths=[4, 4, 4, 4, 4]", "loss.random_width=4", "data.num_samples=4", "train.batch_size=2",
        "train.images=2", "train.log_every=2", "train.sample_every=2", "train.checkpoint_every=2",
        "train.num_samples=2", "train.tensorboard=false"]


def sem(b=2, h=64, w=64, c=5):
    return one_hot_label(torch.randint(0, c, (b, h, w)), c)


def crn_count_by_hand(channels: int, widths: list[int], outputs: int = 1) -> int:
    """Module i: conv3x3 (no bias) from the labels (+ the previous module's width) and conv3x3 (no bias), each with
    a layer norm's gain and bias per channel; then the 1x1 conv (with bias) to 3 k channels."""
    total, previous = 0, 0
    for w in widths:
        total += (channels + previous) * w * 9 + 2 * w + w * w * 9 + 2 * w
        previous = w
    return total + previous * 3 * outputs + 3 * outputs


def test_parameter_count_at_ade20k_256_is_the_hand_computation():
    with torch.device("meta"):
        G = build_generator({"name": "crn"}, num_classes=151, resolution=256)
    assert G.widths == [1024, 1024, 1024, 1024, 1024, 512, 512]  # modules 4, 8, ..., 256 pixels
    # 151 * 1024 * 9 + 1024^2 * 9 + 4 * 1024 for the first module, and so on (docs/models.md)
    assert count_parameters(G) == crn_count_by_hand(151, G.widths) == 105_106_947
    with torch.device("meta"):
        G9 = build_generator({"name": "crn", "num_outputs": 9}, num_classes=35, resolution=[256, 512])
    assert count_parameters(G9) == crn_count_by_hand(35, [1024] * 5 + [512] * 2, 9) == 98_704_923


def test_official_widths_by_module_size():
    assert official_widths((256, 512)) == [1024] * 5 + [512] * 2
    assert official_widths((1024, 2048)) == [1024] * 5 + [512] * 2 + [128, 32]  # demo_1024p.py
    assert official_widths((64, 64)) == [1024] * 5


def test_forward_shapes_range_and_the_diversity_outputs():
    G = build_generator({"name": "crn", "widths": [8, 8, 8, 4, 4], "num_outputs": 3}, num_classes=5,
                        resolution=64)
    s = sem()
    out = G(s, return_aux=True)
    assert out.image.shape == (2, 3, 64, 64) and out.variants.shape == (2, 3, 3, 64, 64)
    assert torch.equal(out.image, out.variants[:, 0]) and torch.equal(G(s), out.image)
    assert out.image.abs().max() <= 1 and out.variants[:, 1:].sub(out.image[:, None]).abs().max() > 0
    assert G.latent_dim == 0 and generator_latent_dim(G.config) == 0
    G2 = build_generator({"name": "crn", "widths": [4, 4, 4, 4, 4]}, num_classes=5, resolution=[64, 128])
    assert G2(sem(1, 64, 128)).shape == (1, 3, 64, 128)  # 4x8 .. 64x128, as Cityscapes' 1:2
    assert [m.conv1.in_channels for m in G2.refine] == [5] + [9] * 4  # labels (+ the previous module)
    assert all(m.conv1.bias is None and m.conv2.bias is None for m in G2.refine)
    with pytest.raises(ShapeError, match="semantic map"):
        G(sem(c=4))
    with pytest.raises(ShapeError, match="refinement modules"):
        G(sem(h=128, w=128))
    with pytest.raises(ValueError, match="takes no z"):
        G(s, torch.zeros(2, 4))


@pytest.mark.parametrize("spec, message", [
    ({"widths": [8, 8]}, "one width per module"),
    ({"start_size": 3}, "start_size"),
    ({"num_outputs": 0}, "num_outputs"),
])
def test_bad_options_are_config_errors(spec, message):
    with pytest.raises(ConfigError, match=message):
        build_generator({"name": "crn", **spec}, num_classes=5, resolution=64)


# -- the objective -------------------------------------------------------------------------------------------


def test_the_diversity_loss_charges_each_class_to_its_best_image():
    labels = torch.zeros(1, 2, 4, 4)
    labels[:, 0, :, :2] = 1  # class 0 on the left half, class 1 on the right half
    labels[:, 1, :, 2:] = 1
    real = torch.zeros(1, 3, 4, 4)
    a = torch.zeros(3, 4, 4)
    a[:, :, 2:] = 1  # right on the left half, wrong by 1 on the right half
    images = torch.stack([a, a.flip(-1)])[None]  # the second image: the other way round
    loss, terms = perceptual_regression(images, real, labels, None, [1.0], normalize=False)
    # each class has an image with error 0; the mean over the two images is 0.5 per class half -> 0.001 * 0.5
    assert loss.item() == pytest.approx(0.001 * (0.25 + 0.25))
    assert terms["pixels"].item() == pytest.approx(0.5)
    one, _ = perceptual_regression(images[:, :1], real, labels, None, [1.0], normalize=False)
    assert one.item() == pytest.approx(0.5)  # one image: the plain mean L1


def test_balanced_terms_contribute_their_weights():
    torch.manual_seed(0)
    net = CRNFeatures(random_seed=1, random_width=4)
    labels = one_hot_label(torch.randint(0, 3, (2, 32, 32)), 3)
    fake = torch.rand(2, 1, 3, 32, 32, requires_grad=True)
    loss, terms = perceptual_regression(fake, torch.rand(2, 3, 32, 32), labels, net, [1, 2, 1, 1, 1, 10])
    assert loss.item() == pytest.approx(16.0, rel=1e-4) and len(terms) == 6
    loss.backward()
    assert fake.grad.abs().sum() > 0
    again = CRNFeatures(random_seed=1, random_width=4)  # the random network is the seed's, nothing else's
    assert all(torch.equal(p, q) for p, q in zip(net.parameters(), again.parameters()))


def test_objective_options_and_needs():
    obj = build_objective({"name": "crn"})
    assert obj.needs_discriminator is False and obj.layer_weights == [1, 1, 1, 1, 1, 10]
    assert build_objective({"name": "crn", "gan": 1.0}).needs_discriminator is True
    assert build_objective({"name": "crn", "features": "none"}).layer_weights == [1.0]
    with pytest.raises(ConfigError, match="layer_weights"):
        build_objective({"name": "crn", "layer_weights": [1, 1]})
    with pytest.raises(ConfigError, match="loss.features"):
        build_objective({"name": "crn", "features": "alexnet"})


def test_vgg19_weights_are_never_downloaded(tmp_path):
    from semsynth.errors import MissingWeightsError

    obj = build_objective({"name": "crn", "vgg_weights": str(tmp_path / "vgg19.pth")})
    with pytest.raises(MissingWeightsError, match="loss.features=random"):
        obj.prepare("cpu")


# -- training and the model directory ------------------------------------------------------------------------


@pytest.fixture(scope="module")
def crn_run(tmp_path_factory):
    cfg = load_config("crn-synthetic-faces", TINY)
    assert cfg.discriminator is None
    run = train(cfg, outdir=tmp_path_factory.mktemp("crn"))
    return cfg, run


def test_one_step_of_the_preset_changes_every_parameter(crn_run):
    cfg, run = crn_run
    state = load_training_state(list_checkpoints(run)[-1])
    assert state["D"] is None and state["opt_D"] is None and state["cur_nimg"] == 2
    seed_everything(cfg.train.seed)
    G0 = build_generator(cfg.generator)
    same = [k for k, v in G0.state_dict().items() if torch.equal(v, state["G"][k])]
    assert same == [] and len(G0.state_dict()) == 6 * 5 + 2  # 2 convs + 2 norms (gain, bias) per module
    assert "G/conv5_2" in (run / "stats.jsonl").read_text()


def test_export_then_generate_round_trip(crn_run, tmp_path):
    _, run = crn_run
    out = tmp_path / "exported"
    assert main(["export", "--checkpoint", str(run), "--out", str(out)]) == 0
    from semsynth.data.synthetic_faces import write_synthetic_faces

    faces = write_synthetic_faces(tmp_path / "faces", 2, size=64, split="val", progress=False)
    assert main(["generate", "--model", str(out), "--labels", str(faces / "labels"), "--out",
                 str(tmp_path / "gen")]) == 0
    G, _, info, _ = load_model(out)
    label = torch.from_numpy(np.array(Image.open(min((faces / "labels").iterdir())))).long()
    with torch.no_grad():
        expected = ((G(one_hot_label(label[None], info.num_classes))[0] + 1) * 127.5).round().clamp(0, 255)
    written = np.asarray(Image.open(tmp_path / "gen" / "val_000000.png")).transpose(2, 0, 1)
    assert np.abs(written.astype(int) - expected.byte().numpy().astype(int)).max() <= 1

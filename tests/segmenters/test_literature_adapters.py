"""DRN-D-105 and DeepLab-v2: architecture, checkpoint key layout, loading (strict, ``module.`` prefixes), missing
weights. No download: checkpoints are written here from the modules themselves.

Landmark keys/shapes below are those of the public checkpoints' layouts: fyu/drn ``DRNSeg('drn_d_105', 19)``
(``base.N`` = DRN levels 0..8, ``seg``, ``up``) and kazuto1011/deeplab-pytorch v1.0
``MSC(base=DeepLabV2(182, [3, 4, 23, 3], [6, 12, 18, 24]))``.
"""

import pytest
import torch

from semsynth.errors import MissingWeightsError
from semsynth.models import count_parameters
from semsynth.segmenters import WeightsMismatchError, build_segmenter, load_segmenter
from semsynth.segmenters.deeplabv2 import rename_legacy_keys
from semsynth.segmenters.drn import bilinear_kernel, imagenet_to_trunk


@pytest.fixture(autouse=True)
def _hub_in_tmp(tmp_path, monkeypatch):
    """The torch hub cache is an empty temporary folder: nothing of the user's is read, nothing is fetched."""
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path / "hub"))


@pytest.fixture(scope="module")
def drn():
    return build_segmenter({"name": "drn-d-105", "pretrained": False}).eval()


@pytest.fixture(scope="module")
def dlv2():
    return build_segmenter({"name": "deeplabv2", "pretrained": False}).eval()


DRN_LANDMARKS = {
    "base.0.0.weight": (16, 3, 7, 7),  # level 0: 7x7 conv
    "base.1.0.weight": (16, 16, 3, 3),
    "base.2.0.weight": (32, 16, 3, 3),
    "base.2.1.running_var": (32,),
    "base.3.0.conv1.weight": (64, 32, 1, 1),
    "base.3.0.downsample.0.weight": (256, 32, 1, 1),
    "base.3.2.conv3.weight": (256, 64, 1, 1),
    "base.4.0.downsample.1.weight": (512,),
    "base.5.22.conv2.weight": (256, 256, 3, 3),  # 23 blocks in level 5
    "base.6.2.bn3.weight": (2048,),
    "base.7.0.weight": (512, 2048, 3, 3),
    "base.8.1.running_mean": (512,),
    "seg.weight": (19, 512, 1, 1),
    "seg.bias": (19,),
    "up.weight": (19, 1, 16, 16),
}

DLV2_LANDMARKS = {
    "base.layer1.conv1.conv.weight": (64, 3, 7, 7),
    "base.layer1.conv1.bn.running_mean": (64,),
    "base.layer2.block1.reduce.conv.weight": (64, 64, 1, 1),
    "base.layer2.block1.shortcut.conv.weight": (256, 64, 1, 1),
    "base.layer3.block1.reduce.conv.weight": (128, 256, 1, 1),
    "base.layer4.block23.conv3x3.conv.weight": (256, 256, 3, 3),
    "base.layer5.block3.increase.bn.weight": (2048,),
    "base.aspp.c0.weight": (182, 2048, 3, 3),
    "base.aspp.c3.bias": (182,),
}


def test_drn_layout_parameters_and_dilations(drn):
    sd = drn.state_dict()
    for k, shape in DRN_LANDMARKS.items():
        assert tuple(sd[k].shape) == shape, k
    assert "base.5.23.conv1.weight" not in sd and "base.9.0.weight" not in sd
    assert len([k for k in sd if k.endswith("conv1.weight")]) == 3 + 4 + 23 + 3
    assert drn.base[5][0].conv2.dilation == (2, 2) and drn.base[6][1].conv2.dilation == (4, 4)
    assert drn.base[7][0].dilation == (2, 2) and drn.base[4][0].conv2.stride == (2, 2)
    # The DRN paper's 54.8M for DRN-D-105 is the ImageNet model: this trunk + a 512 -> 1000 classifier.
    trunk = count_parameters(drn.base)
    assert trunk == 54_288_304
    assert abs(trunk + 512 * 1000 + 1000 - 54.8e6) < 0.05e6
    assert count_parameters(drn) == 54_302_915
    assert not drn.up.weight.requires_grad
    assert torch.allclose(drn.up.weight[3, 0], bilinear_kernel(16))
    k = bilinear_kernel(16)
    assert torch.isclose(k[7, 7], torch.tensor((1 - 0.5 / 8) ** 2)) and torch.allclose(k, k.flip(0))


def test_drn_forward_shape_at_input_resolution(drn):
    with torch.no_grad():
        out = drn(torch.rand(1, 3, 20, 28) * 2 - 1)  # not a multiple of 8: run at 16x32, resized back
    assert out.shape == (1, 19, 20, 28) and torch.isfinite(out).all()
    assert drn.label_space == "cityscapes-trainid"


def _same_state(a, b):
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


def test_drn_checkpoint_roundtrip_with_module_prefix(drn, tmp_path):
    with torch.no_grad():
        drn.seg.bias.copy_(torch.arange(19.0))
    # a training checkpoint of fyu/drn's segment.py: {"state_dict": DataParallel keys, "epoch", ...}; the torch
    # hub cache is the default location
    path = tmp_path / "hub" / "checkpoints" / "drn_d_105_cityscapes.pth"
    path.parent.mkdir(parents=True)
    torch.save({"state_dict": {f"module.{k}": v for k, v in drn.state_dict().items()}, "epoch": 3}, path)
    model, config = load_segmenter({"name": "drn-d-105"})
    assert _same_state(model, drn) and not model.training
    assert config["label_space"] == "cityscapes-trainid" and config["dataset"] is None
    assert config["segmenter"]["name"] == "drn-d-105"


def test_drn_strict_loading_names_the_problem(drn, tmp_path):
    sd = dict(drn.state_dict())
    sd.pop("base.5.3.conv2.weight")
    sd["extra.weight"] = torch.zeros(1)
    path = tmp_path / "bad.pth"
    torch.save(sd, path)
    with pytest.raises(WeightsMismatchError, match=r"missing keys: base\.5\.3\.conv2\.weight.*unexpected keys: "
                                                   r"extra\.weight"):
        build_segmenter({"name": "drn-d-105", "weights": str(path)})
    with pytest.raises(WeightsMismatchError, match="shape mismatches: seg.weight"):
        torch.save(drn.state_dict(), path)
        build_segmenter({"name": "drn-d-105", "weights": str(path), "num_classes": 18})


def test_drn_imagenet_backbone_keys(drn, tmp_path):
    # fyu/drn's ImageNet file: DRN(...) keys layer0..layer8 + fc (a 1x1 conv classifier)
    sd = {k.replace("base.", "layer", 1): v for k, v in drn.state_dict().items() if k.startswith("base.")}
    sd["fc.weight"], sd["fc.bias"] = torch.zeros(1000, 512, 1, 1), torch.zeros(1000)
    assert set(imagenet_to_trunk(sd)) == set(drn.base.state_dict())


def test_missing_weights_message(tmp_path):
    with pytest.raises(MissingWeightsError) as e:
        build_segmenter({"name": "drn-d-105"})
    msg = str(e.value)
    assert "drn_d_105_cityscapes.pth" in msg and str(tmp_path / "hub" / "checkpoints") in msg
    assert "go.yf.io/drn-cityscapes-models" in msg and "weights=" in msg
    with pytest.raises(MissingWeightsError) as e:
        build_segmenter({"name": "deeplabv2", "weights": str(tmp_path / "nope.pth")})
    msg = str(e.value)
    assert "nope.pth" in msg and "deeplabv2_resnet101_msc-cocostuff164k-100000.pth" in msg
    assert "github.com/kazuto1011/deeplab-pytorch/releases" in msg


def test_deeplabv2_layout_and_parameters(dlv2):
    sd = dlv2.state_dict()
    for k, shape in DLV2_LANDMARKS.items():
        assert tuple(sd[k].shape) == shape, k
    assert "base.layer2.block2.shortcut.conv.weight" not in sd  # identity shortcut after the first block
    assert dlv2.base.layer3.block1.reduce.conv.stride == (2, 2)  # Caffe ResNet: stride on the 1x1 reduce
    assert dlv2.base.layer4.block5.conv3x3.conv.dilation == (2, 2)
    assert dlv2.base.layer5.block2.conv3x3.conv.dilation == (4, 4)
    assert [c.dilation[0] for c in dlv2.base.aspp.children()] == [6, 12, 18, 24]
    aspp = 4 * (2048 * 182 * 9 + 182)
    assert count_parameters(dlv2) == 55_919_384
    assert count_parameters(dlv2) - aspp == 42_500_160  # = torchvision's ResNet-101 without its fc


def test_deeplabv2_forward_and_legacy_roundtrip(dlv2, tmp_path):
    x = torch.rand(1, 3, 17, 23) * 2 - 1
    dlv2.msc = False
    try:
        with torch.no_grad():
            out = dlv2(x)
    finally:
        dlv2.msc = True
    assert out.shape == (1, 182, 17, 23) and torch.isfinite(out).all() and dlv2.label_space == "coco-stuff-182"
    # the v1.0 layout as saved from DataParallel
    path = tmp_path / "dlv2.pth"
    torch.save({"module." + k: v for k, v in dlv2.state_dict().items()}, path)
    assert _same_state(build_segmenter({"name": "deeplabv2", "weights": str(path)}), dlv2)
    # an older deeplab-pytorch layout ("scale.", "proj", "aspp.stages")
    legacy = {}
    for k, v in dlv2.state_dict().items():
        legacy[k.replace("base.", "scale.", 1).replace(".shortcut.", ".proj.").replace(".aspp.", ".aspp.stages.")] = v
    assert "scale.layer2.block1.proj.conv.weight" in legacy and "scale.aspp.stages.c0.weight" in legacy
    renamed = rename_legacy_keys(legacy)
    assert renamed.keys() == dlv2.state_dict().keys()
    assert all(renamed[k] is v for k, v in zip(renamed, legacy.values()))


def test_deeplabv2_multiscale_max_fusion(monkeypatch):
    seg = build_segmenter({"name": "deeplabv2", "pretrained": False, "num_classes": 5}).eval()
    seg.base = torch.nn.Conv2d(3, 5, 3, stride=8, padding=1)  # a cheap stand-in for the network (stride 8)
    seen = []
    seg.base.register_forward_hook(lambda m, i, o: seen.append(tuple(i[0].shape[-2:])))
    # BGR mean subtraction on 0..255: a mid-grey image becomes 127.5 - (104.008, 116.669, 122.675) in B, G, R
    x = torch.zeros(1, 3, 40, 64)
    x[:, 0] = 1.0  # red = 255
    with torch.no_grad():
        multi = seg(x)
        seg.msc = False
        single = seg(x)
    assert seen == [(40, 64), (20, 32), (30, 48), (40, 64)]  # scales 1, 0.5, 0.75, then the single pass
    assert multi.shape == single.shape == (1, 5, 40, 64)
    assert (multi >= single - 1e-5).all()  # pixel-wise max over the scales includes scale 1
    captured = []
    seg.base = torch.nn.Identity()
    seg.base.register_forward_hook(lambda m, i, o: captured.append(o))
    with torch.no_grad():
        seg(x)
    bgr = captured[0][0, :, 0, 0]
    assert torch.allclose(bgr, torch.tensor([127.5 - 104.008, 127.5 - 116.669, 255 - 122.675]))

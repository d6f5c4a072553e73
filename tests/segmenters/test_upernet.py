"""UPerNet-101 adapter: the adapter's logic with a stand-in for mit-semseg (the package is optional and absent from
the test environment), the missing-package message, and, when mit-semseg is installed, the real networks."""

import importlib.util
import sys
import types

import pytest
import torch
from torch import nn

from semsynth.errors import MissingWeightsError, SemsynthError
from semsynth.segmenters import WeightsMismatchError, build_segmenter
from semsynth.segmenters import upernet as up


@pytest.fixture(autouse=True)
def _hub_in_tmp(tmp_path, monkeypatch):
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path / "hub"))


class _FakeResnet(nn.Module):
    """Stands in for mit_semseg's Resnet encoder: records its input, returns 4 maps at strides 4..32."""

    def __init__(self, orig):
        super().__init__()
        self.conv = orig.conv
        self.seen = None

    def forward(self, x, return_feature_maps=False):
        assert return_feature_maps
        self.seen = x
        return [self.conv(nn.functional.avg_pool2d(x, s)) for s in (4, 8, 16, 32)]


class _FakeUPerNet(nn.Module):
    def __init__(self, num_class=150, fc_dim=4096, use_softmax=False, fpn_dim=256):
        super().__init__()
        assert fc_dim == 2048 and fpn_dim == 512 and not use_softmax
        self.head = nn.Conv2d(4, num_class, 1)

    def forward(self, conv_out, segSize=None):
        return nn.functional.log_softmax(self.head(conv_out[0]), 1)


def _fake_mit():
    return types.SimpleNamespace(resnet101=lambda pretrained=False: types.SimpleNamespace(conv=nn.Conv2d(3, 4, 1)),
                                 Resnet=_FakeResnet, UPerNet=_FakeUPerNet)


def test_adapter_logic_with_a_fake_mit_semseg(monkeypatch, tmp_path):
    monkeypatch.setattr(up, "_import_mit_semseg", _fake_mit)
    seg = build_segmenter({"name": "upernet-101", "pretrained": False}).eval()
    x = torch.rand(2, 3, 50, 70) * 2 - 1
    out = seg(x)
    assert out.shape == (2, 150, 50, 70) and seg.label_space == "ade20k-150"
    seen = seg.encoder.seen
    assert seen.shape[-2:] == (64, 64)  # rounded to a multiple of 32
    # ImageNet normalisation of RGB in [0, 1]
    x0 = torch.full((1, 3, 32, 32), 0.0)  # grey 0.5
    seg(x0)
    want = (0.5 - torch.tensor([0.485, 0.456, 0.406])) / torch.tensor([0.229, 0.224, 0.225])
    assert torch.allclose(seg.encoder.seen[0, :, 0, 0], want, atol=1e-6)
    seg.input_size = 96
    seg(x)
    assert seg.encoder.seen.shape[-2:] == (96, 128)  # shorter side 96, aspect kept, multiple of 32

    # checkpoint directory: encoder_epoch_50.pth + decoder_epoch_50.pth, strictly loaded, module. prefix ok
    folder = tmp_path / "hub" / "checkpoints" / "ade20k-resnet101-upernet"
    folder.mkdir(parents=True)
    torch.save({"module." + k: v + 1 for k, v in seg.encoder.state_dict().items()}, folder / "encoder_epoch_50.pth")
    torch.save(seg.decoder.state_dict(), folder / "decoder_epoch_50.pth")
    loaded = build_segmenter("upernet-101")
    assert torch.equal(loaded.encoder.conv.weight, seg.encoder.conv.weight + 1)
    torch.save({"head.weight": torch.zeros(3)}, folder / "decoder_epoch_50.pth")
    with pytest.raises(WeightsMismatchError, match="head.bias"):
        build_segmenter({"name": "upernet-101", "weights": str(folder)})
    (folder / "decoder_epoch_50.pth").unlink()
    with pytest.raises(MissingWeightsError, match="decoder_epoch_50.pth"):
        build_segmenter({"name": "upernet-101", "weights": str(folder)})


def test_missing_weights_directory_message(monkeypatch, tmp_path):
    monkeypatch.setattr(up, "_import_mit_semseg", _fake_mit)
    with pytest.raises(MissingWeightsError) as e:
        build_segmenter("upernet-101")
    msg = str(e.value)
    assert "ade20k-resnet101-upernet" in msg and "sceneparsing.csail.mit.edu" in msg
    assert str(tmp_path / "hub" / "checkpoints") in msg


def test_missing_package_says_pip_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "mit_semseg", None)  # makes the import fail like an absent package
    monkeypatch.setitem(sys.modules, "mit_semseg.models", None)
    with pytest.raises(SemsynthError, match="pip install mit-semseg"):
        build_segmenter({"name": "upernet-101", "pretrained": False})


@pytest.mark.skipif(importlib.util.find_spec("mit_semseg") is None, reason="mit-semseg is not installed (optional)")
def test_real_mit_semseg_networks(tmp_path):
    seg = build_segmenter({"name": "upernet-101", "pretrained": False}).eval()
    folder = tmp_path / "ade20k-resnet101-upernet"
    folder.mkdir()
    torch.save(seg.encoder.state_dict(), folder / "encoder_epoch_50.pth")
    torch.save(seg.decoder.state_dict(), folder / "decoder_epoch_50.pth")
    loaded = build_segmenter({"name": "upernet-101", "weights": str(folder)}).eval()
    x = torch.rand(1, 3, 40, 48) * 2 - 1
    with torch.no_grad():
        out = loaded(x)
    assert out.shape == (1, 150, 40, 48)
    assert "conv1.weight" in seg.encoder.state_dict() and "conv_last.1.weight" in seg.decoder.state_dict()

"""The metrics on CUDA give the CPU's numbers (skipped without a GPU)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from semsynth.metrics import FeatureAccumulator, InceptionFeatures, LPIPSMetric, SegmentationScore

needs_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")


@pytest.mark.gpu
@needs_cuda
def test_metrics_on_cuda_match_cpu():
    torch.manual_seed(0)
    net = InceptionFeatures(pretrained=False, dims=64)
    images = torch.rand(5, 3, 40, 40) * 2 - 1
    cpu = FeatureAccumulator(net, batch_size=2, device="cpu")
    cpu.add(images)
    cpu_feats = cpu.result()
    gpu = FeatureAccumulator(net, batch_size=2, device="cuda")
    gpu.add(images.cuda())
    np.testing.assert_allclose(gpu.result(), cpu_feats, rtol=1e-3, atol=1e-4)

    lp_cpu = LPIPSMetric(pretrained_backbone=False)
    lp_gpu = LPIPSMetric(pretrained_backbone=False, device="cuda")
    lp_gpu.model.load_state_dict(lp_cpu.model.state_dict())
    a, b = images[:2], images[2:4]
    torch.testing.assert_close(lp_gpu.distance(a.cuda(), b.cuda()), lp_cpu.distance(a, b), rtol=1e-3,
                               atol=1e-4)

    s = SegmentationScore(3, ignore_index=255)
    s.update(torch.tensor([0, 1, 2, 2], device="cuda"), torch.tensor([0, 1, 1, 255], device="cuda"))
    np.testing.assert_array_equal(s.confusion, [[1, 0, 0], [0, 1, 1], [0, 0, 0]])

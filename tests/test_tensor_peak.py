"""semsynth.utils.memory.TensorPeak: the exact peak of the tensor bytes a computation creates."""

from __future__ import annotations

import torch
from torch import nn

from semsynth.utils.memory import TensorPeak

F32 = 4


def test_counts_the_largest_set_alive_at_once():
    a = torch.randn(1000)
    with TensorPeak() as tp:
        b = a * 2  # 4000 bytes
        c = b + 1  # 8000 alive
        del b
        d = c * 3  # 8000 alive again (c, d), not 12000
        e = torch.zeros(10)  # 8040
    assert tp.peak_bytes == 2 * 1000 * F32 + 10 * F32
    assert tp.current_bytes == 2 * 1000 * F32 + 10 * F32
    assert {t.nbytes for t in tp.peak_tensors} == {4000, 40}
    del c, d, e


def test_views_and_pre_existing_storages_are_not_counted():
    w = torch.randn(64, 64)
    with TensorPeak() as tp:
        v = w.t()  # a view of a weight: nothing new
        w.mul_(2)  # in place on a weight: nothing new
        x = w[:, :8]  # a view, not contiguous
        y = x.contiguous()  # a copy of 64x8: new
        z = y.view(-1)  # a view of our own storage: counted once
    assert tp.peak_bytes == 8 * 64 * F32
    assert tp.peak_tensors[0].shape == (64, 8) and tp.peak_tensors[0].op == "clone"
    del v, z


def test_freed_storage_stops_counting_and_backward_is_seen():
    lin = nn.Linear(100, 100, bias=False)
    x = torch.randn(50, 100)
    with TensorPeak(modules=lin) as tp:
        y = lin(x)  # 50x100 output, saved for nothing (weight grad needs x, which is not ours)
        y.relu().sum().backward()  # relu output, its mask/grad, the weight's gradient 100x100
    assert lin.weight.grad is not None
    assert tp.peak_bytes >= (50 * 100 + 100 * 100) * F32  # the output and the weight gradient alive together
    assert tp.peak_bytes < 4 * (50 * 100 + 100 * 100) * F32
    made = {(t.shape, t.module) for t in tp.peak_tensors}
    assert ((50, 100), "Linear") in made  # y, made inside the module (the root is named by its class)
    assert ((100, 100), "") in made  # the weight's gradient, made by backward outside any forward


def test_the_largest_tensor_of_a_forward_is_named():
    conv = nn.Conv2d(3, 16, 3, padding=1)
    x = torch.randn(1, 3, 32, 32)
    with torch.no_grad(), TensorPeak(modules=nn.Sequential(conv)) as tp:
        out = conv(x).relu_()
    assert tp.peak_bytes == 16 * 32 * 32 * F32  # the conv output; relu_ is in place
    assert tp.peak_tensors[0].shape == (1, 16, 32, 32) and tp.peak_tensors[0].module == "0"
    del out

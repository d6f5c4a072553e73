"""Parameter-free normalisation used inside SCN and SPADE, and the sync-batch conversion for DDP."""

from __future__ import annotations

from torch import nn

PARAM_FREE_NORMS = ("syncbatch", "batch", "instance", "none")


class SyncableBatchNorm2d(nn.BatchNorm2d):
    """A BatchNorm2d that :func:`convert_sync_batchnorm` turns into ``nn.SyncBatchNorm`` under DDP on CUDA.

    On one process, or on CPU where ``nn.SyncBatchNorm`` does not run, it is a plain BatchNorm2d; its
    state_dict is the same as ``nn.SyncBatchNorm``'s, so checkpoints move freely between the two.
    """


def param_free_norm(kind: str, num_features: int, eps: float = 1e-5, momentum: float = 0.1) -> nn.Module:
    """Normalisation without learned affine parameters.

    ``kind``: ``syncbatch`` (batch statistics, synchronised across processes under DDP on CUDA),
    ``batch`` (per-process batch statistics), ``instance``, or ``none``.
    """
    if kind == "syncbatch":
        return SyncableBatchNorm2d(num_features, eps=eps, momentum=momentum, affine=False)
    if kind == "batch":
        return nn.BatchNorm2d(num_features, eps=eps, momentum=momentum, affine=False)
    if kind == "instance":
        return nn.InstanceNorm2d(num_features, eps=eps, affine=False, track_running_stats=False)
    if kind == "none":
        return nn.Identity()
    raise ValueError(f"unknown normalisation {kind!r}; valid choices are: {', '.join(PARAM_FREE_NORMS)}")


def convert_sync_batchnorm(module: nn.Module, process_group=None) -> nn.Module:
    """Replace every :class:`SyncableBatchNorm2d` in ``module`` by ``nn.SyncBatchNorm`` (state copied)."""
    if isinstance(module, SyncableBatchNorm2d):
        sync = nn.SyncBatchNorm(module.num_features, module.eps, module.momentum, module.affine,
                                module.track_running_stats, process_group)
        sync.load_state_dict(module.state_dict())
        sync.train(module.training)
        return sync.to(device=module.running_mean.device)
    for name, child in module.named_children():
        new = convert_sync_batchnorm(child, process_group)
        if new is not child:
            setattr(module, name, new)
    return module

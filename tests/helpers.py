"""Tiny configurations and helpers shared by tests."""

import contextlib
from collections.abc import Iterator

TINY_RAW = {
    "name": "tiny",
    "data": {"name": "synthetic-faces", "resolution": 64, "num_samples": 16, "seed": 0},
    "generator": {"name": "scgan", "srg_width": 4, "fc_width": 4, "svg_width": 4, "conv_candidates": 2,
                  "norm_candidates": 2, "spade_hidden": 8, "input_mode": "noise", "z_dim": 8},
    "discriminator": {"name": "fpse", "width": 4},
    "encoder": {"name": "conv", "width": 4, "input_size": 32},
    "loss": {"perceptual": 0.0},
    "train": {"batch_size": 4, "images": 16, "log_every": 8, "sample_every": 8, "checkpoint_every": 8,
              "num_samples": 2},
}


@contextlib.contextmanager
def kept_for_backward() -> Iterator[list]:
    """What the operators run inside keep for backward, as semsynth's own saved-tensor hooks leave it (a list filled
    while the block runs): the tensors kept as they are, and ``_Rebuilt`` recipes for those rebuilt in backward.
    The block runs in a :func:`~semsynth.layers.recompute.rebuild_scope` (as a model's forward opens one); an
    observer's own ``saved_tensors_hooks`` would instead switch semsynth's off (they stay in charge)."""
    from semsynth.layers import recompute

    kept: list = []
    original = recompute._pack

    def recording(t):
        packed = original(t)
        kept.append(packed)
        return packed

    recompute._pack = recording
    try:
        with recompute.rebuild_scope():
            yield kept
    finally:
        recompute._pack = original

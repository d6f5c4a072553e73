"""Tiny configurations shared by tests."""

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

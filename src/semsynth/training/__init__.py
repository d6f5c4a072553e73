"""Training: the loop, its objective, checkpoints and bookkeeping."""

from .checkpoint import export_model, load_model, load_training_state
from .loop import train

__all__ = ["export_model", "load_model", "load_training_state", "train"]

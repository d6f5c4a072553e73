"""semsynth: semantic image synthesis (SC-GAN and the baselines it is compared with)."""

__version__ = "0.1.0"

from .errors import ConfigError, DataError, MissingWeightsError, SemsynthError, ShapeError
from .layers import instance_edges, one_hot_label, semantic_input
from .models import (
    DISCRIMINATORS,
    ENCODERS,
    GENERATORS,
    build_discriminator,
    build_encoder,
    build_generator,
    count_parameters,
)

__all__ = [
    "DISCRIMINATORS", "ENCODERS", "GENERATORS", "ConfigError", "DataError", "MissingWeightsError",
    "SemsynthError", "ShapeError", "__version__", "build_discriminator", "build_encoder", "build_generator",
    "count_parameters", "instance_edges", "one_hot_label", "semantic_input",
]

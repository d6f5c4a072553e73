"""semsynth: semantic image synthesis (SC-GAN and the baselines it is compared with).

The names below are imported on first use (PEP 562), so that ``import semsynth.cli`` does not import torch: the
command line can choose its allocator (``--allocator``) and restart before any heavy import.
"""

from __future__ import annotations

import importlib

__version__ = "0.1.0"

_EXPORTS = {
    "ConfigError": "errors", "DataError": "errors", "MissingWeightsError": "errors", "SemsynthError": "errors",
    "ShapeError": "errors",
    "instance_edges": "layers", "one_hot_label": "layers", "semantic_input": "layers",
    "DISCRIMINATORS": "models", "ENCODERS": "models", "GENERATORS": "models", "build_discriminator": "models",
    "build_encoder": "models", "build_generator": "models", "count_parameters": "models",
}

__all__ = sorted(["__version__", *_EXPORTS])


def __getattr__(name: str):
    if name in _EXPORTS:
        value = getattr(importlib.import_module(f".{_EXPORTS[name]}", __name__), name)
    elif not name.startswith("__"):
        try:  # a subpackage not imported yet, e.g. semsynth.training after ``import semsynth``
            value = importlib.import_module(f".{name}", __name__)
        except ModuleNotFoundError as e:
            if e.name != f"{__name__}.{name}":
                raise
            raise AttributeError(f"module {__name__!r} has no attribute {name!r}") from None
    else:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *_EXPORTS})

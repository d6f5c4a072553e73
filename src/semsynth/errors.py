"""User-facing errors. The CLI prints them without a traceback and exits with code 2."""

from __future__ import annotations


class SemsynthError(Exception):
    """An error caused by the user's input (config, data, files), with a message that says how to fix it."""


class ConfigError(SemsynthError, ValueError):
    """Invalid configuration: unknown name or key, wrong type, inconsistent values."""


class DataError(SemsynthError, ValueError):
    """A dataset file or folder is missing, unreadable or holds values the model cannot take."""


class MissingWeightsError(SemsynthError, FileNotFoundError):
    """Pretrained weights (VGG19, Inception, a segmenter) are not where they were looked for."""


class ShapeError(SemsynthError, ValueError):
    """A tensor given to a layer or model has the wrong number of channels or size."""

"""Discriminators, one file per paper."""

from . import fpse, multiscale  # noqa: F401
from . import oasis  # noqa: F401

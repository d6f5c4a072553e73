"""Discriminators, one file per paper."""

from . import fpse, multiscale  # noqa: F401

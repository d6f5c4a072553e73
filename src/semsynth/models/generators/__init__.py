"""Generators, one file per paper."""

from . import scgan  # noqa: F401

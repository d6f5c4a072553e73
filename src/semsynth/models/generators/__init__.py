"""Generators, one file per paper."""

from . import ccfpse, pix2pixhd, scgan, spade  # noqa: F401

"""Generators, one file per paper."""

from . import ccfpse, pix2pixhd, scgan, spade  # noqa: F401
from . import oasis  # noqa: F401
from . import crn, sims  # noqa: F401
from . import scgan_unpaired  # noqa: F401

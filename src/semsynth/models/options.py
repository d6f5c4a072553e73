"""Checks of the typed constructor options that several models share (a model's signature is its config)."""

from __future__ import annotations

from collections.abc import Sequence

from ..registry import check_range


def check_choice(name: str, value: str, choices: Sequence[str]) -> None:
    """Raise ``ValueError`` naming the option, the value and the valid choices unless ``value`` is one of them."""
    if value not in choices:
        raise ValueError(f"{name} = {value!r} is not valid; choose one of: {', '.join(choices)}")


def height_width(resolution: int | Sequence[int]) -> tuple[int, int]:
    """``resolution`` (an int, or ``[height, width]``) as ``(height, width)`` of positive integers."""
    if isinstance(resolution, int) and not isinstance(resolution, bool):
        hw = (resolution, resolution)
    elif isinstance(resolution, Sequence) and not isinstance(resolution, str) and len(resolution) == 2:
        hw = tuple(resolution)
    else:
        raise ValueError(f"resolution = {resolution!r} should be an integer or [height, width]")
    for v in hw:
        check_range("resolution", v, ge=1, integer=True)
    return int(hw[0]), int(hw[1])

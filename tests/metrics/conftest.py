"""Shared fixtures for the metric tests: an empty torch hub cache, and no downloads at all."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch


def _no_download(*args, **kwargs):  # noqa: ANN002, ANN003, ANN202
    raise AssertionError(f"a test tried to download weights: {args} {kwargs}")


@pytest.fixture(autouse=True)
def no_downloads(monkeypatch: pytest.MonkeyPatch) -> None:
    """Any attempt to fetch weights fails the test loudly."""
    import torchvision.models._api as tv_api

    monkeypatch.setattr(torch.hub, "load_state_dict_from_url", _no_download)
    monkeypatch.setattr(torch.hub, "download_url_to_file", _no_download)
    monkeypatch.setattr(tv_api, "load_state_dict_from_url", _no_download, raising=False)


@pytest.fixture
def empty_hub(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Point the torch hub cache at an empty folder; returns its ``checkpoints`` folder (not created)."""
    hub = tmp_path / "torch_hub"
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch_home"))
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(hub))
    return hub / "checkpoints"

"""Where the metric networks' pretrained weights are looked for, and the message when they are not there.

Nothing here downloads. A weights file is found either at a path the user gives (a file, or a folder that
holds the file under its standard name) or in the standard torch hub cache,
``<torch hub dir>/checkpoints/<file>`` (``$TORCH_HOME/hub/checkpoints``, ``~/.cache/torch/hub/checkpoints`` by
default), which is where torchvision and pytorch-fid put the files they download.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import torch

from ..errors import MissingWeightsError


@dataclass(frozen=True)
class WeightsFile:
    """A pretrained weights file: its standard name, where it comes from and what it is for."""

    filename: str
    url: str
    description: str


# pytorch-fid's port of the TF FID Inception (2015-12-05); the URL is pytorch_fid.inception.FID_WEIGHTS_URL.
FID_INCEPTION = WeightsFile(
    "pt_inception-2015-12-05-6726825d.pth",
    "https://github.com/mseitzer/pytorch-fid/releases/download/fid_weights/"
    "pt_inception-2015-12-05-6726825d.pth",
    "FID Inception weights (TF FID Inception ported by pytorch-fid) for FID/KID",
)
# torchvision's ImageNet backbones that the `lpips` package uses (its linear layers ship inside the package).
LPIPS_BACKBONES = {
    "alex": WeightsFile("alexnet-owt-7be5be79.pth",
                        "https://download.pytorch.org/models/alexnet-owt-7be5be79.pth",
                        "AlexNet ImageNet weights (torchvision) for the LPIPS backbone"),
    "vgg": WeightsFile("vgg16-397923af.pth", "https://download.pytorch.org/models/vgg16-397923af.pth",
                       "VGG16 ImageNet weights (torchvision) for the LPIPS backbone"),
    "squeeze": WeightsFile("squeezenet1_1-b8a52dc0.pth",
                           "https://download.pytorch.org/models/squeezenet1_1-b8a52dc0.pth",
                           "SqueezeNet 1.1 ImageNet weights (torchvision) for the LPIPS backbone"),
}


def hub_checkpoint_dir() -> Path:
    """``<torch hub dir>/checkpoints``, the folder torchvision and pytorch-fid download their weights to."""
    return Path(torch.hub.get_dir()) / "checkpoints"


def find_weights(file: WeightsFile, path: str | os.PathLike | None = None, *, how_to_pass: str = "",
                 how_to_skip: str = "") -> Path:
    """Locate ``file``: at ``path`` (a file, or a folder holding ``file.filename``), else in the hub cache.

    Raises:
        MissingWeightsError: naming the file, its download URL, where to put it, ``how_to_pass`` (how to
            give a path instead) and ``how_to_skip`` (how to switch the metric off).
    """
    standard = hub_checkpoint_dir() / file.filename
    if path is not None:
        p = Path(path).expanduser()
        where = p / file.filename if p.is_dir() else p
    else:
        where = standard
    if where.is_file():
        return where
    parts = [
        f"{file.description}: {file.filename} was not found at {where}.",
        f"It is normally downloaded from {file.url}; download it on a machine with internet access and put "
        f"it at {standard} (the torch hub cache; set TORCH_HOME to move it)",
    ]
    if how_to_pass:
        parts[-1] += f", or {how_to_pass}"
    if how_to_skip:
        parts[-1] += f", or {how_to_skip}"
    raise MissingWeightsError(" ".join(parts) + ".")


def load_state_dict(path: Path, file: WeightsFile) -> dict[str, torch.Tensor]:
    """``torch.load`` a plain state dict (``weights_only``); an unreadable file -> MissingWeightsError."""
    from ..utils.files import safe_torch_load

    state = safe_torch_load(path, file.description, f"it may be a partial download or an error page; download "
                            f"{file.url} again and put it at "
                            f"{hub_checkpoint_dir() / file.filename}", error=MissingWeightsError)
    if not isinstance(state, dict):
        raise MissingWeightsError(f"{file.description}: {path} holds a {type(state).__name__}, not a state "
                                  f"dict; expected the file {file.url}.")
    return state

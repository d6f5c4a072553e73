"""The bad-input suite: every subcommand, driven in-process through ``semsynth.cli.main(argv)``.

Each case names the command, the files it needs (built by ``setup`` from the shared workspace of conftest.py),
the exit code, a phrase the message must contain; every case also checks that no traceback escaped, that no
loader ran code from a file, that no temporary file was left behind and (by default) that the output path was
not created. New commands join the table on their first day (docs/reliability.md).
"""

from __future__ import annotations

import io
import json
import os
import shutil
from contextlib import redirect_stderr, redirect_stdout
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import pytest
import yaml
from PIL import Image

from semsynth.cli import main
from semsynth.utils.files import is_temporary
from tests.helpers import TINY_RAW
from tests.robustness.conftest import copy_model, edit_json


@dataclass
class Case:
    id: str
    argv: list[str]
    says: str | tuple[str, ...] = ()
    rc: int = 2
    setup: Callable[[dict, Path], dict] | None = None
    absent: tuple[str, ...] = ("{out}",)  # paths that must not exist afterwards


def run_main(argv: list[str]) -> tuple[int, str]:
    out, err = io.StringIO(), io.StringIO()
    with redirect_stdout(out), redirect_stderr(err):
        try:
            rc = main(argv)
        except SystemExit as e:  # argparse's usage errors
            rc = e.code
    return rc, out.getvalue() + err.getvalue()


# -- setups: each returns extra placeholders ----------------------------------------------------------------


def yaml_file(content: str | dict, name: str = "c.yaml"):
    def setup(ws, tmp):
        p = tmp / name
        p.write_text(content if isinstance(content, str) else yaml.safe_dump(content))
        return {"file": p}
    return setup


def tiny_config(**train):
    raw = {**TINY_RAW, "train": {**TINY_RAW["train"], **train}}
    return yaml_file(raw)


def model_with(config_changes: dict | None = None, *, weights_from: str | None = None, drop: str | None = None,
               weights_bytes: bytes | None = None, encoder_from_payload: bool = False, base: str = "model"):
    def setup(ws, tmp):
        m = copy_model(ws[base], tmp / "m")
        if config_changes:
            edit_json(m / "config.json", **config_changes)
        if weights_from:
            shutil.copy(ws[weights_from] / "model.safetensors", m / "model.safetensors")
        if drop:
            (m / drop).unlink()
        if weights_bytes is not None:
            (m / "model.safetensors").write_bytes(weights_bytes)
        if encoder_from_payload:
            shutil.copy(ws["payload_torch"], m / "encoder.safetensors")
        return {"m": m}
    return setup


def config_json_text(text: str):
    def setup(ws, tmp):
        m = copy_model(ws["model"], tmp / "m")
        (m / "config.json").write_text(text)
        return {"m": m}
    return setup


def generator_config(**changes):
    def setup(ws, tmp):
        m = copy_model(ws["model"], tmp / "m")
        d = json.loads((m / "config.json").read_text())
        d["generator"].update(changes)
        (m / "config.json").write_text(json.dumps(d))
        return {"m": m}
    return setup


def file_in_the_way(name: str = "out"):
    def setup(ws, tmp):
        (tmp / name).write_text("a file, not a folder")
        return {}
    return setup


def corrupt_checkpoint_run(ws, tmp):
    run = tmp / "run"
    shutil.copytree(ws["run"], run)
    for p in (run / "checkpoints").glob("training-state-*.pt"):
        p.write_bytes(p.read_bytes()[:1000])
    return {"r": run, "c": sorted((run / "checkpoints").glob("*.pt"))[-1]}


def _torn_newest(ws, tmp):
    run = tmp / "run"
    shutil.copytree(ws["run"], run)
    (run / "checkpoints" / "training-state-000000008.pt").write_bytes(b"PK\x03\x04 torn")
    return {"r": run}


def run_without_checkpoints(ws, tmp):
    run = tmp / "run"
    shutil.copytree(ws["run"], run)
    shutil.rmtree(run / "checkpoints")
    return {"r": run}


def foreign_state_dict(ws, tmp):
    import torch

    p = tmp / "state.pt"
    torch.save({"weight": torch.ones(3)}, p)
    return {"c": p}


def label_folder(*names: str):
    def setup(ws, tmp):
        d = tmp / "labels"
        d.mkdir()
        for n in names:
            shutil.copy(ws["bad"] / n, d / n)
        return {"l": d}
    return setup


def _with_label(folder: Path, label: Path, rename_other: str) -> Path:
    shutil.copy(label, folder / "ok.png")
    for f in folder.iterdir():
        if f.suffix == ".txt":
            f.rename(folder / rename_other)
    return folder


def dangling_label(ws, tmp):
    d = tmp / "labels"
    d.mkdir()
    shutil.copy(ws["label"], d / "ok.png")
    os.symlink(tmp / "nowhere.png", d / "broken.png")
    return {"l": d}


def instance_model(ws, tmp):
    """A tiny generator whose input has an instance-edge channel, exported ({im}, 4 classes at 32x32); two layouts
    {il} (a.png, b.png), instance maps {ii} of both, {ii_one} of a.png only, {ii_small} a 16x16 map of a.png, {ii_bad}
    not an image."""
    import torch

    from semsynth.data import DatasetInfo
    from semsynth.models import build_generator
    from semsynth.training import export_model

    torch.manual_seed(0)
    G = build_generator({"name": "spade", "ngf": 1, "spade_hidden": 4}, num_classes=4, use_instance=True,
                        resolution=32)
    info = DatasetInfo(name="custom", num_classes=4, class_names=["a", "b", "c", "d"], has_instance=True,
                       resolution=(32, 32))
    m = export_model(tmp / "im", G, info)
    ids = np.tile(np.arange(4, dtype=np.uint8).repeat(8), (32, 1))
    for d in ("il", "ii", "ii_one", "ii_small", "ii_bad"):
        (tmp / d).mkdir()
    for name in ("a.png", "b.png"):
        Image.fromarray(ids).save(tmp / "il" / name)
        Image.fromarray(ids * 10).save(tmp / "ii" / name)
    Image.fromarray(ids * 10).save(tmp / "ii_one" / "a.png")
    Image.fromarray(ids[:16, :16]).save(tmp / "ii_small" / "a.png")
    (tmp / "ii_bad" / "a.png").write_bytes(b"not a PNG")
    return {"im": m, "il": tmp / "il", "ii": tmp / "ii", "ii_one": tmp / "ii_one", "ii_small": tmp / "ii_small",
            "ii_bad": tmp / "ii_bad"}


def data_tree_with(kind: str):
    """A custom dataset (images/ + labels/) with one problem."""
    def setup(ws, tmp):
        root = tmp / "data"
        shutil.copytree(ws["faces"], root)
        labels = sorted((root / "labels").iterdir())
        if kind == "dangling":
            os.symlink(tmp / "nowhere.png", root / "labels" / "ghost.png")
            os.symlink(tmp / "nowhere.png", root / "images" / "ghost.png")
        elif kind == "la":
            ids = np.asarray(Image.open(labels[0]))
            Image.fromarray(ids).convert("LA").save(labels[0])
        elif kind == "corrupt":
            labels[0].write_bytes(b"garbage")
        elif kind == "unpaired":
            (root / "images" / labels[0].name).unlink()
        elif kind == "size":
            Image.fromarray(np.zeros((32, 32), np.uint8)).save(labels[0])
        return {"d": root}
    return setup


SCGAN_REFERENCE = Path(__file__).parents[1] / "data" / "official" / "scgan"


def scgan_checkpoint(name: str = "ade_like", *, opt: bool = True, drop: str | None = None, extra: str | None = None,
                     widen: str | None = None, spade_like: bool = False, yaml_text: str | None = None):
    """SC-GAN's official networks (the reference files of tests/data/official/scgan) as .pth files, the generator
    optionally damaged, with opt.txt and the YAML it names beside them: {g} generator, {dd} discriminator,
    {e} encoder (CelebA-like only)."""
    def setup(ws, tmp):
        import torch
        from safetensors.torch import load_file

        d = tmp / "ckpt"
        d.mkdir()
        files = {"g": (f"{name}_G", "G")} | ({"dd": (f"{name}_DE", "D"), "e": (f"{name}_DE", "E")}
                                               if name == "celeba_like" else {"dd": (f"{name}_D", "D")})
        paths = {}
        for key, (file, prefix) in files.items():
            data = load_file(SCGAN_REFERENCE / f"{file}.safetensors")
            state = {k[len(prefix) + 1:]: v.float() if v.is_floating_point() else v for k, v in data.items()
                     if k.startswith(prefix + ".")}
            if key == "g":
                if drop:
                    del state[drop]
                if extra:
                    state[extra] = torch.zeros(3)
                if widen:  # one more input channel (an instance-edge channel) in one tensor
                    state[widen] = torch.cat([state[widen], state[widen][:, :1]], 1)
                if spade_like:
                    state = {"fc.weight": torch.zeros(32, 184, 3, 3),
                             "head_0.norm_0.mlp_shared.0.weight": torch.zeros(128, 184, 3, 3)}
            paths[key] = d / f"latest_net_{prefix}.pth"
            torch.save(state, paths[key])
        if opt:
            shutil.copy(SCGAN_REFERENCE / f"{name}_opt.txt", d / "opt.txt")
            if yaml_text is None:
                shutil.copy(SCGAN_REFERENCE / f"{name}.yml", d / f"{name}.yml")
            else:
                (d / f"{name}.yml").write_text(yaml_text)
        return paths
    return setup


SCGAN = ["convert", "--from", "scgan", "--checkpoint", "{g}", "--out", "{out}"]


CCFPSE_REFERENCE = Path(__file__).parents[1] / "data" / "official" / "ccfpse"
CCFPSE_OPT = {"dataset_mode": "custom", "label_nc": 4, "contain_dontcare_label": True, "no_instance": True,
              "crop_size": 32, "aspect_ratio": 1.0, "netG": "condconv"}


def ccfpse_checkpoint(*, opt: dict | None = CCFPSE_OPT, drop: str | None = None, reshape: str | None = None,
                      spade_like: bool = False):
    """CC-FPSE's official networks (the reference files of tests/data/official/ccfpse) as .pth files, the generator
    optionally damaged, with an opt.txt beside them: {c} generator, {e} encoder, {dd} discriminator."""
    def setup(ws, tmp):
        import torch
        from safetensors.torch import load_file

        d = tmp / "ckpt"
        d.mkdir()
        paths = {}
        for file, prefix, key in (("generator_vae", "netG", "c"), ("encoder", "netE", "e"),
                                  ("discriminator", "netD", "dd")):
            data = load_file(CCFPSE_REFERENCE / f"{file}.safetensors")
            state = {k[len(prefix) + 1:]: v for k, v in data.items() if k.startswith(prefix + ".")}
            if key == "c":
                if drop:
                    del state[drop]
                if reshape:
                    state[reshape] = torch.zeros(*state[reshape].shape[:-1], state[reshape].shape[-1] + 1)
                if spade_like:
                    state = {"fc.weight": torch.zeros(32, 5, 3, 3),
                             "head_0.norm_0.mlp_shared.0.weight": torch.zeros(8, 5, 3, 3)}
            paths[key] = d / f"latest_net_{prefix[-1]}.pth"
            torch.save(state, paths[key])
        if opt is not None:
            (d / "opt.txt").write_text("".join(f"{k:>25}: {v!s:<30}\n" for k, v in sorted(opt.items())))
        return paths
    return setup


CCFPSE = ["convert", "--from", "ccfpse", "--checkpoint", "{c}", "--out", "{out}"]


OFFICIAL_REFERENCE = Path(__file__).parents[1] / "data" / "official"
SPADE_OPT = {"dataset_mode": "custom", "label_nc": 5, "contain_dontcare_label": True, "no_instance": False,
             "crop_size": 64, "aspect_ratio": 1.0, "netG": "spade", "norm_G": "spectralspadeinstance1x1"}


def official_checkpoint(files: dict, *, opt: dict | None = None, drop: str | None = None,
                        reshape: str | None = None):
    """Official SPADE / pix2pixHD networks (the reference files of tests/data/official) as .pth files, the generator
    ({g}) optionally damaged, with an opt.txt beside them. ``files``: placeholder -> (file, key prefix)."""
    def setup(ws, tmp):
        import torch
        from safetensors.torch import load_file

        d = tmp / "ckpt"
        d.mkdir()
        paths = {}
        for key, (file, prefix) in files.items():
            data = load_file(OFFICIAL_REFERENCE / f"{file}.safetensors")
            state = {k[len(prefix) + 1:]: v for k, v in data.items() if k.startswith(prefix + ".")}
            if key == "g" and drop:
                del state[drop]
            if key == "g" and reshape:
                state[reshape] = torch.zeros(state[reshape].shape[0] + 1, *state[reshape].shape[1:])
            paths[key] = d / f"{key}.pth"
            torch.save(state, paths[key])
        if opt is not None:
            (d / "opt.txt").write_text("".join(f"{k:>25}: {v!s:<30}\n" for k, v in sorted(opt.items())))
        return paths
    return setup


SPADE_G = {"g": ("spade/spade_g", "G")}
SPADE_ALL = {**SPADE_G, "d": ("spade/spade_d", "D"), "e": ("spade/spade_e", "E"),
             "gv": ("spade/spade_g_vae", "G"), "p": ("pix2pixhd/global", "G")}
SPADE = ["convert", "--from", "spade", "--checkpoint", "{g}", "--out", "{out}"]
P2P = ["convert", "--from", "pix2pixhd", "--checkpoint", "{p}", "--out", "{out}"]


OASIS_OPT = {"dataset_mode": "ade20k", "z_dim": 3, "channels_G": 2, "num_res_blocks": 6, "no_3dnoise": False,
             "no_EMA": False}


def oasis_checkpoint(*, ema: bool = True, drop: str | None = None, reshape: str | None = None,
                     d_classes: int | None = None):
    """OASIS's official networks (tests/data/official/oasis) as the official training writes them:
    ckpt/models/best_{G,EMA,D}.pth ({c}: best_G.pth, {ce}: best_EMA.pth, {dd}: best_D.pth), opt.txt in ckpt/."""
    def setup(ws, tmp):
        import torch
        from safetensors.torch import load_file

        models = tmp / "ckpt" / "models"
        models.mkdir(parents=True)
        paths = {}
        for file, name, key in (("generator", "best_G.pth", "c"), ("generator", "best_EMA.pth", "ce"),
                                ("discriminator", "best_D.pth", "dd")):
            if key == "ce" and not ema:
                continue
            data = load_file(OFFICIAL_REFERENCE / "oasis" / f"{file}.safetensors")
            state = {k[len("state."):]: v for k, v in data.items() if k.startswith("state.")}
            if key != "dd" and drop:
                del state[drop]
            if key != "dd" and reshape:
                state[reshape] = torch.zeros(state[reshape].shape[0] + 1, *state[reshape].shape[1:])
            if key == "dd" and d_classes:
                state["layer_up_last.weight"] = torch.zeros(d_classes + 1, 2, 1, 1)
                state["layer_up_last.bias"] = torch.zeros(d_classes + 1)
            paths[key] = models / name
            torch.save(state, paths[key])
        (tmp / "ckpt" / "opt.txt").write_text("".join(f"{k:>25}: {v!s:<30}\n" for k, v in sorted(OASIS_OPT.items())))
        return paths
    return setup


def oasis_model(ws, tmp):
    """A tiny OASIS generator exported as a model ({om}, 4 classes at 32x32), a layout {ol}, masks {mask_small},
    {mask_bad} (not an image)."""
    import torch

    from semsynth.data import DatasetInfo
    from semsynth.models import build_generator
    from semsynth.training import export_model

    torch.manual_seed(0)
    G = build_generator({"name": "oasis", "channels": 1, "spade_hidden": 4, "z_dim": 3}, num_classes=4,
                        resolution=32)
    info = DatasetInfo(name="custom", num_classes=4, class_names=["ground", "sky", "tree", "road"],
                       resolution=(32, 32))
    m = export_model(tmp / "om", G, info)
    Image.fromarray(np.tile(np.arange(4, dtype=np.uint8).repeat(8), (32, 1))).save(tmp / "layout.png")
    Image.fromarray(np.full((16, 32), 255, np.uint8)).save(tmp / "mask-small.png")
    (tmp / "mask-bad.png").write_bytes(b"not a PNG")
    return {"om": m, "ol": tmp / "layout.png", "mask_small": tmp / "mask-small.png", "mask_bad": tmp / "mask-bad.png"}


OASIS = ["convert", "--from", "oasis", "--checkpoint", "{c}", "--out", "{out}", "--set", "data.name=custom", "--set",
         "data.num_classes=6", "--set", "data.crop_size=64", "--set", "data.aspect_ratio=2.0"]
RESAMPLE = ["generate", "--model", "{om}", "--labels", "{ol}", "--out", "{out}", "--seeds", "1", "--resample-from", "0"]
INST = ["generate", "--model", "{im}", "--labels", "{il}", "--out", "{out}"]


SEG_SPEC_PAYLOAD = "drn-d-105,weights={payload_torch}"
CHECK = ["data", "check", "--dataset", "custom"]
EVAL = ["evaluate", "--model", "{model}", "--out", "{out}", "--num", "2", "--metrics", "miou", "--segmenter", "{seg}"]
TRAIN_DRY = ["train", "--config", "scgan-synthetic-faces", "--dry-run", "--set"]
TRAIN_TINY = ["train", "--config", "{file}", "--outdir", "{out}"]
SWEEP_DRY = ["sweep", "--config", "scgan-synthetic-faces", "--outdir", "{out}", "--seeds", "0", "--threads", "1",
             "--dry-run", "--grid"]


def sims_model(damage: str | None = None):
    """A SIMS model directory ({sm}) with its memory bank, the bank optionally damaged."""
    def setup(ws, tmp):
        from semsynth.data import build_dataset
        from semsynth.models import build_generator
        from semsynth.sims import build_bank
        from semsynth.training.checkpoint import export_model

        ds = build_dataset({"name": "synthetic-faces", "num_samples": 4})
        G = build_generator({"name": "sims", "encoder_widths": [4] * 4, "decoder_widths": [4] * 4,
                             "final_width": 4}, **ds.info.model_interface())
        G.attach_bank(build_bank(ds))
        m = export_model(tmp / "sims", G, ds.info)
        bank = m / "sims_bank.safetensors"
        if damage == "missing":
            bank.unlink()
        elif damage == "torn":
            bank.write_bytes(bank.read_bytes()[:300])
        elif damage == "pickle":
            shutil.copy(ws["payload_torch"], bank)
        elif damage == "foreign":
            shutil.copy(m / "model.safetensors", bank)
        elif damage == "other-classes":
            other = build_bank(build_dataset({"name": "custom", "root": str(ws["custom"])}))
            other.save(bank)
        return {"sm": m}
    return setup


def bank_file(kind: str):
    """A file given as a memory bank ({b}): garbage, a pickle, model weights."""
    def setup(ws, tmp):
        b = tmp / "bank.safetensors"
        if kind == "garbage":
            b.write_bytes(b"not a bank at all")
        elif kind == "pickle":
            shutil.copy(ws["payload_torch"], b)
        elif kind == "weights":
            shutil.copy(ws["model"] / "model.safetensors", b)
        return {"b": b}
    return setup


_HELD_SOCKETS: list = []


def port_in_use(ws, tmp):
    """A port another socket listens on (held until the session ends)."""
    import socket

    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(1)
    _HELD_SOCKETS.append(sock)
    return {"port": sock.getsockname()[1]}


def empty_data_tree(ws, tmp):
    root = tmp / "empty"
    (root / "images").mkdir(parents=True)
    (root / "labels").mkdir()
    return {"d": root}


def unpaired_model(ws, tmp):
    """A tiny exported scgan-unpaired model ({um}, trained on synthetic-unpaired at 64x64), a folder of two source
    images {src}, an empty folder {none}, a folder with a PNG that is not an image {junk}, one reference image
    {ref1} in a folder {refs1}."""
    import torch

    from semsynth.data.unpaired import unpaired_info
    from semsynth.models import build_generator
    from semsynth.training import export_model

    torch.manual_seed(0)
    G = build_generator({"name": "scgan-unpaired", "srg_width": 2, "fc_width": 2, "svg_width": 4, "spade_hidden": 4,
                         "conv_candidates": 2, "norm_candidates": 2}, num_classes=3, resolution=64)
    info = unpaired_info("synthetic-unpaired", "pairs", (64, 64), ("summer", "winter"))
    m = export_model(tmp / "um", G, info, extra={"data": {"name": "synthetic-unpaired", "split": "train",
                                                          "resolution": 64, "num_samples": 2}})
    for d in ("src", "none", "junk", "refs1"):
        (tmp / d).mkdir()
    rgb = np.random.default_rng(0).integers(0, 256, (64, 64, 3), dtype=np.uint8)
    for name in ("a.png", "b.jpg"):
        Image.fromarray(rgb).save(tmp / "src" / name)
    Image.fromarray(rgb).save(tmp / "refs1" / "r.png")
    (tmp / "junk" / "photo.png").write_text("a text file with an image's name")
    return {"um": m, "src": tmp / "src", "none": tmp / "none", "junk": tmp / "junk", "refs1": tmp / "refs1",
            "ref1": tmp / "refs1" / "r.png"}


def unpaired_folders(kind: str):
    """Two domain folders {fa} {fb} for the scgan-unpaired preset, with one problem."""
    def setup(ws, tmp):
        fa, fb = tmp / "A", tmp / "B"
        fa.mkdir()
        fb.mkdir()
        rng = np.random.default_rng(0)
        Image.fromarray(rng.integers(0, 256, (64, 64, 3), dtype=np.uint8)).save(fa / "a1.png")
        Image.fromarray(rng.integers(0, 256, (48, 80, 3), dtype=np.uint8)).save(fa / "a2.png")
        if kind != "empty":
            Image.fromarray(rng.integers(0, 256, (64, 64, 3), dtype=np.uint8)).save(fb / "b1.png")
        if kind == "not-an-image":
            (fb / "b2.jpg").write_bytes(b"\x00\x01 not a JPEG")
        return {"fa": fa, "fb": fb}
    return setup


UNPAIRED_TRAIN = ["train", "--config", "scgan-unpaired", "--outdir", "{out}", "--set", "loss.content_loss=edges",
                  "--set", "data.root_a={fa}", "--set", "data.root_b={fb}"]
UNPAIRED_DRY = ["train", "--config", "scgan-unpaired-synthetic", "--dry-run", "--set"]
TRANSLATE = ["translate", "--model", "{um}", "--out", "{out}"]


SIMS_INDEX = ["sims", "index", "--dataset", "synthetic-faces", "--set", "data.num_samples=2", "--out",
              "{out}/bank.safetensors"]
SIMS_TRAIN = ["train", "--config", "sims-synthetic-faces", "--outdir", "{out}", "--set", "data.num_samples=2",
              "--set"]
SIMS_GEN = ["generate", "--model", "{sm}", "--labels", "{labels}", "--out", "{out}"]


CASES: list[Case] = [
    # ---- argument parsing (argparse: exit 2 with usage) ---------------------------------------------------
    Case("no-command", [], "COMMAND"),
    Case("unknown-command", ["paint"], "invalid choice"),
    Case("models-extra-arg", ["models", "--bogus"], "unrecognized arguments"),
    Case("generate-needs-model", ["generate", "--labels", "{labels}", "--out", "{out}"], "--model"),
    Case("generate-needs-labels", ["generate", "--model", "{model}", "--out", "{out}"], "--labels"),
    Case("generate-steps-not-int", ["generate", "--model", "{model}", "--labels", "{labels}", "--out", "{out}",
                                    "--interpolate", "0", "1", "--steps", "many"], "invalid int value"),
    Case("export-bad-dtype", ["export", "--checkpoint", "{run}", "--out", "{out}", "--dtype", "int8"],
         "invalid choice"),
    Case("evaluate-bad-feature-extractor", ["evaluate", "--model", "{model}", "--out", "{out}",
                                            "--feature-extractor", "clip"], "invalid choice"),
    Case("analyze-bad-space", ["analyze", "semantic-vectors", "--model", "{model}", "--out", "{out}", "--space", "x"],
         "invalid choice"),
    Case("segmenter-bad-arch", ["segmenter", "train", "--dataset", "synthetic-faces", "--arch", "vit",
                                "--outdir", "{out}"], "invalid choice"),
    Case("data-make-bad-split", ["data", "make", "synthetic-faces", "--out", "{out}", "--split", "dev"],
         "invalid choice"),
    Case("threads-not-int", ["generate", "--model", "{model}", "--labels", "{labels}", "--out", "{out}",
                             "--threads", "two"], "invalid int value"),

    # ---- train: configs and overrides ----------------------------------------------------------------------
    Case("train-no-config", ["train"], "give --config"),
    Case("train-unknown-preset", ["train", "--config", "nope"], "neither a file nor a preset"),
    Case("train-section-scalar", TRAIN_DRY + ["train=5"], "train"),
    Case("train-lr-nan", TRAIN_DRY + ["optim.lr=.nan"], "optim.lr"),
    Case("train-lr-inf", TRAIN_DRY + ["optim.lr=.inf"], "optim.lr"),
    Case("train-negative-temperature", TRAIN_DRY + ["generator.temperature=-1"], "temperature"),
    Case("train-zero-width", TRAIN_DRY + ["generator.srg_width=0"], "srg_width"),
    Case("train-batch-0", TRAIN_DRY + ["train.batch_size=0"], "must be >= 1"),
    Case("train-batch-string", TRAIN_DRY + ["train.batch_size=abc"], "train.batch_size"),
    Case("train-unknown-section", TRAIN_DRY + ["trian.batch_size=4"], "unknown section"),
    Case("train-unknown-key", TRAIN_DRY + ["train.batchsize=4"], "valid keys are"),
    Case("train-unknown-model-option", TRAIN_DRY + ["generator.ngf=8"], "valid options are"),
    Case("train-unknown-generator", TRAIN_DRY + ["generator.name=stylegan"], "valid generators are"),
    Case("train-set-no-equals", TRAIN_DRY + ["train.batch_size"], "expected key=value"),
    Case("train-set-bad-yaml", TRAIN_DRY + ["train.batch_size=[1,"], "cannot parse"),
    Case("train-set-blames-the-argument", TRAIN_DRY + ["train.seed=x"], "--set"),
    Case("train-dataset-fact-in-generator", TRAIN_DRY + ["generator.num_classes=3"], "come from the dataset"),
    Case("train-accumulate-not-divisor", TRAIN_DRY + ["train.accumulate=3"], "divide train.batch_size"),
    Case("train-recompute-no-blocks", ["train", "--config", "sims-synthetic-faces", "--dry-run", "--set",
                                       "train.recompute=true"], "has no residual blocks to recompute"),
    Case("train-recompute-not-bool", TRAIN_DRY + ["train.recompute=sometimes"], "train.recompute"),
    Case("train-bad-precision", TRAIN_DRY + ["train.precision=fp8"], "valid: fp32, bf16, fp16"),
    Case("train-bad-device", TRAIN_DRY + ["train.device=tpu"], "valid: auto, cpu, cuda"),
    Case("train-decay-out-of-range", TRAIN_DRY + ["train.decay_start=2"], "decay_start"),
    Case("train-beta-out-of-range", TRAIN_DRY + ["optim.beta2=1.5"], "beta"),
    Case("train-negative-loss-weight", TRAIN_DRY + ["loss.feature_matching=-1"], "loss.feature_matching = -1.0 is out of range"),
    Case("train-unknown-objective", TRAIN_DRY + ["loss.name=wgan"], "valid objectives are"),
    Case("train-null-discriminator-for-gan", TRAIN_DRY + ["discriminator=null"], "trains against one"),
    Case("train-all-loss-weights-zero", TRAIN_DRY + ["loss.gan=0", "--set", "loss.feature_matching=0", "--set",
                                                   "loss.semantic=0"], "nothing would train"),
    Case("train-bad-semantic-loss", TRAIN_DRY + ["loss.semantic_loss=l3"], "valid: l1, l2, vgg"),
    Case("train-encoder-needs-noise", TRAIN_DRY + ["generator.input_mode=label"], "encoder"),
    Case("train-resolution-too-small-dry-run", TRAIN_DRY + ["data.resolution=32"], "resolution"),
    Case("train-resolution-too-small-creates-nothing",
         ["train", "--config", "scgan-synthetic-faces", "--outdir", "{out}", "--set", "data.resolution=32"],
         "resolution"),
    Case("train-invalid-yaml", ["train", "--config", "{file}", "--dry-run"], "not valid YAML",
         setup=yaml_file("data: [unclosed\n")),
    Case("train-yaml-is-a-list", ["train", "--config", "{file}", "--dry-run"], "mapping",
         setup=yaml_file("- a\n- b\n")),
    Case("train-yaml-empty", ["train", "--config", "{file}", "--dry-run"], "with a 'name'", setup=yaml_file("")),
    Case("train-yaml-unknown-section", ["train", "--config", "{file}", "--dry-run"], "unknown config section",
         setup=yaml_file({**TINY_RAW, "optimizer": {}})),
    Case("train-yaml-python-tag", ["train", "--config", "{payload_yaml}", "--dry-run"], "not valid YAML"),
    Case("train-yaml-python-tag-in-section", ["train", "--config", "{payload_yaml_in_section}", "--dry-run"],
         "not valid YAML"),
    Case("train-config-is-a-folder", ["train", "--config", "{tmp}", "--dry-run"], "neither a file nor a preset"),
    Case("train-ade20k-missing-root", ["train", "--config", "scgan-ade20k", "--outdir", "{out}", "--set",
                                       "data.root={tmp}/nowhere", "--set", "loss.perceptual=0"], "does not exist"),
    Case("train-vgg-missing", TRAIN_TINY + ["--set", "loss.perceptual=10", "--set",
                                            "loss.vgg_weights={tmp}/vgg19.pth"],
         ("VGG19 ImageNet weights", "--set loss.perceptual=0"), setup=tiny_config()),
    Case("train-vgg-missing-semantic-loss", TRAIN_TINY + ["--set", "loss.semantic_loss=vgg", "--set",
                                                          "loss.vgg_weights={tmp}/vgg19.pth"],
         ("L_s", "--set loss.semantic_loss=l1"), setup=tiny_config()),
    Case("train-vgg-pickle", TRAIN_TINY + ["--set", "loss.perceptual=10", "--set",
                                           "loss.vgg_weights={payload_torch}"],
         "never runs code", setup=tiny_config()),
    Case("train-vgg-raw-pickle", TRAIN_TINY + ["--set", "loss.perceptual=10", "--set",
                                               "loss.vgg_weights={payload_raw}"],
         "never unpickles", setup=tiny_config()),
    Case("train-vgg-not-a-torch-file", TRAIN_TINY + ["--set", "loss.perceptual=10", "--set",
                                                     "loss.vgg_weights={label}"],
         "not a PyTorch file", setup=tiny_config()),
    Case("train-fp16-on-cpu", TRAIN_TINY + ["--set", "train.precision=fp16", "--set", "train.device=cpu"],
         "fp16 needs CUDA", setup=tiny_config()),
    Case("train-threads-0", ["train", "--config", "scgan-synthetic-faces", "--dry-run", "--set", "train.threads=0"],
         "train.threads"),

    # ---- train --resume -----------------------------------------------------------------------------------
    Case("resume-missing", ["train", "--resume", "{tmp}/nowhere"], "no such run directory"),
    Case("resume-without-path-or-config", ["train", "--resume"], "needs --config"),
    Case("resume-latest-none", ["train", "--config", "scgan-synthetic-faces", "--resume", "--outdir", "{tmp}/x"],
         "no run of"),
    Case("resume-no-checkpoints", ["train", "--resume", "{r}"], "no checkpoint", setup=run_without_checkpoints),
    Case("resume-corrupt-file", ["train", "--resume", "{c}"], "cannot read", setup=corrupt_checkpoint_run),
    Case("resume-all-corrupt", ["train", "--resume", "{r}"], "checkpoint", setup=corrupt_checkpoint_run),
    Case("resume-pickle-payload", ["train", "--resume", "{payload_torch}", "--config", "{file}"],
         "never runs code", setup=tiny_config()),
    Case("resume-foreign-state", ["train", "--resume", "{c}", "--config", "{file}"],
         "not a semsynth training state", setup=lambda ws, tmp: {**foreign_state_dict(ws, tmp),
                                                                 **tiny_config()(ws, tmp)}),

    # ---- generate: the model directory -------------------------------------------------------------------
    Case("gen-model-missing", ["generate", "--model", "{tmp}/nowhere", "--labels", "{labels}", "--out", "{out}"],
         "does not exist"),
    Case("gen-model-is-a-file", ["generate", "--model", "{label}", "--labels", "{labels}", "--out", "{out}"],
         "not an exported semsynth model"),
    Case("gen-model-no-config", ["generate", "--model", "{m}", "--labels", "{labels}", "--out", "{out}"],
         "config.json is missing", setup=model_with(drop="config.json")),
    Case("gen-config-not-json", ["generate", "--model", "{m}", "--labels", "{labels}", "--out", "{out}"],
         "not valid JSON", setup=config_json_text("{not json")),
    Case("gen-config-binary", ["generate", "--model", "{m}", "--labels", "{labels}", "--out", "{out}"],
         "config.json", setup=config_json_text("\udcff\udcfe".encode("utf-8", "surrogateescape").decode("latin-1"))),
    Case("gen-config-a-list", ["generate", "--model", "{m}", "--labels", "{labels}", "--out", "{out}"],
         "not a semsynth model config", setup=config_json_text("[1, 2]")),
    Case("gen-config-foreign-format", ["generate", "--model", "{m}", "--labels", "{labels}", "--out", "{out}"],
         "not a semsynth model config", setup=model_with({"format": "diffusers"})),
    Case("gen-config-future-version", ["generate", "--model", "{m}", "--labels", "{labels}", "--out", "{out}"],
         ("version 99", "upgrade semsynth"), setup=model_with({"version": 99})),
    Case("gen-config-version-string", ["generate", "--model", "{m}", "--labels", "{labels}", "--out", "{out}"],
         "version", setup=model_with({"version": "1"})),
    Case("gen-config-no-version", ["generate", "--model", "{m}", "--labels", "{labels}", "--out", "{out}"],
         "version", setup=model_with({"version": None})),
    Case("gen-config-no-generator", ["generate", "--model", "{m}", "--labels", "{labels}", "--out", "{out}"],
         "generator", setup=model_with({"generator": None})),
    Case("gen-config-unknown-generator", ["generate", "--model", "{m}", "--labels", "{labels}", "--out", "{out}"],
         "valid generators are", setup=generator_config(name="pix3pix")),
    Case("gen-config-unknown-option", ["generate", "--model", "{m}", "--labels", "{labels}", "--out", "{out}"],
         "valid options are", setup=generator_config(ngf=64)),
    Case("gen-config-bad-dataset", ["generate", "--model", "{m}", "--labels", "{labels}", "--out", "{out}"],
         "dataset", setup=model_with({"dataset": {"name": "x", "num_classes": 3, "class_names": ["a"]}})),
    Case("gen-config-bad-label-values", ["generate", "--model", "{m}", "--labels", "{labels}", "--out", "{out}"],
         "label_values", setup=model_with({"label_values": {"x": 1}})),
    Case("gen-config-label-values-list", ["generate", "--model", "{m}", "--labels", "{labels}", "--out", "{out}"],
         "label_values", setup=model_with({"label_values": [1, 2]})),
    Case("gen-config-other-width", ["generate", "--model", "{m}", "--labels", "{labels}", "--out", "{out}"],
         ("does not fit", "shape", "the generator"), setup=model_with(weights_from="model_wide")),
    Case("gen-config-other-class-count", ["generate", "--model", "{m}", "--labels", "{labels}", "--out", "{out}"],
         "num_classes", setup=generator_config(num_classes=20)),
    Case("gen-config-other-candidates", ["generate", "--model", "{m}", "--labels", "{labels}", "--out", "{out}"],
         ("does not fit", "shape"), setup=generator_config(conv_candidates=3)),
    Case("gen-weights-missing", ["generate", "--model", "{m}", "--labels", "{labels}", "--out", "{out}"],
         "is missing", setup=model_with(drop="model.safetensors")),
    Case("gen-weights-truncated", ["generate", "--model", "{m}", "--labels", "{labels}", "--out", "{out}"],
         "cannot read", setup=model_with(weights_bytes=b"\x10\x00\x00\x00\x00\x00\x00\x00{")),
    Case("gen-weights-pickle", ["generate", "--model", "{m}", "--labels", "{labels}", "--out", "{out}"],
         "cannot read", setup=lambda ws, tmp: model_with(weights_bytes=ws["payload_torch"].read_bytes())(ws, tmp)),
    Case("gen-encoder-pickle", ["generate", "--model", "{m}", "--labels", "{labels}", "--out", "{out}"],
         "cannot read", setup=model_with(encoder_from_payload=True)),
    Case("gen-encoder-missing", ["generate", "--model", "{m}", "--labels", "{labels}", "--out", "{out}"],
         "encoder.safetensors", setup=model_with(drop="encoder.safetensors")),

    # ---- generate: layouts ---------------------------------------------------------------------------------
    Case("gen-labels-missing", ["generate", "--model", "{model}", "--labels", "{tmp}/nowhere", "--out", "{out}"],
         "no such file or directory"),
    Case("gen-labels-empty-folder", ["generate", "--model", "{model}", "--labels", "{bad}/empty", "--out", "{out}"],
         "no label maps"),
    Case("gen-label-not-an-image", ["generate", "--model", "{model}", "--labels", "{bad}/not-an-image.png",
                                    "--out", "{out}"], "cannot read"),
    Case("gen-label-truncated", ["generate", "--model", "{model}", "--labels", "{bad}/truncated.png",
                                 "--out", "{out}"], "truncated.png"),
    Case("gen-label-out-of-range", ["generate", "--model", "{model}", "--labels", "{bad}/out-of-range.png",
                                    "--out", "{out}"], "40"),
    Case("gen-label-unknown-colour", ["generate", "--model", "{model}", "--labels", "{bad}/unknown-colour.png",
                                      "--out", "{out}"], "palette"),
    Case("gen-label-float", ["generate", "--model", "{model}", "--labels", "{bad}/float.tif", "--out", "{out}"],
         "float.tif"),
    Case("gen-label-text-file", ["generate", "--model", "{model}", "--labels", "{bad}/text.txt", "--out", "{out}"],
         "text.txt"),
    Case("gen-skipped-files-are-named", ["generate", "--model", "{model}", "--labels", "{l}", "--out", "{out}"],
         ("skipped 1 file(s)", "notes.txt", "wrote 1 image"), rc=0, absent=(),
         setup=lambda ws, tmp: {**label_folder("text.txt")(ws, tmp),
                                "l": _with_label(tmp / "labels", ws["label"], "notes.txt")}),
    Case("gen-label-dangling-link", ["generate", "--model", "{model}", "--labels", "{l}", "--out", "{out}"],
         "broken.png", setup=dangling_label),
    # generate --instances: the instance maps of models that read instance edges (converted COCO-Stuff, Cityscapes)
    Case("gen-instances-missing", INST + ["--instances", "{tmp}/nowhere"], "no such file or directory",
         setup=instance_model),
    Case("gen-instances-one-layout-lacks-one", INST + ["--instances", "{ii_one}"],
         ("no instance map for 1 layout(s): b.png", "named like the label file"), setup=instance_model),
    Case("gen-instances-size-mismatch", INST[:4] + ["{il}/a.png"] + INST[5:] + ["--instances", "{ii_small}"],
         ("instance map is 16x16 but the layout a.png is 32x32", "at its size"), setup=instance_model),
    Case("gen-instances-not-an-image", INST[:4] + ["{il}/a.png"] + INST[5:] + ["--instances", "{ii_bad}"],
         ("ii_bad/a.png", "cannot read this instance map"), setup=instance_model),
    Case("gen-instances-one-file-for-a-folder", INST + ["--instances", "{ii}/a.png"],
         "a single instance map, but --labels gives 2 layouts", setup=instance_model),
    Case("gen-instances-model-without-edges", ["generate", "--model", "{model}", "--labels", "{labels}", "--out",
                                               "{out}", "--instances", "{labels}"],
         ("reads no instance-edge channel", "drop --instances")),
    Case("gen-instances-not-given", INST, ("without --instances it is empty", "wrote 2 image"), rc=0, absent=(),
         setup=instance_model),
    Case("gen-instances-ok", INST + ["--instances", "{ii}"], "wrote 2 image", rc=0, absent=(),
         setup=instance_model),

    # ---- generate: seeds, modes, sizes ---------------------------------------------------------------------
    Case("seeds-empty-item", ["generate", "--model", "{model}", "--labels", "{labels}", "--out", "{out}",
                              "--seeds", "1,,2"], "empty item"),
    Case("seeds-trailing-comma", ["generate", "--model", "{model}", "--labels", "{labels}", "--out", "{out}",
                                  "--seeds", "1,"], "trailing comma"),
    Case("seeds-empty", ["generate", "--model", "{model}", "--labels", "{labels}", "--out", "{out}", "--seeds", ""],
         "no seeds"),
    Case("seeds-2^64", ["generate", "--model", "{model}", "--labels", "{labels}", "--out", "{out}", "--seeds",
                        "18446744073709551616"], "too large"),
    Case("seeds-negative", ["generate", "--model", "{model}", "--labels", "{labels}", "--out", "{out}", "--seeds",
                            "-1"], "non-negative"),
    Case("seeds-reversed-range", ["generate", "--model", "{model}", "--labels", "{labels}", "--out", "{out}",
                                  "--seeds", "5-1"], "ends before it starts"),
    Case("seeds-absurd-range", ["generate", "--model", "{model}", "--labels", "{labels}", "--out", "{out}",
                                "--seeds", "0-100000000"], "limit of 100,000"),
    Case("seeds-words", ["generate", "--model", "{model}", "--labels", "{labels}", "--out", "{out}", "--seeds",
                         "some"], "not a seed"),
    Case("seeds-float", ["generate", "--model", "{model}", "--labels", "{labels}", "--out", "{out}", "--seeds",
                         "1.5"], "not a seed"),
    Case("seeds-repeated", ["generate", "--model", "{model}", "--labels", "{labels}", "--out", "{out}", "--seeds",
                            "1,0-3"], "twice"),
    Case("seeds-deterministic-model", ["generate", "--model", "{model_det}", "--labels", "{labels}", "--out",
                                       "{out}", "--seeds", "0-3"], "deterministic"),
    Case("style-without-encoder", ["generate", "--model", "{model_det}", "--labels", "{labels}", "--out", "{out}",
                                   "--style", "{image}"], "no style encoder"),
    Case("style-missing-image", ["generate", "--model", "{model}", "--labels", "{labels}", "--out", "{out}",
                                 "--style", "{tmp}/nowhere.jpg"], "nowhere.jpg"),
    Case("style-not-an-image", ["generate", "--model", "{model}", "--labels", "{labels}", "--out", "{out}",
                                "--style", "{bad}/not-an-image.png"], "cannot read"),
    Case("seeds-and-style", ["generate", "--model", "{model}", "--labels", "{labels}", "--out", "{out}",
                             "--seeds", "0", "--style", "{image}"], "choose one of"),
    Case("interpolate-one-step", ["generate", "--model", "{model}", "--labels", "{labels}", "--out", "{out}",
                                  "--interpolate", "0", "1", "--steps", "1"], "at least 2"),
    Case("interpolate-absurd-steps", ["generate", "--model", "{model}", "--labels", "{labels}", "--out", "{out}",
                                      "--interpolate", "0", "1", "--steps", "100000000"], "at most"),
    Case("interpolate-negative-seed", ["generate", "--model", "{model}", "--labels", "{labels}", "--out", "{out}",
                                       "--interpolate", "-1", "1"], "seeds go from 0"),
    Case("interpolate-deterministic", ["generate", "--model", "{model_det}", "--labels", "{labels}", "--out",
                                       "{out}", "--interpolate", "0", "1"], "deterministic"),
    Case("gen-batch-0", ["generate", "--model", "{model}", "--labels", "{labels}", "--out", "{out}",
                         "--batch-size", "0"], "must be >= 1"),
    Case("gen-batch-absurd", ["generate", "--model", "{model}", "--labels", "{labels}", "--out", "{out}",
                              "--batch-size", "1000000"], "at most"),
    Case("gen-threads-0", ["generate", "--model", "{model}", "--labels", "{labels}", "--out", "{out}",
                           "--threads", "0"], "--threads 0"),
    Case("gen-device-cuda-absent", ["generate", "--model", "{model}", "--labels", "{labels}", "--out", "{out}",
                                    "--device", "cuda:7"], "cuda"),
    Case("gen-device-unknown", ["generate", "--model", "{model}", "--labels", "{labels}", "--out", "{out}",
                                "--device", "abacus"], "abacus"),
    Case("gen-out-is-a-file", ["generate", "--model", "{model}", "--labels", "{labels}", "--out", "{tmp}/out"],
         "out", setup=file_in_the_way(), absent=()),

    # ---- evaluate -----------------------------------------------------------------------------------------
    Case("eval-nothing-to-score", ["evaluate", "--out", "{out}"], "give --model"),
    Case("eval-unknown-metric", ["evaluate", "--model", "{model}", "--out", "{out}", "--metrics", "fid,ssim"],
         "ssim"),
    Case("eval-no-metric", ["evaluate", "--model", "{model}", "--out", "{out}", "--metrics", ","],
         "none given"),
    Case("eval-generated-missing", ["evaluate", "--generated", "{tmp}/nowhere", "--dataset", "synthetic-faces",
                                    "--set", "data.resolution=64", "--out", "{out}", "--metrics", "miou",
                                    "--segmenter", "{seg}"], "no such folder"),
    Case("eval-generated-wrong-size", ["evaluate", "--generated", "{generated32}", "--dataset", "synthetic-faces",
                                       "--set", "data.resolution=64", "--set", "data.num_samples=16", "--out", "{out}",
                                       "--metrics", "miou", "--segmenter", "{seg}"],
         ("32x32", "64x64", "nothing is resized")),
    Case("eval-generated-custom-geometry", ["evaluate", "--generated", "{generated_custom64}", "--dataset",
                                            "custom", "--data-root", "{custom}", "--set", "data.num_classes=2",
                                            "--out", "{out}", "--metrics", "fid", "--feature-extractor",
                                            "segmenter", "--segmenter", "{seg}"],
         ("64x64", "256x256")),
    Case("eval-generated-missing-image", ["evaluate", "--generated", "{bad}/empty", "--dataset", "synthetic-faces",
                                          "--set", "data.resolution=64", "--out", "{out}", "--metrics", "miou",
                                          "--segmenter", "{seg}"], "no image named after layout"),
    Case("eval-diversity-needs-model", ["evaluate", "--generated", "{generated64}", "--dataset", "synthetic-faces",
                                        "--set", "data.resolution=64", "--out", "{out}", "--metrics", "diversity"],
         "diversity needs --model"),
    Case("eval-diversity-deterministic", ["evaluate", "--model", "{model_det}", "--out", "{out}", "--metrics",
                                          "diversity"], "deterministic"),
    Case("eval-miou-needs-segmenter", ["evaluate", "--model", "{model}", "--out", "{out}", "--metrics", "miou"],
         "need --segmenter"),
    Case("eval-segmenter-missing", EVAL[:-1] + ["{tmp}/noseg"], "noseg"),
    Case("eval-segmenter-pickle", EVAL[:-1] + [SEG_SPEC_PAYLOAD], "never runs code"),
    Case("eval-segmenter-raw-pickle", EVAL[:-1] + ["drn-d-105,weights={payload_raw}"], "never unpickles"),
    Case("eval-segmenter-unknown", EVAL[:-1] + ["name=segformer"], "segformer"),
    Case("eval-inception-missing", ["evaluate", "--model", "{model}", "--out", "{out}", "--metrics", "fid",
                                    "--inception", "{tmp}/inception.pth", "--num", "2"], "inception.pth"),
    Case("eval-inception-pickle", ["evaluate", "--model", "{model}", "--out", "{out}", "--metrics", "fid",
                                   "--inception", "{payload_torch}", "--num", "2"], "never runs code"),
    Case("eval-inception-raw-pickle", ["evaluate", "--model", "{model}", "--out", "{out}", "--metrics", "fid",
                                       "--inception", "{payload_raw}", "--num", "2"], "never unpickles"),
    Case("eval-lpips-pickle", ["evaluate", "--model", "{model}", "--out", "{out}", "--metrics", "lpips",
                               "--lpips-weights", "{payload_torch}", "--num", "2"], "never runs code"),
    Case("eval-unknown-dataset", ["evaluate", "--model", "{model}", "--out", "{out}", "--dataset", "imagenet",
                                  "--metrics", "miou", "--segmenter", "{seg}"], "valid datasets are"),
    Case("eval-data-root-without-dataset", ["evaluate", "--model", "{model}", "--out", "{out}", "--data-root",
                                            "{tmp}"], "need --dataset"),
    Case("eval-set-not-data", ["evaluate", "--model", "{model}", "--out", "{out}", "--dataset", "synthetic-faces",
                               "--set", "train.batch_size=2"], "only data.KEY=VALUE"),
    Case("eval-unknown-data-option", ["evaluate", "--model", "{model}", "--out", "{out}", "--dataset",
                                      "synthetic-faces", "--set", "data.colour=1"], "valid options are"),
    Case("eval-other-class-count", ["evaluate", "--model", "{model}", "--out", "{out}", "--dataset", "custom",
                                    "--data-root", "{custom}", "--set", "data.num_classes=2", "--metrics", "miou",
                                    "--segmenter", "{seg}"], "not the one the model was trained on"),
    Case("eval-num-0", EVAL[:6] + ["0"] + EVAL[7:], "--num 0"),
    Case("eval-model-config-mismatch", ["evaluate", "--model", "{m}", "--out", "{out}", "--metrics", "miou",
                                        "--segmenter", "{seg}"], ("does not fit", "shape"),
         setup=model_with(weights_from="model_wide")),
    Case("eval-threads-0", EVAL + ["--threads", "0"], "--threads 0"),
    Case("eval-out-is-a-file", EVAL, "out", setup=file_in_the_way(), absent=()),

    # ---- segmenter -----------------------------------------------------------------------------------------
    Case("seg-train-unknown-dataset", ["segmenter", "train", "--dataset", "imagenet", "--outdir", "{out}"],
         "valid datasets are"),
    Case("seg-train-epochs-0", ["segmenter", "train", "--dataset", "synthetic-faces", "--epochs", "0",
                                "--outdir", "{out}"], "epochs"),
    Case("seg-train-batch-0", ["segmenter", "train", "--dataset", "synthetic-faces", "--batch-size", "0",
                               "--outdir", "{out}"], "batch"),
    Case("seg-train-unknown-option", ["segmenter", "train", "--dataset", "synthetic-faces", "--set",
                                      "model.depthh=2", "--outdir", "{out}"], "depthh"),
    Case("seg-eval-missing", ["segmenter", "eval", "--segmenter", "{tmp}/noseg", "--dataset", "synthetic-faces"],
         "noseg", absent=()),
    Case("seg-eval-pickle", ["segmenter", "eval", "--segmenter", SEG_SPEC_PAYLOAD, "--dataset", "cityscapes",
                             "--data-root", "{tmp}"], "never runs code", absent=()),
    Case("seg-eval-limit-0", ["segmenter", "eval", "--segmenter", "{seg}", "--dataset", "synthetic-faces",
                              "--limit", "0"], "limit", absent=()),

    # ---- analyze ------------------------------------------------------------------------------------------
    Case("analyze-model-missing", ["analyze", "semantic-vectors", "--model", "{tmp}/nowhere", "--out", "{out}"],
         "does not exist"),
    Case("analyze-scale-out-of-range", ["analyze", "semantic-vectors", "--model", "{model}", "--out", "{out}",
                                        "--scale", "99"], "scale"),
    Case("analyze-num-0", ["analyze", "semantic-vectors", "--model", "{model}", "--out", "{out}", "--num", "0"],
         "num"),
    Case("analyze-points-0", ["analyze", "semantic-vectors", "--model", "{model}", "--out", "{out}", "--points",
                              "0"], "points"),
    Case("analyze-config-mismatch", ["analyze", "semantic-vectors", "--model", "{m}", "--out", "{out}"],
         "does not fit", setup=model_with(weights_from="model_wide")),

    # ---- export -------------------------------------------------------------------------------------------
    Case("export-missing", ["export", "--checkpoint", "{tmp}/nowhere.pt", "--out", "{out}"], "does not exist"),
    Case("export-no-checkpoints", ["export", "--checkpoint", "{r}", "--out", "{out}"], "no checkpoint",
         setup=run_without_checkpoints),
    Case("export-corrupt", ["export", "--checkpoint", "{c}", "--out", "{out}"], "cannot read",
         setup=corrupt_checkpoint_run),
    Case("export-run-skips-a-torn-newest", ["export", "--checkpoint", "{r}", "--out", "{out}"],
         ("cannot be read", "exporting training-state-000000004.pt", "exported to"), rc=0, absent=(),
         setup=lambda ws, tmp: _torn_newest(ws, tmp)),
    Case("export-pickle", ["export", "--checkpoint", "{payload_torch}", "--out", "{out}"], "never runs code"),
    Case("export-raw-pickle", ["export", "--checkpoint", "{payload_raw}", "--out", "{out}"], "never unpickles"),
    Case("export-foreign-state", ["export", "--checkpoint", "{c}", "--out", "{out}"],
         "not a semsynth training state", setup=foreign_state_dict),
    Case("export-out-is-a-file", ["export", "--checkpoint", "{ckpt}", "--out", "{tmp}/out/model"], "out",
         setup=file_in_the_way(), absent=()),
    # export --format onnx|torchscript (portable files, semsynth.portable)
    Case("export-unknown-format", ["export", "--model", "{model}", "--format", "tflite", "--out", "{out}"],
         ("--format 'tflite' is not a format semsynth writes", "safetensors, onnx, torchscript")),
    Case("export-empty-format", ["export", "--model", "{model}", "--format", ",", "--out", "{out}"],
         "--format ',' names no format"),
    Case("export-model-and-checkpoint", ["export", "--model", "{model}", "--checkpoint", "{ckpt}", "--out", "{out}"],
         "give one of --checkpoint"),
    Case("export-needs-a-source", ["export", "--format", "onnx", "--out", "{out}"], "give one of --checkpoint"),
    Case("export-model-missing", ["export", "--model", "{tmp}/nowhere", "--format", "onnx", "--out", "{out}"],
         "does not exist"),
    Case("export-model-without-config", ["export", "--model", "{m}", "--format", "onnx", "--out", "{out}"],
         "config.json is missing", setup=model_with(drop="config.json")),
    Case("export-onnx-fp16", ["export", "--model", "{model}", "--format", "onnx", "--dtype", "fp16", "--out",
                              "{out}"], "onnx files are written in fp32 only"),
    Case("export-torchscript-bf16-checkpoint", ["export", "--checkpoint", "{ckpt}", "--format", "torchscript",
                                                "--dtype", "bf16", "--out", "{out}"],
         "torchscript files are written in fp32 only"),
    Case("export-raw-with-model", ["export", "--model", "{model}", "--raw", "--format", "onnx", "--out", "{out}"],
         "--raw applies to --checkpoint"),
    Case("export-onehot-without-portable", ["export", "--model", "{model}", "--input", "onehot", "--out", "{out}"],
         "--input onehot applies to --format onnx or torchscript"),
    Case("export-onnx-model-mismatch", ["export", "--model", "{m}", "--format", "onnx", "--out", "{out}"],
         "does not fit", setup=model_with(weights_from="model_wide")),
    Case("export-onnx-model-pickle", ["export", "--model", "{m}", "--format", "onnx", "--out", "{out}"],
         "cannot read", setup=model_with(encoder_from_payload=True)),
    Case("export-onnx-out-is-a-file", ["export", "--model", "{model}", "--format", "onnx", "--out", "{tmp}/out"],
         "a file is in the way", setup=file_in_the_way(), absent=()),
    Case("export-checkpoint-onnx", ["export", "--checkpoint", "{ckpt}", "--format", "onnx", "--out", "{out}"],
         ("wrote {out}/generator.onnx", "exported to {out}"), rc=0, absent=()),
    Case("export-det-model-torchscript-onehot", ["export", "--model", "{model_det}", "--format", "torchscript",
                                                 "--input", "onehot", "--out", "{out}"],
         ("semantic float32 ['batch', 15, 'height', 'width']", "wrote {out}/generator.pt"), rc=0, absent=()),

    # ---- convert ------------------------------------------------------------------------------------------
    Case("convert-needs-from", ["convert", "--checkpoint", "{payload_torch}", "--out", "{out}"], "--from"),
    Case("convert-unknown-family", ["convert", "--from", "stylegan", "--checkpoint", "{payload_torch}", "--out",
                                    "{out}"], "valid sources are"),

    # ---- convert --from ccfpse (CC-FPSE) ------------------------------------------------------------------
    Case("convert-ccfpse-spade-checkpoint", CCFPSE, ("not a CC-FPSE CondConvGenerator", "--from spade"),
         setup=ccfpse_checkpoint(spade_like=True)),
    Case("convert-ccfpse-discriminator-as-generator", CCFPSE[:4] + ["{dd}"] + CCFPSE[5:],
         "not a CC-FPSE CondConvGenerator", setup=ccfpse_checkpoint()),
    Case("convert-ccfpse-missing-key", CCFPSE, ("missing from the checkpoint", "up_3.gen_se_weights2.2.bias"),
         setup=ccfpse_checkpoint(drop="up_3.gen_se_weights2.2.bias")),
    Case("convert-ccfpse-shape-mismatch", CCFPSE, ("up_0.norm_s.mlp_gamma.weight", "[32, 5, 3, 4]", "[32, 5, 3, 3]"),
         setup=ccfpse_checkpoint(reshape="up_0.norm_s.mlp_gamma.weight")),
    Case("convert-ccfpse-instance-channel-off", CCFPSE, "use_instance: tensor shapes says False but opt.txt says True",
         setup=ccfpse_checkpoint(opt={**CCFPSE_OPT, "no_instance": False})),
    Case("convert-ccfpse-no-opt-unknown-dataset", CCFPSE, ("5 input channels", "--opt"),
         setup=ccfpse_checkpoint(opt=None)),
    Case("convert-ccfpse-set-contradicts-shapes", CCFPSE + ["--set", "generator.ngf=4"],
         "ngf: tensor shapes says 2 but --set says 4", setup=ccfpse_checkpoint()),
    Case("convert-ccfpse-preset-of-another-model", CCFPSE + ["--preset", "scgan-ade20k"],
         "a preset of generator 'scgan'", setup=ccfpse_checkpoint()),
    Case("convert-ccfpse-encoder-is-a-discriminator", CCFPSE + ["--encoder", "{dd}"],
         "not a CC-FPSE ConvEncoder", setup=ccfpse_checkpoint()),
    Case("convert-ccfpse-pickle", CCFPSE[:4] + ["{payload_torch}"] + CCFPSE[5:], "never runs code"),
    Case("convert-ccfpse-raw-pickle", CCFPSE[:4] + ["{payload_raw}"] + CCFPSE[5:], "never unpickles"),
    Case("convert-ccfpse-encoder-pickle", CCFPSE + ["--encoder", "{payload_torch}"], "never runs code",
         setup=ccfpse_checkpoint()),
    Case("convert-ccfpse-ok", CCFPSE + ["--encoder", "{e}", "--discriminator", "{dd}"],
         ("generator ccfpse", "wrote"), rc=0, absent=(), setup=ccfpse_checkpoint()),

    # ---- convert --from spade / --from pix2pixhd (SPADE, pix2pixHD) ----------------------------------------
    Case("convert-spade-pix2pixhd-checkpoint", SPADE[:4] + ["{p}"] + SPADE[5:],
         ("not a SPADE generator", "--from pix2pixhd"), setup=official_checkpoint(SPADE_ALL)),
    Case("convert-pix2pixhd-spade-checkpoint", P2P[:4] + ["{g}"] + P2P[5:],
         ("not a pix2pixHD GlobalGenerator", "--from spade"), setup=official_checkpoint(SPADE_ALL)),
    Case("convert-spade-discriminator-as-generator", SPADE[:4] + ["{d}"] + SPADE[5:], "not a SPADE generator",
         setup=official_checkpoint(SPADE_ALL)),
    Case("convert-spade-missing-key", SPADE, ("missing from the checkpoint", "conv_img.bias"),
         setup=official_checkpoint(SPADE_G, opt=SPADE_OPT, drop="conv_img.bias")),
    Case("convert-spade-shape-mismatch", SPADE, ("up_0.norm_s.mlp_gamma.weight", "[17, 128, 1, 1]",
                                                 "[16, 128, 1, 1]"),
         setup=official_checkpoint(SPADE_G, opt=SPADE_OPT, reshape="up_0.norm_s.mlp_gamma.weight")),
    Case("convert-spade-instance-channel-off", SPADE, "use_instance: tensor shapes says True but opt.txt says False",
         setup=official_checkpoint(SPADE_G, opt={**SPADE_OPT, "no_instance": True})),
    Case("convert-spade-no-opt-unknown-dataset", SPADE, ("7 input channels", "--opt"),
         setup=official_checkpoint(SPADE_G)),
    Case("convert-spade-set-contradicts-shapes", SPADE + ["--set", "generator.ngf=64"],
         "ngf: tensor shapes says 1 but --set says 64", setup=official_checkpoint(SPADE_G, opt=SPADE_OPT)),
    Case("convert-spade-preset-of-another-model", SPADE + ["--preset", "scgan-ade20k"],
         "a preset of generator 'scgan'", setup=official_checkpoint(SPADE_G, opt=SPADE_OPT)),
    Case("convert-spade-encoder-without-vae", SPADE + ["--encoder", "{e}"], "has no VAE",
         setup=official_checkpoint(SPADE_ALL, opt=SPADE_OPT)),
    Case("convert-spade-discriminator-of-another-model", SPADE[:4] + ["{gv}"] + SPADE[5:] + ["--discriminator", "{d}",
                                                                                           "--set", "data.num_classes=5"],
         "different models", setup=official_checkpoint(SPADE_ALL, opt={"dataset_mode": "custom",
                                                                        "crop_size": 128, "aspect_ratio": 2.0})),
    Case("convert-spade-pickle", SPADE[:4] + ["{payload_torch}"] + SPADE[5:], "never runs code"),
    Case("convert-spade-raw-pickle", SPADE[:4] + ["{payload_raw}"] + SPADE[5:], "never unpickles"),
    Case("convert-spade-encoder-pickle", SPADE + ["--encoder", "{payload_torch}"], "never runs code",
         setup=official_checkpoint(SPADE_G, opt=SPADE_OPT)),
    Case("convert-spade-ok", SPADE + ["--discriminator", "{d}"], ("from opt.txt", "wrote"), rc=0, absent=(),
         setup=official_checkpoint(SPADE_ALL, opt=SPADE_OPT)),
    Case("convert-pix2pixhd-encoder", P2P + ["--encoder", "{e}"], "no VAE style encoder",
         setup=official_checkpoint(SPADE_ALL)),
    Case("convert-pix2pixhd-feature-input", P2P, "--instance_feat", setup=official_checkpoint(
        SPADE_ALL, opt={"label_nc": 35, "instance_feat": True})),
    Case("convert-pix2pixhd-pickle", P2P[:4] + ["{payload_torch}"] + P2P[5:], "never runs code"),
    Case("convert-pix2pixhd-ok", P2P, ("cityscapes", "wrote"), rc=0, absent=(), setup=official_checkpoint(SPADE_ALL)),

    # ---- CRN and SIMS: sims index, the sims objective's bank, SIMS model directories -----------------------
    Case("sims-needs-subcommand", ["sims"], "SUBCOMMAND"),
    Case("sims-index-needs-out", ["sims", "index", "--dataset", "synthetic-faces"], "--out"),
    Case("sims-index-unknown-dataset", ["sims", "index", "--dataset", "imagenet", "--out", "{out}"],
         "valid datasets are"),
    Case("sims-index-empty-dataset", ["sims", "index", "--dataset", "custom", "--data-root", "{d}", "--out",
                                      "{out}/bank.safetensors"], "{d}", setup=empty_data_tree),
    Case("sims-index-label-only", ["sims", "index", "--dataset", "custom", "--data-root", "{faces}", "--set",
                                   "data.images=false", "--out", "{out}/bank.safetensors"], "label maps only"),
    Case("sims-index-bad-set", SIMS_INDEX + ["--set", "num_samples=2"], "only data.KEY=VALUE"),
    Case("sims-index-unknown-option", SIMS_INDEX + ["--set", "data.colour=1"], "valid options are"),
    Case("sims-index-mask-size-0", SIMS_INDEX + ["--mask-size", "0"], "--mask-size 0"),
    Case("sims-index-min-area-1", SIMS_INDEX + ["--min-area", "1"], "--min-area"),
    Case("sims-index-max-images-0", SIMS_INDEX + ["--max-images", "0"], "--max-images 0"),
    Case("sims-index-order-unknown-class", SIMS_INDEX + ["--order", "background,beard"], "'beard'"),
    Case("sims-index-order-incomplete", SIMS_INDEX + ["--order", "background,skin"], "missing: nose"),
    Case("sims-index-out-is-a-folder", ["sims", "index", "--dataset", "synthetic-faces", "--out", "{tmp}"],
         "a folder", absent=()),
    Case("sims-index-ok", SIMS_INDEX, ("segments of", "wrote"), rc=0, absent=()),
    Case("sims-train-no-bank", SIMS_TRAIN + ["loss.bank=null"], "semsynth sims index"),
    Case("sims-train-bank-missing", SIMS_TRAIN + ["loss.bank={tmp}/nope.safetensors"], "does not exist"),
    Case("sims-train-bank-garbage", SIMS_TRAIN + ["loss.bank={b}"], "not a readable safetensors file",
         setup=bank_file("garbage")),
    Case("sims-train-bank-pickle", SIMS_TRAIN + ["loss.bank={b}"], "never a pickle", setup=bank_file("pickle")),
    Case("sims-train-bank-is-weights", SIMS_TRAIN + ["loss.bank={b}"], "not a SIMS memory bank",
         setup=bank_file("weights")),
    Case("sims-train-bad-canvas", ["train", "--config", "sims-synthetic-faces", "--dry-run", "--set",
                                   "loss.canvas=painted"], "valid: official, retrieved"),
    Case("crn-train-with-discriminator", ["train", "--config", "crn-synthetic-faces", "--dry-run", "--set",
                                          "discriminator.name=fpse"], "set discriminator: null"),
    Case("crn-train-layer-weights", ["train", "--config", "crn-synthetic-faces", "--dry-run", "--set",
                                     "loss.layer_weights=[1, 1]"], "layer_weights"),
    Case("crn-train-widths-count", ["train", "--config", "crn-synthetic-faces", "--dry-run", "--set",
                                    "generator.widths=[8, 8]"], "one width per module"),
    Case("sims-generate-bank-missing", SIMS_GEN, "sims_bank.safetensors is missing", setup=sims_model("missing")),
    Case("sims-generate-bank-torn", SIMS_GEN, "not a readable safetensors file", setup=sims_model("torn")),
    Case("sims-generate-bank-pickle", SIMS_GEN, "never a pickle", setup=sims_model("pickle")),
    Case("sims-generate-bank-foreign", SIMS_GEN, "not a SIMS memory bank", setup=sims_model("foreign")),
    Case("sims-generate-bank-other-classes", SIMS_GEN, "2 classes", setup=sims_model("other-classes")),
    Case("sims-generate-ok", SIMS_GEN, "wrote 2 image", rc=0, absent=(), setup=sims_model()),

    # ---- convert --from oasis (OASIS) and generate --resample-from (local re-sampling) ------------------------
    Case("convert-oasis-discriminator-as-checkpoint", OASIS[:4] + ["{dd}"] + OASIS[5:],
         ("is the OASIS discriminator", "--discriminator"), setup=oasis_checkpoint()),
    Case("convert-oasis-spade-checkpoint", ["convert", "--from", "oasis", "--checkpoint", "{g}", "--out", "{out}"],
         ("not an OASIS generator", "--from spade"), setup=official_checkpoint(SPADE_G, opt=SPADE_OPT)),
    Case("convert-oasis-missing-key", OASIS, ("missing from the checkpoint", "conv_img.bias"),
         setup=oasis_checkpoint(drop="conv_img.bias")),
    Case("convert-oasis-shape-mismatch", OASIS, ("body.1.norm_0.mlp_gamma.weight", "[33, 8, 3, 3]", "[32, 8, 3, 3]"),
         setup=oasis_checkpoint(reshape="body.1.norm_0.mlp_gamma.weight")),
    Case("convert-oasis-label-channels-differ", OASIS + ["--set", "data.num_classes=7"],
         ("9 channels = 7 label channels", "z_dim 2", "says z_dim 3", "wrong dataset"), setup=oasis_checkpoint()),
    Case("convert-oasis-ema-file-missing", OASIS, ("needs best_EMA.pth beside it", "--set weights=plain"),
         setup=oasis_checkpoint(ema=False)),
    Case("convert-oasis-bad-weights-choice", OASIS + ["--set", "weights=both"], "weights is 'ema'",
         setup=oasis_checkpoint()),
    Case("convert-oasis-encoder", OASIS + ["--encoder", "{dd}"], "OASIS has no style encoder",
         setup=oasis_checkpoint()),
    Case("convert-oasis-discriminator-of-another-model", OASIS + ["--discriminator", "{dd}"], "different models",
         setup=oasis_checkpoint(d_classes=9)),
    Case("convert-oasis-preset-of-another-model", OASIS + ["--preset", "scgan-ade20k-oasisd"],
         "a preset of generator 'scgan'", setup=oasis_checkpoint()),
    Case("convert-oasis-no-dataset", ["convert", "--from", "oasis", "--checkpoint", "{c}", "--out", "{out}"],
         ("reads 9 channels, no more than the 151 label channels of ade20k (dataset from opt.txt)",
          "--set data.name=custom"), setup=oasis_checkpoint()),
    Case("convert-oasis-pickle", OASIS[:4] + ["{payload_torch}"] + OASIS[5:], "never runs code"),
    Case("convert-oasis-raw-pickle", OASIS[:4] + ["{payload_raw}"] + OASIS[5:], "never unpickles"),
    Case("convert-oasis-discriminator-pickle", OASIS + ["--discriminator", "{payload_torch}"], "never runs code",
         setup=oasis_checkpoint()),
    Case("convert-oasis-ok", OASIS + ["--discriminator", "{dd}"], ("converted best_EMA.pth", "wrote"), rc=0,
         absent=(), setup=oasis_checkpoint()),
    Case("gen-resample-not-spatial", ["generate", "--model", "{model}", "--labels", "{label}", "--out", "{out}",
                                      "--seeds", "1", "--resample-from", "0", "--resample-class", "skin"],
         ("spatial noise", "'scgan'")),
    Case("gen-resample-deterministic", ["generate", "--model", "{model_det}", "--labels", "{label}", "--out", "{out}",
                                        "--seeds", "1", "--resample-from", "0", "--resample-class", "skin"],
         "deterministic"),
    Case("gen-resample-without-seeds", RESAMPLE[:7] + ["--resample-from", "0", "--resample-class", "sky"],
         "needs --seeds", setup=oasis_model),
    Case("gen-resample-class-without-from", RESAMPLE[:9] + ["--resample-class", "sky"], "need --resample-from",
         setup=oasis_model),
    Case("gen-resample-without-region", RESAMPLE, "--resample-class CLASS or --resample-mask", setup=oasis_model),
    Case("gen-resample-both-regions", RESAMPLE + ["--resample-class", "sky", "--resample-mask", "{mask_small}"],
         "one of them", setup=oasis_model),
    Case("gen-resample-unknown-class", RESAMPLE + ["--resample-class", "sky,water"], "'water' is not a class",
         setup=oasis_model),
    Case("gen-resample-mask-size", RESAMPLE + ["--resample-mask", "{mask_small}"],
         ("the mask is 32x16 (WxH)", "paint the mask at the layout's size"), setup=oasis_model),
    Case("gen-resample-mask-not-an-image", RESAMPLE + ["--resample-mask", "{mask_bad}"], "cannot read this image",
         setup=oasis_model),
    Case("gen-resample-mask-missing", RESAMPLE + ["--resample-mask", "{tmp}/nowhere.png"], "nowhere.png",
         setup=oasis_model),
    Case("gen-resample-from-negative", RESAMPLE[:10] + ["-1", "--resample-class", "sky"], "seeds go from 0",
         setup=oasis_model),
    Case("gen-resample-from-not-a-number", RESAMPLE[:10] + ["zero", "--resample-class", "sky"], "invalid int value",
         setup=oasis_model),
    Case("gen-resample-ok", RESAMPLE + ["--resample-class", "sky"], "wrote 1 image", rc=0, absent=(),
         setup=oasis_model),

    # ---- convert --from scgan (SC-GAN) -------------------------------------------------------------------
    Case("convert-scgan-spade-checkpoint", SCGAN, ("not an SC-GAN generator", "--from spade"),
         setup=scgan_checkpoint(spade_like=True)),
    Case("convert-scgan-discriminator-as-generator", SCGAN[:4] + ["{dd}"] + SCGAN[5:], "not an SC-GAN generator",
         setup=scgan_checkpoint()),
    Case("convert-scgan-missing-key", SCGAN, ("missing from the checkpoint", "up_1.norm_s.mlp_beta.bias"),
         setup=scgan_checkpoint(drop="up_1.norm_s.mlp_beta.bias")),
    Case("convert-scgan-missing-expert-key", SCGAN, ("up_2.conv_0.conv_bases.1", "weight_u"),
         setup=scgan_checkpoint(drop="up_2.conv_0.conv_bases.1.weight_u")),
    Case("convert-scgan-extra-key", SCGAN, ("no place in the model", "up_1.norm_s.extra.weight"),
         setup=scgan_checkpoint(extra="up_1.norm_s.extra.weight")),
    Case("convert-scgan-shape-mismatch", SCGAN, ("up_0.norm_s.mlp_shared.0.weight", "[128, 20, 3, 3]",
                                                 "[128, 19, 3, 3]", "instance map on/off", "wrong --preset"),
         setup=scgan_checkpoint(widen="up_0.norm_s.mlp_shared.0.weight")),
    Case("convert-scgan-instance-channel-on", SCGAN + ["--set", "data.use_instance=true"],
         "use_instance: tensor shapes says False but --set says True", setup=scgan_checkpoint()),
    Case("convert-scgan-set-contradicts-opt", SCGAN + ["--set", "generator.temperature=0.05"],
         "temperature: opt.txt + ade_like.yml says 5.0 but --set says 0.05", setup=scgan_checkpoint()),
    Case("convert-scgan-preset-contradicts-shapes", SCGAN + ["--preset", "scgan-celeba"],
         "srg_width: tensor shapes says 1 but --preset scgan-celeba says 48", setup=scgan_checkpoint(opt=False)),
    Case("convert-scgan-preset-of-another-model", SCGAN + ["--preset", "spade-ade20k"],
         ("spade-ade20k", "scgan"), setup=scgan_checkpoint()),
    Case("convert-scgan-encoder-without-vae", SCGAN + ["--encoder", "{dd}"], "has no VAE", setup=scgan_checkpoint()),
    Case("convert-scgan-discriminator-is-a-generator", SCGAN + ["--discriminator", "{g}"],
         "not an SC-GAN discriminator checkpoint", setup=scgan_checkpoint()),
    Case("convert-scgan-yaml-python-tag", SCGAN, ("ade_like.yml", "cannot be read as YAML"),
         setup=scgan_checkpoint(yaml_text="temperature: !!python/object/apply:os.system ['touch x']\n")),
    Case("convert-scgan-pickle", SCGAN[:4] + ["{payload_torch}"] + SCGAN[5:], "never runs code"),
    Case("convert-scgan-raw-pickle", SCGAN[:4] + ["{payload_raw}"] + SCGAN[5:], "never unpickles"),
    Case("convert-scgan-discriminator-pickle", SCGAN + ["--discriminator", "{payload_torch}"], "never runs code",
         setup=scgan_checkpoint()),
    Case("convert-scgan-ok", SCGAN[:-2] + ["--encoder", "{e}", "--discriminator", "{dd}", "--out", "{out}"],
         ("temperature: from opt.txt + celeba_like.yml", "wrote"), rc=0, absent=(),
         setup=scgan_checkpoint("celeba_like")),

    # ---- serve: every bad option fails before the port is bound or a model loaded (host/port: before loading) --
    Case("serve-port-negative", ["serve", "--model", "{model}", "--port", "-1"], ("--port -1", "65535")),
    Case("serve-port-too-large", ["serve", "--model", "{model}", "--port", "70000"], "--port 70000"),
    Case("serve-port-not-a-number", ["serve", "--port", "http"], "invalid int value"),
    Case("serve-workers-0", ["serve", "--model", "{model}", "--workers", "0"], ("--workers 0", "from 1 to")),
    Case("serve-workers-absurd", ["serve", "--model", "{model}", "--workers", "1000"], "--workers 1000"),
    Case("serve-queue-negative", ["serve", "--model", "{model}", "--queue", "-1"], "--queue -1"),
    Case("serve-timeout-0", ["serve", "--model", "{model}", "--timeout", "0"], ("--timeout 0", "more than 0")),
    Case("serve-timeout-nan", ["serve", "--model", "{model}", "--timeout", "nan"], "--timeout nan"),
    Case("serve-threads-0", ["serve", "--model", "{model}", "--threads", "0"], "--threads 0"),
    Case("serve-precision-unknown", ["serve", "--precision", "fp16"], "invalid choice"),
    Case("serve-model-missing", ["serve", "--model", "{tmp}/nowhere"], ("{tmp}/nowhere", "does not exist")),
    Case("serve-model-is-a-file", ["serve", "--model", "{label}"], "is a file"),
    Case("serve-model-named-missing", ["serve", "--model", "faces={tmp}/nowhere"], "does not exist"),
    Case("serve-model-bad-name", ["serve", "--model", "my model={model}"], "is not a model name"),
    Case("serve-model-same-name-twice", ["serve", "--model", "a={model}", "--model", "a={model_det}"],
         "two models are named 'a'"),
    Case("serve-model-not-a-model", ["serve", "--model", "{bad}/empty", "--port", "0"], "config.json"),
    Case("serve-model-pickle", ["serve", "--model", "{m}", "--port", "0"], ("cannot read", "encoder.safetensors"),
         setup=model_with(encoder_from_payload=True)),
    Case("serve-port-in-use", ["serve", "--model", "{model}", "--port", "{port}"], ("already in use", "--port 0"),
         setup=port_in_use),
    Case("serve-host-unknown", ["serve", "--model", "{model}", "--host", "no-such-host.invalid"],
         ("--host no-such-host.invalid", "127.0.0.1")),
    Case("serve-host-not-here-warns", ["serve", "--model", "{model}", "--host", "192.0.2.1"],
         ("reachable from other machines", "not an address of this machine")),

    # ---- data make synthetic-landscapes (the second built-in world: its own size rules) ------------------
    Case("make-landscapes-size-32", ["data", "make", "synthetic-landscapes", "--out", "{out}", "--size", "32"],
         ("--size/--resolution 32", "synthetic-landscapes needs a multiple of 32 between 64 and")),
    Case("make-landscapes-resolution-100", ["data", "make", "synthetic-landscapes", "--out", "{out}",
                                            "--resolution", "100"], "--size/--resolution 100"),
    Case("make-landscapes-resolution-text", ["data", "make", "synthetic-landscapes", "--out", "{out}",
                                             "--resolution", "big"], "invalid int value"),
    Case("make-landscapes-num-negative", ["data", "make", "synthetic-landscapes", "--out", "{out}", "--num", "-3"],
         "--num -3"),
    Case("make-landscapes-seed-negative", ["data", "make", "synthetic-landscapes", "--out", "{out}", "--seed", "-1"],
         "--seed -1: must be >= 0"),
    Case("make-landscapes-typo", ["data", "make", "synthetic-landscape", "--out", "{out}"],
         ("not a built-in world", "synthetic-faces, synthetic-landscapes")),
    Case("make-landscapes-bad-split", ["data", "make", "synthetic-landscapes", "--out", "{out}", "--split", "dev"],
         "invalid choice"),
    Case("make-landscapes-out-is-a-file", ["data", "make", "synthetic-landscapes", "--out", "{tmp}/out/faces",
                                           "--num", "1", "--size", "64"], "out", setup=file_in_the_way(), absent=()),

    # ---- unpaired translation: train on two folders (scgan-unpaired), translate (docs/unpaired.md) -----------
    Case("unpaired-empty-domain-folder", UNPAIRED_TRAIN, ("no images in the domain B folder", "data.root_b"),
         setup=unpaired_folders("empty")),
    Case("unpaired-not-an-image", UNPAIRED_TRAIN, ("b2.jpg", "cannot read this image"),
         setup=unpaired_folders("not-an-image")),
    Case("unpaired-mixed-sizes-without-resizing", UNPAIRED_TRAIN + ["--set", "data.preprocess=none"],
         ("images of different sizes", "a2.png is 80x48", "preprocess=resize_and_crop"),
         setup=unpaired_folders("mixed")),
    Case("unpaired-missing-root", ["train", "--config", "scgan-unpaired", "--outdir", "{out}", "--set",
                                   "loss.content_loss=edges", "--set", "data.root={tmp}/nowhere"],
         ("domain A folder", "nowhere/trainA does not exist", "check data.root")),
    Case("unpaired-no-root", ["train", "--config", "scgan-unpaired", "--dry-run", "--set", "data.root=null",
                              "--set", "data.root_a={tmp}"], ("data.root_b not given", "CycleGAN layout")),
    Case("unpaired-root-b-is-a-file", UNPAIRED_TRAIN[:-1] + ["data.root_b={fa}/a1.png"],
         ("domain B folder", "a1.png is a file, not a folder"), setup=unpaired_folders("mixed")),
    Case("unpaired-vgg-missing", ["train", "--config", "scgan-unpaired", "--outdir", "{out}", "--set",
                                  "loss.vgg_weights={tmp}/vgg19.pth"],
         ("VGG19 ImageNet weights", "content loss to the source", "--set loss.content_loss=edges")),
    Case("unpaired-conditional-discriminator", UNPAIRED_DRY + ["discriminator.name=fpse"],
         ("sees the image only", "discriminator.name=fp")),
    Case("unpaired-unknown-domain", UNPAIRED_DRY + ["data.domain_b=snowy"], ("'snowy' is neither a season",
                                                                              "summer+day")),
    Case("unpaired-same-domain", UNPAIRED_DRY + ["data.domain_b=summer"], "the same domain"),
    Case("unpaired-world-without-domains", UNPAIRED_DRY + ["data.world=synthetic-faces"], "synthetic-faces has none"),
    Case("unpaired-bad-serve", UNPAIRED_DRY + ["data.serve=both"], "serve = 'both'"),
    Case("unpaired-bad-content-loss", UNPAIRED_DRY + ["loss.content_loss=l1"], "content_loss = 'l1'"),
    Case("unpaired-generator-on-label-maps", ["train", "--config", "{file}", "--dry-run"], "translates RGB images",
         setup=yaml_file({"data": {"name": "synthetic-faces", "resolution": 64}, "generator": {"name": "scgan-unpaired"},
                          "discriminator": {"name": "fp"}, "loss": {"name": "unpaired", "content_loss": "edges"}})),
    Case("unpaired-bad-shortcut-condition", UNPAIRED_DRY + ["generator.shortcut_condition=label"],
         "shortcut_condition = 'label' is not valid"),
    Case("translate-model-missing", ["translate", "--model", "{tmp}/nowhere", "--images", "{tmp}", "--out", "{out}"],
         "does not exist"),
    Case("translate-synthesis-model", ["translate", "--model", "{model}", "--images", "{labels}", "--out", "{out}"],
         ("semantic-synthesis model", "semsynth generate")),
    Case("translate-needs-images", TRANSLATE, "give --images", setup=unpaired_model),
    Case("translate-images-missing", TRANSLATE + ["--images", "{tmp}/nowhere"], "no such file or folder",
         setup=unpaired_model),
    Case("translate-images-empty-folder", TRANSLATE + ["--images", "{none}"], "no images", setup=unpaired_model),
    Case("translate-not-an-image", TRANSLATE + ["--images", "{junk}/photo.png"],
         ("photo.png", "cannot read this image"), setup=unpaired_model),
    Case("translate-bad-seeds", TRANSLATE + ["--images", "{src}", "--seeds", "3-1"], "ends before it starts",
         setup=unpaired_model),
    Case("translate-seed-beyond-the-references", TRANSLATE + ["--images", "{src}", "--reference", "{refs1}",
                                                              "--seeds", "0-3"],
         ("reference 1 does not exist", "holds 1 image(s)"), setup=unpaired_model),
    Case("translate-seed-beyond-the-target-domain", TRANSLATE + ["--images", "{src}", "--seeds", "5"],
         ("reference 5 does not exist", "has 2 image(s)"), setup=unpaired_model),
    Case("translate-seeds-with-one-reference", TRANSLATE + ["--images", "{src}", "--reference", "{ref1}",
                                                            "--seeds", "0"], "drop one of them",
         setup=unpaired_model),
    Case("translate-reference-not-an-image", TRANSLATE + ["--images", "{src}", "--reference", "{junk}/photo.png"],
         ("photo.png", "cannot read this image"), setup=unpaired_model),
    Case("translate-eval-option-without-evaluate", TRANSLATE + ["--images", "{src}", "--classifier", "{tmp}"],
         "--classifier only apply with --evaluate", setup=unpaired_model),
    Case("translate-evaluate-with-images", TRANSLATE + ["--evaluate", "--images", "{src}"], "drop --images",
         setup=unpaired_model),
    Case("translate-evaluate-domain-needs-classifier", TRANSLATE + ["--evaluate", "--metrics", "domain"],
         "needs --classifier", setup=unpaired_model),
    Case("translate-evaluate-miou-needs-segmenter", TRANSLATE + ["--evaluate", "--metrics", "miou,edges"],
         "needs --segmenter", setup=unpaired_model),
    Case("translate-evaluate-unknown-metric", TRANSLATE + ["--evaluate", "--metrics", "is"], "unknown is",
         setup=unpaired_model),
    Case("translate-evaluate-num-0", TRANSLATE + ["--evaluate", "--num", "0"], "--num 0", setup=unpaired_model),
    Case("translate-evaluate-label-data", TRANSLATE + ["--evaluate", "--dataset", "synthetic-faces"],
         "not unpaired two-domain data", setup=unpaired_model),
    Case("generate-translation-model", ["generate", "--model", "{um}", "--labels", "{labels}", "--out", "{out}"],
         ("image-translation model", "semsynth translate"), setup=unpaired_model),

    # ---- sweep: grids, axes, values, seeds, --set, cells a base cannot take (all before anything is written) ----
    Case("sweep-unknown-grid", SWEEP_DRY + ["table7"], ("neither a built-in grid nor a file", "table3, table4")),
    Case("sweep-unknown-preset", ["sweep", "--config", "nope", "--grid", "table6", "--outdir", "{out}"],
         "neither a file nor a preset"),
    Case("sweep-unknown-axis", SWEEP_DRY + ["table6", "--only", "x=tanh"], "grid table6 has no axis 'x'"),
    Case("sweep-unknown-value", SWEEP_DRY + ["table6", "--only", "g=gelu"], "'gelu' is not a value of axis 'g'"),
    Case("sweep-unknown-value-creates-nothing", ["sweep", "--config", "scgan-synthetic-faces", "--grid", "table6",
                                                 "--only", "g=gelu", "--outdir", "{out}"], "not a value of axis"),
    Case("sweep-bad-seeds", SWEEP_DRY + ["table6", "--seeds", "0,x"], "'x' is not a seed"),
    Case("sweep-seed-twice", SWEEP_DRY + ["table6", "--seeds", "1,0-2"], "seed 1 is given twice"),
    Case("sweep-cell-cannot-take-switch", ["sweep", "--config", "spade-synthetic-faces", "--grid", "table3",
                                           "--outdir", "{out}"],
         ("cell conv=conv_norm=bn cannot take generator.conv_type", "options of the SC-GAN generator")),
    Case("sweep-set-contradicts-grid", SWEEP_DRY + ["table6", "--set", "generator.mapping=tanh"],
         "sets generator.mapping on its axis 'g'"),
    Case("sweep-set-seed", SWEEP_DRY + ["table6", "--set", "train.seed=3"], "give the seeds with --seeds"),
    Case("sweep-bad-set", SWEEP_DRY + ["table6", "--set", "train.batch_size=0"], "train.batch_size"),
    Case("sweep-grid-invalid-yaml", SWEEP_DRY + ["{file}"], "not valid YAML", setup=yaml_file("axes: [unclosed\n")),
    Case("sweep-grid-python-tag", SWEEP_DRY + ["{payload_yaml}"], "not valid YAML"),
    Case("sweep-grid-not-a-mapping", SWEEP_DRY + ["{file}"], "a grid must be a mapping", setup=yaml_file("- a\n")),
    Case("sweep-grid-option-the-model-lacks", SWEEP_DRY + ["{file}"],
         ("cell d=x: discriminator.channels", "has no option 'channels'"),
         setup=yaml_file({"axes": {"d": {"x": {"discriminator.channels": 8}}}})),
    Case("sweep-jobs-0", SWEEP_DRY + ["table6", "--jobs", "0"], "--jobs 0"),
    Case("sweep-torchrun-0", SWEEP_DRY + ["table6", "--torchrun", "0"], "--torchrun 0"),
    Case("sweep-num-0", SWEEP_DRY + ["table6", "--num", "0"], "--num 0"),
    Case("sweep-unknown-metric", SWEEP_DRY + ["table6", "--metrics", "miou,ssim"], "unknown ssim"),
    Case("sweep-miou-needs-segmenter", ["sweep", "--config", "scgan-ade20k", "--grid", "table8", "--outdir", "{out}"],
         "need --segmenter"),
    Case("sweep-vgg-cell", SWEEP_DRY + ["table4", "--set", "loss.vgg_weights={tmp}/vgg19.pth"],
         ("cell ls=vgg", "leave this cell out: --only ls=none,l1,l2")),

    # ---- demo ---------------------------------------------------------------------------------------------
    Case("demo-train-and-model", ["demo", "--train", "--model", "{model}", "--outdir", "{out}"], "choose one of"),
    Case("demo-set-without-train", ["demo", "--set", "train.images=8", "--outdir", "{out}"], "only applies"),
    Case("demo-model-missing", ["demo", "--model", "{tmp}/nowhere", "--outdir", "{out}"], "does not exist"),
    Case("demo-model-mismatch", ["demo", "--model", "{m}", "--outdir", "{out}"], "does not fit",
         setup=model_with(weights_from="model_wide")),
    Case("demo-threads-0", ["demo", "--threads", "0", "--outdir", "{out}"], "--threads 0"),
    Case("demo-train-bad-set", ["demo", "--train", "--set", "train.images=0", "--outdir", "{out}"],
         "train.images"),

    # ---- data make ----------------------------------------------------------------------------------------
    Case("make-unknown-dataset", ["data", "make", "imagenet", "--out", "{out}"], "can write"),
    Case("make-num-0", ["data", "make", "synthetic-faces", "--out", "{out}", "--num", "0"], "--num 0"),
    Case("make-size-0", ["data", "make", "synthetic-faces", "--out", "{out}", "--size", "0"], "--size"),
    Case("make-size-absurd", ["data", "make", "synthetic-faces", "--out", "{out}", "--size", "100000"], "--size"),
    Case("make-num-absurd", ["data", "make", "synthetic-faces", "--out", "{out}", "--num", "1000000000000"],
         "--num"),
    Case("make-out-is-a-file", ["data", "make", "synthetic-faces", "--out", "{tmp}/out/faces", "--num", "2"],
         "out", setup=file_in_the_way(), absent=()),

    # ---- data check ---------------------------------------------------------------------------------------
    Case("check-needs-dataset", ["data", "check"], "needs --dataset", absent=()),
    Case("check-unknown-dataset", ["data", "check", "--dataset", "imagenet", "--root", "{tmp}"],
         "valid datasets are", absent=()),
    Case("check-missing-root", CHECK + ["--root", "{tmp}/nowhere"], "does not exist", absent=()),
    Case("check-limit-0", CHECK + ["--root", "{faces}", "--limit", "0"], "--limit 0", absent=()),
    Case("check-config-missing", ["data", "check", "--config", "{tmp}/nope.yaml"], "neither a file nor a preset",
         absent=()),
    Case("check-config-python-tag", ["data", "check", "--config", "{payload_yaml}"], "not valid YAML", absent=()),
    Case("check-bad-set", CHECK + ["--root", "{faces}", "--set", "a.b.c=1"], "dataset option", absent=()),
    Case("check-unknown-option", CHECK + ["--root", "{faces}", "--set", "colour=1"], "valid options are",
         absent=()),
    Case("check-dangling-links", CHECK + ["--root", "{d}"], "ghost.png", setup=data_tree_with("dangling"),
         absent=()),
    Case("check-corrupt-label", CHECK + ["--root", "{d}"], "unreadable", setup=data_tree_with("corrupt"),
         absent=()),
    Case("check-unpaired", CHECK + ["--root", "{d}"], "no image", setup=data_tree_with("unpaired"), absent=()),
    Case("check-size-mismatch", CHECK + ["--root", "{d}"], "size", setup=data_tree_with("size"), absent=()),
    Case("check-la-labels-agree-with-generate", CHECK + ["--root", "{d}"], "result: OK", rc=0,
         setup=data_tree_with("la"), absent=()),
    Case("gen-la-labels-agree-with-check", ["generate", "--model", "{model}", "--labels", "{bad}/grey-alpha.png",
                                            "--out", "{out}"], "wrote 1 image", rc=0, absent=()),
    Case("check-palette-payload", CHECK + ["--root", "{faces}", "--set", "palette={payload_yaml}"], "palette",
         absent=()),
    Case("check-dataset-yaml-payload", CHECK + ["--root", "{faces}", "--set", "dataset_yaml={payload_yaml}"],
         "payload.yaml", absent=()),
]


def _format(argv: list[str], values: dict[str, Path]) -> list[str]:
    return [a.format(**{k: str(v) for k, v in values.items()}) for a in argv]


def _temporaries(*roots: Path) -> list[Path]:
    found = []
    for root in roots:
        for dirpath, dirnames, filenames in os.walk(root):
            found += [Path(dirpath) / f for f in filenames if is_temporary(f)]
    return found


def test_the_table_is_large_and_covers_every_command():
    ids = [c.id for c in CASES]
    assert len(ids) == len(set(ids)), "case ids must be unique"
    assert len(CASES) >= 120
    from semsynth.cli import COMMANDS

    covered = {c.argv[0] for c in CASES if c.argv}
    assert set(COMMANDS) - {"models"} <= covered, set(COMMANDS) - covered


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_bad_input(case: Case, ws, tmp_path):
    values = dict(ws)
    values.update({"tmp": tmp_path, "out": tmp_path / "out"})
    if case.setup is not None:
        values.update(case.setup(ws, tmp_path))
    argv = _format(case.argv, values)
    rc, text = run_main(argv)
    assert rc == case.rc, f"exit {rc}, expected {case.rc}; output:\n{text[-3000:]}"
    phrases = (case.says,) if isinstance(case.says, str) else case.says
    for phrase in phrases:
        phrase = phrase.format(**{k: str(v) for k, v in values.items()})
        assert phrase in text, f"{phrase!r} not in the output:\n{text[-3000:]}"
    assert "Traceback" not in text
    assert "weights_only=False" not in text and "`weights_only` set to `False`" not in text
    assert not ws["marker"].exists(), "a loader ran code from a file"
    assert not _temporaries(tmp_path, ws["root"]), "temporary files were left behind"
    for p in case.absent:
        path = Path(p.format(**{k: str(v) for k, v in values.items()}))
        assert not path.exists(), f"{path} was created by a command that failed"

"""OASIS checkpoints (``boschresearch/OASIS``): ``<iter>_EMA.pth`` / ``<iter>_G.pth`` (+ ``<iter>_D.pth``) -> semsynth
``oasis`` generator (and ``oasis`` discriminator).

The official training writes three files per checkpoint into ``checkpoints/<name>/models/``: the generator
(``_G``), its exponential moving average (``_EMA``, what the official ``test.py`` uses) and the discriminator
(``_D``); the released ``oasis_{ade20k,cityscapes,coco}_pretrained`` folders have the same layout. ``--checkpoint``
may name either generator file: by default the **EMA** generator is converted (the sibling ``<iter>_EMA.pth`` is
read when ``<iter>_G.pth`` is given); ``--set weights=plain`` converts ``<iter>_G.pth`` instead. ``--discriminator
<iter>_D.pth`` adds the discriminator.

The tensor shapes determine ``channels``, ``num_res_blocks``, spectral norm, SPADE's kernel size and hidden width,
batch-norm statistics or none (``syncbatch`` vs ``instance``) and the width of the conditioning map (label channels
+ ``z_dim``). ``opt.txt`` (or ``--preset`` / ``--set``) gives the dataset and ``z_dim`` / ``no_3dnoise``; without
any, the dataset is recognised from that width with the official z_dim 64 (ADE20K 151 + 64, Cityscapes 35 + 64,
COCO-Stuff 183 + 64).

Channel conventions, as the official loaders (peers.md section 1a): ADE20K 151 channels, raw 0 (unlabeled) =
channel 0, unshifted (semsynth's ``label_convention: scgan``); Cityscapes the 35 labelIds, no instance map;
COCO-Stuff ``label + 1`` and 255 -> 0, so channel 0 is "unlabeled" and 183 channels (not SPADE's order: semsynth's
``coco-stuff`` dataset serves SPADE's, so the converted COCO model records no dataset for ``evaluate``). A model
trained on other data with a copy of the official loader: ``--set data.name=custom --set data.num_classes=N``
(ids 0..N-1, 0 = unknown).

Official key -> semsynth key, no value changed::

    body.<i>.norm_{0,1,s}.first_norm.*   body.<i>.norm_{0,1,s}.param_free_norm.*     (generator)
    X.weight_orig, _u, _v                X.parametrizations.weight.original, .0._u, .0._v   (spectral norm)

every other name (``fc``, ``body.<i>.conv_*``, ``mlp_*``, ``conv_img``; the discriminator's ``body_down``,
``body_up``, ``layer_up_last``) is the same.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

from ..config import parse_override
from ..data import DatasetInfo
from ..errors import ConfigError
from ..models import build_discriminator, build_generator
from ..models.generators.oasis import block_widths
from . import (
    ConversionError,
    Converted,
    legacy_spectral_key,
    legacy_spectral_to_parametrized,
    load_official_state,
    load_strict,
    register,
    resolve_setting,
)
from .spade_family import Settings, build_checked, dataset_info_checked, family_hint, section_value

OFFICIAL_Z_DIM = 64
# official dataset_mode -> (semsynth dataset name, label channels, the test-time data spec of the official loader)
DATASETS: dict[str, tuple[str, int, dict[str, Any] | None]] = {
    "ade20k": ("ade20k", 151, {"name": "ade20k", "root": "datasets/ADEChallengeData2016", "label_convention": "scgan",
                               "preprocess": "resize_and_crop", "load_size": 256, "crop_size": 256}),
    "cityscapes": ("cityscapes", 35, {"name": "cityscapes", "root": "datasets/cityscapes", "preprocess": "fixed",
                                      "load_size": 512, "crop_size": 512, "aspect_ratio": 2.0, "use_instance": False}),
    "coco": ("coco-stuff", 183, None),  # OASIS's own channel order: no semsynth dataset serves it
}
BY_SEMSYNTH_NAME = {v[0]: k for k, v in DATASETS.items()}
SETTABLE = ("data", "generator", "discriminator")
WEIGHTS = ("ema", "plain")
FILE_KIND = re.compile(r"^(?P<prefix>.*)_(?P<kind>G|EMA|D)\.pth$")


# ------------------------------------------------------------------------------------------------------------
# What the tensors say


def is_discriminator(state: Mapping[str, torch.Tensor]) -> bool:
    return "layer_up_last.weight" in state or any(k.startswith("body_down.") for k in state)


def check_family(state: Mapping[str, torch.Tensor], what: str = "the generator checkpoint") -> None:
    """Refuse a file that is not an ``OASIS_Generator`` state dict, naming what it looks like."""
    if is_discriminator(state):
        raise ConversionError(f"{what} is the OASIS discriminator (body_down.* / layer_up_last.*, an <iter>_D.pth): "
                              f"give the generator as --checkpoint (<iter>_EMA.pth or <iter>_G.pth) and this file "
                              f"as --discriminator")
    if "fc.weight" in state and "body.0.norm_0.mlp_shared.0.weight" in state and "conv_img.weight" in state:
        return
    keys = list(state)
    raise ConversionError(f"{what} is not an OASIS generator: it has no fc.weight / body.0.norm_0.mlp_shared.0.weight "
                          f"/ conv_img.weight (its first keys: {', '.join(keys[:3])}){family_hint(state, 'oasis')}")


def _weight(state: Mapping[str, torch.Tensor], prefix: str) -> torch.Tensor | None:
    return state.get(prefix + ".weight_orig", state.get(prefix + ".weight"))


def infer_generator(state: Mapping[str, torch.Tensor]) -> dict[str, Any]:
    """The generator options the shapes fix, and the conditioning map's width (``cond`` = label channels + z)."""
    fc = state["fc.weight"]
    if fc.dim() != 4:
        raise ConversionError(f"generator checkpoint: fc.weight has shape {list(fc.shape)}, expected a conv weight "
                              f"[16 * channels_G, label channels + z_dim, 3, 3]")
    indices = sorted({int(m.group(1)) for k in state if (m := re.match(r"^body\.(\d+)\.", k))})
    n = len(indices)
    if indices != list(range(n)):
        raise ConversionError(f"generator checkpoint: residual blocks body.{indices} are not numbered 0..{n - 1}; "
                              f"the file is damaged or not an OASIS generator")
    first = block_widths(n)[0]
    channels, rem = divmod(int(fc.shape[0]), first)
    if rem or channels < 1:
        raise ConversionError(f"generator checkpoint: fc.weight has {fc.shape[0]} output channels, not a multiple of "
                              f"{first} (the first width of {n} blocks)")
    mlp = state.get("body.0.norm_0.mlp_shared.0.weight")
    conv = _weight(state, "body.0.conv_0")
    if mlp is None or conv is None or mlp.dim() != 4:
        raise ConversionError("generator checkpoint: body.0.conv_0 / body.0.norm_0.mlp_shared.0.weight are missing "
                              "or not conv weights; give an OASIS <iter>_EMA.pth or <iter>_G.pth")
    return {"channels": channels, "num_res_blocks": n, "cond": int(fc.shape[1]),
            "spectral": "body.0.conv_0.weight_orig" in state, "spade_hidden": int(mlp.shape[0]),
            "spade_kernel_size": int(mlp.shape[-1]),
            "batch_stats": "body.0.norm_0.first_norm.running_mean" in state}


# ------------------------------------------------------------------------------------------------------------
# Key mapping


def map_generator(state: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Official generator state -> semsynth keys (``first_norm`` -> ``param_free_norm``, spectral-norm names)."""
    return legacy_spectral_to_parametrized({k.replace(".first_norm.", ".param_free_norm."): v
                                            for k, v in state.items()})


def map_discriminator(state: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Official discriminator state -> semsynth keys (only the spectral-norm names change)."""
    return legacy_spectral_to_parametrized(state)


def official_key(key: str) -> str:
    """A semsynth key of the generator or discriminator -> the official key (the inverse of the mappings)."""
    return legacy_spectral_key(key).replace(".param_free_norm.", ".first_norm.")


def official_names(module: torch.nn.Module) -> dict[str, str]:
    """semsynth key -> official key for every tensor of ``module`` (for the messages of ``load_strict``)."""
    return {k: official_key(k) for k in module.state_dict()}


# ------------------------------------------------------------------------------------------------------------
# Settings from opt.txt, --preset and --set


class OasisSettings(Settings):
    """The SPADE family's :class:`~semsynth.convert.spade_family.Settings` (tensor shapes, opt.txt, --preset, --set,
    which must agree), plus ``--set weights=ema|plain`` (which generator file to convert); OASIS has no encoder
    section."""

    def __init__(self, preset: str | None, overrides: list[str]) -> None:
        self.weights: str | None = None
        rest = []
        for text in overrides:
            keys, value = parse_override(text)
            if keys == ["weights"]:
                if value not in WEIGHTS:
                    raise ConfigError(f"--set {text!r}: weights is 'ema' (the EMA generator, <iter>_EMA.pth; default) "
                                      f"or 'plain' (<iter>_G.pth)")
                self.weights = value
                continue
            if keys[0] not in SETTABLE:
                raise ConfigError(f"--set {text!r}: convert --from oasis takes only weights=ema|plain and "
                                  f"{', '.join(s + '.KEY' for s in SETTABLE)} settings")
            rest.append(text)
        super().__init__(("oasis",), preset, rest, "OASIS")


def _opt_bool(opt: Mapping[str, Any], key: str, negate: bool = False) -> bool | None:
    if key not in opt or opt[key] is None:
        return None
    return (not bool(opt[key])) if negate else bool(opt[key])


def _dataset(cond: int, opt: Mapping[str, Any], s: OasisSettings, notes: list[str]) -> str:
    """The official dataset_mode of the checkpoint (``custom``: a copy of the official loaders for other data)."""
    opt_mode = opt.get("dataset_mode")
    set_name, preset_name = section_value(s.sets, "data", "name"), section_value(s.raw, "data", "name")

    def mode_of(name: Any, where: str) -> str | None:
        if name is None or name == "custom":
            return name
        if name not in BY_SEMSYNTH_NAME:
            raise ConversionError(f"{where} data.name={name}: OASIS checkpoints are for ade20k, cityscapes, coco-stuff "
                                  f"or custom (with --set data.num_classes=N)")
        return BY_SEMSYNTH_NAME[name]

    if opt_mode is not None and opt_mode not in DATASETS:
        if set_name is None and preset_name is None:
            raise ConversionError(f"opt.txt: dataset_mode {opt_mode!r} is not one OASIS ships (ade20k, cityscapes, "
                                  f"coco); for a model trained on other data give --set data.name=custom "
                                  f"--set data.num_classes=N (its label channels)")
        opt_mode = None  # a custom loader: --set / --preset say what it is
    if opt_mode is not None and set_name == "custom":
        notes.append(f"opt.txt says dataset_mode {opt_mode}; --set data.name=custom takes precedence (a copy of the "
                     f"official loader for other data keeps its dataset_mode)")
        opt_mode = None
    mode = resolve_setting("dataset", [("opt.txt", opt_mode),
                                       (s.src_preset, mode_of(preset_name, s.src_preset)),
                                       ("--set", mode_of(set_name, "--set"))], s.sources)
    if mode is not None:
        return mode
    for m, (name, n, _) in DATASETS.items():
        for z in (OFFICIAL_Z_DIM, 0):
            if cond == n + z:
                s.sources["dataset"] = f"tensor shapes ({cond} conditioning channels = {n} + z_dim {z})"
                notes.append(f"no opt.txt: the dataset ({name}) was recognised from the generator's {cond} input "
                             f"channels; give --opt opt.txt to be sure")
                return m
    raise ConversionError(f"the generator's first conv reads {cond} channels (label channels + z_dim), which fits none "
                          f"of OASIS's datasets with z_dim {OFFICIAL_Z_DIM} (ADE20K 151, Cityscapes 35, COCO-Stuff "
                          f"183): give the checkpoint's opt.txt (--opt), or --set data.name=... (custom with "
                          f"--set data.num_classes=N) and --set generator.z_dim=...")


def _custom_facts(s: OasisSettings) -> tuple[DatasetInfo, dict[str, Any], dict[str, int]]:
    """Other data read by a copy of the official ADE20K loader: ids 0..N-1, 0 = unknown (weighted 0 in training)."""
    data: dict[str, Any] = {"name": "custom", "root": "datasets/custom", "dontcare": 0, "preprocess": "resize_and_crop",
                            "crop_size": 256, "aspect_ratio": 1.0}
    for where in (s.raw, s.sets):
        data.update({k: v for k, v in (where.get("data") or {}).items() if k != "name"})
    data["flip"] = False
    n = data.get("num_classes")
    if not isinstance(n, int) or isinstance(n, bool) or n < 1:
        raise ConversionError(f"data.name=custom needs the number of label channels: --set data.num_classes=N (got "
                              f"{n!r})")
    dc = data.get("dontcare")
    if dc is not None and (not isinstance(dc, int) or isinstance(dc, bool) or not 0 <= dc < n):
        raise ConversionError(f"data.dontcare={dc!r}: for an OASIS model it is the channel of 'unknown' (0, as the "
                              f"official loaders) or null")
    crop, aspect = data.get("crop_size"), data.get("aspect_ratio")
    try:
        h, w = round(int(crop) / float(aspect)), int(crop)
    except (TypeError, ValueError, ZeroDivisionError) as e:
        raise ConversionError(f"data.crop_size={crop!r}, data.aspect_ratio={aspect!r}: not an image size ({e})") from e
    data.setdefault("load_size", w)  # test time: resized to the crop size, as the official loaders
    names = [f"class-{i}" for i in range(n)]
    if dc is not None:
        names[dc] = "unknown"
    info = DatasetInfo(name="custom", num_classes=n, class_names=names, dontcare_index=dc, has_instance=False,
                       resolution=(h, w))
    return info, data, {str(v): v for v in range(n)}


def _dataset_facts(mode: str, s: OasisSettings) -> tuple[DatasetInfo, dict[str, Any] | None, dict[str, int]]:
    """(the channel convention, the test-time data spec or None, raw label value -> channel) of a dataset."""
    if mode == "custom":
        return _custom_facts(s)
    name, n, spec = DATASETS[mode]
    if spec is None:  # COCO-Stuff in OASIS's order: label + 1, 255 -> 0
        from ..data.coco_stuff import CLASS_NAMES, NUM_LABELS, PALETTE

        size = section_value(s.sets, "data", "crop_size") or section_value(s.raw, "data", "crop_size") or 256
        info = DatasetInfo(name=name, num_classes=n, class_names=["unlabeled"] + CLASS_NAMES[:NUM_LABELS],
                           dontcare_index=0, has_instance=False, palette=[(0, 0, 0)] + PALETTE[:NUM_LABELS],
                           resolution=(int(size), int(size)))
        return info, None, {str(v): v + 1 for v in range(NUM_LABELS)} | {"255": 0}
    data = dict(spec)
    if section_value(s.raw, "data", "root") is not None:
        data["root"] = section_value(s.raw, "data", "root")
    data.update({k: v for k, v in (s.sets.get("data") or {}).items() if k != "name"})
    data["flip"] = False
    if mode == "ade20k" and data.get("label_convention") != "scgan":
        raise ConversionError("data.label_convention: OASIS's ADE20K models read the labels unshifted (raw 0 = "
                              "channel 0, unlabeled), semsynth's label_convention scgan; keep it")
    if mode == "cityscapes" and data.get("use_instance"):
        raise ConversionError("data.use_instance: OASIS uses no instance maps; keep use_instance false")
    return dataset_info_checked(data), data, {str(v): v for v in range(n)}


# ------------------------------------------------------------------------------------------------------------
# Which files


def _pick_generator(state: Mapping[str, torch.Tensor], opt: Mapping[str, Any], s: OasisSettings,
                    checkpoint_path: Path | None, notes: list[str]) -> Mapping[str, torch.Tensor]:
    """The state dict of the generator to convert: the EMA one by default, the plain one with weights=plain."""
    weights = s.weights
    if weights is None:
        no_ema = _opt_bool(opt, "no_EMA")
        weights = "plain" if no_ema else "ema"
        s.sources["weights"] = "opt.txt (no_EMA: True)" if no_ema else "default (the EMA generator, as test.py)"
    else:
        s.sources["weights"] = "--set"
    m = FILE_KIND.match(checkpoint_path.name) if checkpoint_path is not None else None
    if m is None:
        notes.append(f"{checkpoint_path.name if checkpoint_path else 'the checkpoint'} is not named <iter>_EMA.pth or "
                     f"<iter>_G.pth: converted as given (the file alone cannot tell the EMA generator from the plain "
                     f"one)")
        return state
    prefix, kind = m.group("prefix"), m.group("kind")
    if kind == "D":
        check_family(state)  # raises: the discriminator given as --checkpoint
    wanted = "EMA" if weights == "ema" else "G"
    if kind == wanted:
        return state
    sibling = checkpoint_path.with_name(f"{prefix}_{wanted}.pth")
    if not sibling.is_file():
        other, which = ("plain", "EMA") if weights == "ema" else ("ema", "plain")
        raise ConversionError(f"--checkpoint {checkpoint_path.name}: converting the {which} generator needs "
                              f"{sibling.name} beside it, which does not exist; put it there, or convert "
                              f"{checkpoint_path.name} itself with --set weights={other}")
    notes.append(f"converted {sibling.name} (weights={weights}), found beside {checkpoint_path.name}")
    return load_official_state(sibling, f"oasis {weights} generator checkpoint")


# ------------------------------------------------------------------------------------------------------------
# The converter


@register("oasis")
def convert_oasis(state: Mapping[str, torch.Tensor], opt: Mapping[str, Any], *,
                  encoder_state: Mapping[str, torch.Tensor] | None = None,
                  discriminator_state: Mapping[str, torch.Tensor] | None = None,
                  preset: str | None = None, overrides: list[str] | tuple[str, ...] = (),
                  checkpoint_path: Path | None = None) -> Converted:
    s = OasisSettings(preset, list(overrides))
    notes: list[str] = []
    if encoder_state is not None:
        raise ConversionError("--encoder: OASIS has no style encoder (its variety comes from the noise z); convert "
                              "without --encoder")
    check_family(state)
    state = _pick_generator(state, opt, s, Path(checkpoint_path) if checkpoint_path else None, notes)
    check_family(state)
    shapes = infer_generator(state)
    cond = shapes["cond"]

    # -- the dataset and the noise: the conditioning map is [z, label] ------------------------------------------
    mode = _dataset(cond, opt, s, notes)
    info, data, label_values = _dataset_facts(mode, s)
    n = info.num_classes
    noise = s.resolve("noise_3d", None, _opt_bool(opt, "no_3dnoise", negate=True))
    if noise is None:
        noise = cond != n
        s.sources["noise_3d"] = "tensor shapes"
    z_shapes = cond - n if noise else None
    z_dim = s.resolve("z_dim", None, opt.get("z_dim") if noise else None)
    if noise and z_shapes < 1:
        raise ConversionError(f"the generator's first conv reads {cond} channels, no more than the {n} label channels "
                              f"of {info.name} (dataset from {s.sources.get('dataset')}), so there is no room for the "
                              f"noise: a wrong dataset (for other data: --set data.name=custom --set "
                              f"data.num_classes=N), or a generator without noise (--set generator.noise_3d=false)")
    if noise and z_dim is not None and z_dim != z_shapes:
        raise ConversionError(f"the generator's first conv reads {cond} channels = {n} label channels ({info.name}) + "
                              f"z_dim {z_shapes}, but {s.sources['z_dim']} says z_dim {z_dim}: a wrong dataset "
                              f"(--set data.name / --preset) or a wrong z_dim")
    if not noise and cond != n:
        raise ConversionError(f"the generator's first conv reads {cond} channels but {info.name} has {n} label channels "
                              f"and noise_3d is off ({s.sources.get('noise_3d')}): wrong dataset, or the generator "
                              f"takes 3D noise")
    if noise and z_dim is None:
        z_dim = z_shapes
        s.sources["z_dim"] = f"tensor shapes ({cond} channels - {n} label channels)"

    # -- the generator --------------------------------------------------------------------------------------
    norm = s.batch_like("param_free_norm", "batch-like" if shapes["batch_stats"] else "no-stats",
                        opt.get("param_free_norm"))
    spec: dict[str, Any] = {
        "name": "oasis",
        "channels": s.resolve("channels", shapes["channels"], opt.get("channels_G")),
        "num_res_blocks": s.resolve("num_res_blocks", shapes["num_res_blocks"], opt.get("num_res_blocks")),
        "spectral": s.resolve("spectral", shapes["spectral"], _opt_bool(opt, "no_spectral_norm", negate=True)),
        "spade_kernel_size": s.resolve("spade_kernel_size", shapes["spade_kernel_size"], opt.get("spade_ks")),
        "spade_hidden": s.resolve("spade_hidden", shapes["spade_hidden"]),
        "param_free_norm": norm, "noise_3d": bool(noise),
    }
    if noise:
        spec["z_dim"] = int(z_dim)
    spec = s.fill("generator", spec)
    if spec.get("name") != "oasis":
        raise ConversionError(f"--set generator.name: OASIS's generator is 'oasis', not {spec['name']!r}")
    h, w = (int(x) for x in info.resolution)
    G = build_checked(build_generator, spec, "OASIS generator", num_classes=n, use_instance=False, resolution=[h, w])
    hint = (f"read as OASIS with channels_G {spec['channels']}, {spec['num_res_blocks']} blocks, {n} label channels "
            f"({info.name}) + z_dim {spec.get('z_dim', 0) if noise else 0}; a shape difference means a wrong --from, "
            f"a wrong --preset or dataset (--set data.name=...)")
    load_strict(G, map_generator(state), "generator checkpoint", hint, official_names(G))

    # -- the discriminator ------------------------------------------------------------------------------------
    D = None
    if discriminator_state is not None:
        D = _convert_discriminator(discriminator_state, info, s)
    elif checkpoint_path is not None and (m := FILE_KIND.match(Path(checkpoint_path).name)) is not None:
        sibling = Path(checkpoint_path).with_name(f"{m.group('prefix')}_D.pth")
        if sibling.is_file():
            notes.append(f"the discriminator {sibling.name} is beside it: add --discriminator {sibling} to convert "
                         f"it too (for training from this checkpoint)")

    if mode == "coco":
        notes.append("COCO-Stuff in OASIS's order: label files are read as label + 1 and 255 (unlabeled) -> channel "
                     "0, as the official loader; semsynth's coco-stuff dataset serves SPADE's order (255 -> channel "
                     "182), so no dataset is recorded for 'evaluate' (generate reads label files correctly)")
    if mode == "ade20k":
        notes.append("ADE20K labels are read unshifted (raw 0 'other' = channel 0, class k = channel k), as the "
                     "official loader")
    return Converted(generator=G, info=info, discriminator=D, label_values=label_values, data=data,
                     sources=s.sources, notes=notes)


def _convert_discriminator(state: Mapping[str, torch.Tensor], info: DatasetInfo, s: OasisSettings) -> torch.nn.Module:
    if not is_discriminator(state):
        raise ConversionError(f"--discriminator: not an OASIS discriminator checkpoint (no body_down.* / "
                              f"layer_up_last.weight; its first keys: {', '.join(list(state)[:3])})")
    first = _weight(state, "body_down.0.conv1.0")
    head = state.get("layer_up_last.weight")
    if first is None or head is None or first.dim() != 4 or head.dim() != 4:
        raise ConversionError("--discriminator: body_down.0.conv1.0 / layer_up_last.weight are missing or not conv "
                              "weights; give the OASIS <iter>_D.pth")
    downs = {int(m.group(1)) for k in state if (m := re.match(r"^body_down\.(\d+)\.", k))}
    if int(head.shape[0]) != info.num_classes + 1:
        raise ConversionError(f"--discriminator: layer_up_last.weight has shape {list(head.shape)}, {head.shape[0]} = "
                              f"{head.shape[0] - 1} classes + fake, but the generator reads {info.num_classes} label "
                              f"channels ({info.name}): the two files are of different models")
    spec: dict[str, Any] = {"name": "oasis"}
    for key, value in (("channels", int(first.shape[0]) // 2), ("num_res_blocks", len(downs)),
                       ("spectral", "body_down.0.conv1.0.weight_orig" in state)):
        spec[key] = s.resolve(key, value, None, sec="discriminator")
    spec = s.fill("discriminator", spec)
    if spec.get("name") != "oasis":
        raise ConversionError(f"--set discriminator.name: OASIS's discriminator is 'oasis', not {spec['name']!r}")
    D = build_checked(build_discriminator, spec, "OASIS discriminator", num_classes=info.num_classes,
                      use_instance=False)
    load_strict(D, map_discriminator(state), "discriminator checkpoint",
                f"read as the OASIS U-Net with channels {spec['channels']} and {spec['num_res_blocks']} blocks per half",
                official_names(D))
    return D

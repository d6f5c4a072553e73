"""SPADE checkpoints (``NVlabs/SPADE``): ``latest_net_G.pth`` (+ ``latest_net_E.pth``, ``latest_net_D.pth``) ->
semsynth ``spade`` (or ``pix2pixhd``) generator, ``conv`` encoder and ``multiscale`` discriminator.

Which generator, decided by the keys: ``head_0.norm_0.mlp_shared.*`` is SPADE's ``--netG spade``; ``model.1.0.*``
(a conv wrapped with its norm) is SPADE's ``--netG pix2pixhd``, converted to semsynth's ``pix2pixhd`` as SPADE's
code builds it (no conv bias before a norm; spectral norm when its ``norm_G`` had it).

The tensor shapes determine: ``ngf``, the number of input channels (classes + don't-care + instance edge), VAE or
not and ``z_dim``, the ``most`` layout, SPADE's hidden width and kernel size, spectral norm, the parameter-free norm
(batch statistics or none); for pix2pixhd the numbers of down-samplings and blocks and the kernel sizes; the
encoder's width and depth; the discriminator's width, depth and number of scales. ``opt.txt`` (or ``--preset`` /
``--set``) gives the rest: the dataset (how the channels split into classes, don't-care and instance edge), the
image size, ``normal`` vs ``more`` (a label-input generator has the same tensors in both) and ``syncbatch`` vs
``batch``. Without any, the dataset is recognised from the channel count (151 ADE20K, 183/184 COCO-Stuff, 35/36
Cityscapes, which also means ``more``).

Official key -> semsynth key, no value changed::

    spade G       identical names (fc, head_0 .. up_3 [, up_4], conv_img; conv_0/1/s, norm_0/1/s.mlp_*)
    pix2pixhd G   model.<i>.0 / .1 (conv, norm)          global_generator.{head, down.<k>, up.<k>}.conv / .norm
                  model.<i>.conv_block.1 / .4            global_generator.blocks.<k>.{conv_0, norm_0} / {conv_1, norm_1}
                  model.<last> (conv to RGB)             global_generator.to_rgb.conv
    encoder       layer<i>.0.*                           layers.<i-1>.0.*
    D             discriminator_<d>.model<j>.0.0.*       discriminator_<d>.model<j>.0.*   (the conv inside its norm
                                                                                           wrapper)
    every         X.weight_orig, _u, _v                  X.parametrizations.weight.original, .0._u, .0._v
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

import torch

from ..config import apply_overrides, dataset_info, find_config, read_yaml
from ..data import DatasetInfo
from ..errors import ConfigError
from ..models import build_discriminator, build_encoder, build_generator
from . import (
    ConversionError,
    Converted,
    legacy_spectral_to_parametrized,
    load_strict,
    register,
    resolve_setting,
)

# official dataset_mode -> (semsynth dataset, label channels without the instance edge, test-time data options as
# SPADE's test.py sets them)
DATASETS = {
    "ade20k": ("ade20k", 151, {"root": "datasets/ADEChallengeData2016", "label_convention": "scgan",
                               "preprocess": "resize_and_crop", "load_size": 256, "crop_size": 256}),
    "coco": ("coco-stuff", 183, {"root": "datasets/coco_stuff", "preprocess": "resize_and_crop", "load_size": 256,
                                 "crop_size": 256}),
    "cityscapes": ("cityscapes", 35, {"root": "datasets/cityscapes", "preprocess": "fixed", "load_size": 512,
                                      "crop_size": 512, "aspect_ratio": 2.0}),
}
BY_SEMSYNTH_NAME = {v[0]: k for k, v in DATASETS.items()}
CHANNEL_GUESS = {151: "ade20k", 183: "coco", 184: "coco", 35: "cityscapes", 36: "cityscapes"}
SETTABLE = ("data", "generator", "encoder", "discriminator")
SHAPES = "tensor shapes"


# ------------------------------------------------------------------------------------------------------------
# Which family wrote a generator checkpoint


def looks_like(state: Mapping[str, torch.Tensor]) -> str | None:
    """The family (``--from`` value) whose generator keys ``state`` has, as far as the keys tell."""
    keys = list(state)
    if any(k.startswith("pyramid_spaital_routing.") or ".conv_bases." in k for k in keys):
        return "scgan"
    if any(k.startswith("labelenc1.") for k in keys):
        return "ccfpse"
    if "head_0.norm_0.mlp_shared.0.weight" in state:
        return "spade"
    if any(k.startswith("model.1.0.") for k in keys):
        return "spade"  # SPADE's --netG pix2pixhd: every conv sits in a (conv, norm) wrapper
    if any(re.match(r"^model\d+_1\.", k) for k in keys) or "model.1.bias" in state:
        return "pix2pixhd"
    if any(k.startswith("body.") for k in keys):
        return "oasis"
    return None


def wrong_family(state: Mapping[str, torch.Tensor], expected: str, what: str) -> ConversionError:
    keys = list(state)
    guess = looks_like(state)
    hint = f" (it looks like a {guess} checkpoint: --from {guess})" if guess and guess != expected else ""
    return ConversionError(f"the generator checkpoint is not {what} (its first keys: {', '.join(keys[:3])}){hint}")


# ------------------------------------------------------------------------------------------------------------
# Settings from the tensor shapes, opt.txt, --preset and --set


class Settings:
    """Every value a conversion needs, from up to four sources that must agree (``resolve_setting``)."""

    def __init__(self, generators: tuple[str, ...], preset: str | None, overrides: list[str] | tuple[str, ...],
                 family: str) -> None:
        self.raw: dict[str, Any] = {}
        if preset:
            self.raw = read_yaml(find_config(preset))
            gname = (self.raw.get("generator") or {}).get("name")
            if gname not in generators:
                raise ConversionError(f"--preset {preset}: a preset of generator {gname!r}, but a {family} checkpoint "
                                      f"is a {' or '.join(map(repr, generators))} generator; use a "
                                      f"{generators[0]}-* preset (semsynth models lists them) or none")
        self.sets = apply_overrides({}, list(overrides))
        for sec in self.sets:
            if sec not in SETTABLE:
                raise ConfigError(f"--set {sec}.*: convert takes only {', '.join(s + '.KEY' for s in SETTABLE)} "
                                  f"settings")
        self.src_preset = f"--preset {preset}"
        self.sources: dict[str, str] = {}

    def given(self, sec: str, key: str) -> list[tuple[str, Any]]:
        return [(self.src_preset, _get(self.raw, sec, key)), ("--set", _get(self.sets, sec, key))]

    def resolve(self, key: str, shape: Any = None, opt: Any = None, sec: str = "generator") -> Any:
        name = key if sec == "generator" else f"{sec}.{key}"
        return resolve_setting(name, [(SHAPES, shape), ("opt.txt", opt), *self.given(sec, key)], self.sources)

    def batch_like(self, key: str, shape_kind: str, opt: Any = None, sec: str = "generator") -> Any:
        """A norm option where the shapes tell only "batch statistics" (syncbatch or batch: the same tensors) or "no
        statistics" (instance, or none)."""
        name = key if sec == "generator" else f"{sec}.{key}"
        value = resolve_setting(name, [("opt.txt", opt), *self.given(sec, key)], self.sources)
        allowed = ("syncbatch", "batch") if shape_kind == "batch-like" else ("instance", "none")
        what = "batch-norm statistics" if shape_kind == "batch-like" else "no norm statistics"
        if value is None:
            self.sources[name] = f"{SHAPES} ({what})"
            return allowed[0]
        if value not in allowed:
            raise ConversionError(f"{name}: {self.sources[name]} says {value!r} but the checkpoint holds {what} there "
                                  f"({' or '.join(allowed)})")
        return value

    def fill(self, sec: str, spec: dict[str, Any]) -> dict[str, Any]:
        """``spec`` plus the section's other options from the preset and --set (what no shape decides)."""
        for part in (self.raw.get(sec) or {}, self.sets.get(sec) or {}):
            for k, v in part.items():
                if k not in spec:
                    spec[k] = v
        return {k: v for k, v in spec.items() if v is not None}


def _get(sections: Mapping[str, Any], sec: str, key: str) -> Any:
    part = sections.get(sec)
    return part.get(key) if isinstance(part, Mapping) else None


def _first(state: Mapping[str, torch.Tensor], *keys: str) -> str | None:
    return next((k for k in keys if k in state), None)


def parse_norm_g(norm_g: Any) -> tuple[bool | None, str | None, int | None]:
    """SPADE's ``norm_G`` string (``spectralspadesyncbatch3x3``) -> (spectral, param-free norm, kernel size)."""
    if not isinstance(norm_g, str):
        return None, None, None
    m = re.fullmatch(r"(spectral)?spade(\D+)(\d)x\d", norm_g)
    if not m:
        return norm_g.startswith("spectral"), None, None
    return bool(m.group(1)), m.group(2), int(m.group(3))


# ------------------------------------------------------------------------------------------------------------
# The dataset: how the input channels split, the data spec, the label values (SPADE's conventions)


def spade_dataset(channels: int, opt: Mapping[str, Any], s: Settings, notes: list[str],
                  family: str = "SPADE") -> tuple[str, dict[str, Any], DatasetInfo, dict[str, int]]:
    """(official dataset_mode, data spec, DatasetInfo, label values) for a generator reading ``channels`` inputs."""
    mode_opt = opt.get("dataset_mode")
    if mode_opt == "facades":
        mode_opt = "custom"  # 13 classes, no don't-care, no instances: a custom dataset in semsynth
    if mode_opt is not None and mode_opt not in DATASETS and mode_opt != "custom":
        raise ConversionError(f"opt.txt: dataset_mode {mode_opt!r} is not one {family} ships (ade20k, coco, "
                              f"cityscapes, facades, custom)")
    pre = _get(s.raw, "data", "name")
    setn = _get(s.sets, "data", "name")
    mode = resolve_setting("dataset", [("opt.txt", mode_opt),
                                       (s.src_preset, BY_SEMSYNTH_NAME.get(pre, pre) if pre else None),
                                       ("--set", BY_SEMSYNTH_NAME.get(setn, setn) if setn else None)], s.sources)
    if mode is None:
        mode = CHANNEL_GUESS.get(channels)
        if mode is None:
            raise ConversionError(f"the generator reads {channels} input channels, which is none of {family}'s "
                                  f"datasets (ADE20K 151, COCO-Stuff 183/184, Cityscapes 35/36): give the opt.txt "
                                  f"of the checkpoint (--opt), or --set data.name=custom --set data.num_classes=N")
        s.sources["dataset"] = f"{SHAPES} ({channels} input channels)"
        notes.append(f"no opt.txt: the dataset ({DATASETS[mode][0]}) was recognised from the {channels} input "
                     f"channels; give --opt opt.txt to be sure")
    if mode not in DATASETS and mode != "custom":
        raise ConversionError(f"data.name {mode!r}: {family} checkpoints are for ade20k, coco-stuff, cityscapes or "
                              f"custom")
    label_nc = dontcare = None
    if mode == "custom":
        label_nc = s.resolve("num_classes", None, opt.get("label_nc"), sec="data")
        if label_nc is None:
            raise ConversionError("a custom-dataset checkpoint needs its number of classes: --opt opt.txt, or "
                                  "--set data.num_classes=N (real classes, without don't-care)")
        if "contain_dontcare_label" in opt:
            dontcare = bool(opt["contain_dontcare_label"])
        else:
            dontcare = any(v is not None for _, v in s.given("data", "dontcare"))
        label_channels = int(label_nc) + int(dontcare)
    else:
        label_channels = DATASETS[mode][1]
        if opt.get("label_nc") is not None:
            from_opt = int(opt["label_nc"]) + int(bool(opt.get("contain_dontcare_label")))
            if from_opt != label_channels:
                raise ConversionError(f"opt.txt: label_nc {opt['label_nc']} (+ don't-care "
                                      f"{bool(opt.get('contain_dontcare_label'))}) does not match {mode}'s "
                                      f"{label_channels} label channels")
    extra = channels - label_channels
    if extra not in (0, 1):
        raise ConversionError(f"the generator reads {channels} input channels, but {DATASETS.get(mode, [mode])[0]} "
                              f"has {label_channels} label channels (+ 1 with instance edges): wrong --from, "
                              f"--preset or dataset")
    use_instance = s.resolve("use_instance", extra == 1, None if "no_instance" not in opt else not opt["no_instance"],
                             sec="data")
    if mode == "ade20k" and use_instance:
        raise ConversionError("ADE20K has no instance maps, but the generator reads an instance-edge channel")

    if mode == "custom":
        data: dict[str, Any] = {"name": "custom", "root": "datasets/custom", "num_classes": int(label_nc),
                                "dontcare": 255 if dontcare else None, "preprocess": "resize_and_crop",
                                "load_size": 256, "crop_size": 256}
    else:
        data = {"name": DATASETS[mode][0], **DATASETS[mode][2]}
    if mode in ("coco", "cityscapes"):
        data["use_instance"] = bool(use_instance)
    if _get(s.raw, "data", "root") is not None:
        data["root"] = _get(s.raw, "data", "root")
    for key in ("crop_size", "aspect_ratio"):
        value = s.resolve(key, None, opt.get(key), sec="data")
        if value is not None:
            data[key] = value
    if data.get("load_size") is not None:
        data["load_size"] = max(int(data["load_size"]), int(data["crop_size"]))
    data.update({k: v for k, v in (s.sets.get("data") or {}).items() if k != "name"})
    data["flip"] = False
    if mode == "ade20k" and data.get("label_convention") != "scgan":
        raise ConversionError(f"data.label_convention: {family}'s ADE20K models read the labels unshifted "
                              f"(label_convention scgan: raw 0 = channel 0), as the official loader did; keep it")
    try:
        if mode == "custom":
            names = [f"class-{i}" for i in range(int(label_nc))] + (["unlabeled"] if dontcare else [])
            hw = (round(int(data["crop_size"]) / float(data.get("aspect_ratio", 1.0))), int(data["crop_size"]))
            info = DatasetInfo(name="custom", num_classes=label_channels, class_names=names,
                               dontcare_index=int(label_nc) if dontcare else None, has_instance=bool(use_instance),
                               resolution=hw)
            label_values = {str(v): v for v in range(int(label_nc))} | ({"255": int(label_nc)} if dontcare else {})
        else:
            info = dataset_info(data)
            label_values = label_values_of(mode)
    except (ConfigError, ValueError, TypeError) as e:
        raise ConversionError(f"the data settings of this conversion are not valid: {e}") from e
    if mode == "ade20k":
        notes.append("ADE20K labels are read unshifted (raw 0 'other' = channel 0, class k = channel k), as the "
                     "released models saw them: the official loader's shift to don't-care is a no-op")
    return mode, data, info, label_values


def label_values_of(mode: str) -> dict[str, int]:
    """Raw label-file value -> channel, as SPADE's loaders map them."""
    if mode == "ade20k":
        return {str(v): v for v in range(151)}
    if mode == "coco":
        return {str(v): v for v in range(182)} | {"255": 182}
    return {str(v): v for v in range(35)}


# ------------------------------------------------------------------------------------------------------------
# --netG spade


def infer_spade(state: Mapping[str, torch.Tensor]) -> dict[str, Any]:
    """The SPADE generator options its tensor shapes fix, and its input channel count (``channels``)."""
    mlp = state["head_0.norm_0.mlp_shared.0.weight"]
    conv = _first(state, "head_0.conv_0.weight_orig", "head_0.conv_0.weight")
    fc = state.get("fc.weight")
    if conv is None or fc is None or mlp.dim() != 4:
        raise ConversionError("generator checkpoint: head_0.conv_0.weight(_orig) or fc.weight is missing; give the "
                              "latest_net_G.pth of SPADE")
    ngf, rem = divmod(int(state[conv].shape[0]), 16)
    if rem or ngf < 1:
        raise ConversionError(f"generator checkpoint: {conv} has shape {list(state[conv].shape)}; its "
                              f"{state[conv].shape[0]} output channels are not 16 * ngf")
    out: dict[str, Any] = {
        "ngf": ngf, "channels": int(mlp.shape[1]), "spade_hidden": int(mlp.shape[0]),
        "spade_kernel_size": int(mlp.shape[-1]), "spectral": conv.endswith("_orig"),
        "norm": "batch-like" if "head_0.norm_0.param_free_norm.running_mean" in state else "no-stats",
        "most": any(k.startswith("up_4.") for k in state)}
    if fc.dim() == 2:
        out["use_vae"], out["z_dim"] = True, int(fc.shape[1])
        cells, rem = divmod(int(fc.shape[0]), 16 * ngf)
        if rem:
            raise ConversionError(f"generator checkpoint: fc.weight has shape {list(fc.shape)}; its {fc.shape[0]} "
                                  f"outputs are not a multiple of 16 * ngf = {16 * ngf}")
        out["start_cells"] = cells
    else:
        out["use_vae"] = False
    return out


def _convert_spade_generator(state: Mapping[str, torch.Tensor], opt: Mapping[str, Any], s: Settings,
                             notes: list[str]) -> tuple[torch.nn.Module, DatasetInfo, dict, dict, int]:
    shapes = infer_spade(state)
    channels = shapes["channels"]
    mode, data, info, label_values = spade_dataset(channels, opt, s, notes)
    h, w = (int(x) for x in info.resolution)
    opt_spectral, opt_norm, opt_ks = parse_norm_g(opt.get("norm_G"))
    spec: dict[str, Any] = {"name": "spade"}
    spec["ngf"] = s.resolve("ngf", shapes["ngf"], opt.get("ngf"))
    spec["spectral"] = s.resolve("spectral", shapes["spectral"], opt_spectral)
    spec["spade_kernel_size"] = s.resolve("spade_kernel_size", shapes["spade_kernel_size"], opt_ks)
    spec["spade_hidden"] = s.resolve("spade_hidden", shapes["spade_hidden"])
    spec["param_free_norm"] = s.batch_like("param_free_norm", shapes["norm"], opt_norm)
    spec["use_vae"] = s.resolve("use_vae", shapes["use_vae"], opt.get("use_vae"))
    if shapes["use_vae"]:
        spec["z_dim"] = s.resolve("z_dim", shapes["z_dim"], opt.get("z_dim"))
    # the layout: "most" has a block more; normal and more differ in the first map's size only (VAE: its cells)
    layout_shape = "most" if shapes["most"] else None
    if not shapes["most"] and shapes["use_vae"]:
        fits = [n for n, f in (("normal", 32), ("more", 64)) if (h // f) * (w // f) == shapes["start_cells"]
                and h % f == 0 and w % f == 0]
        layout_shape = fits[0] if len(fits) == 1 else None
    nul = s.resolve("num_upsampling_layers", layout_shape, opt.get("num_upsampling_layers"))
    if nul is None:
        nul = "more" if mode == "cityscapes" else "normal"
        s.sources["num_upsampling_layers"] = f"default of SPADE's {mode} setting"
    if shapes["most"] != (nul == "most"):
        raise ConversionError(f"num_upsampling_layers: {s.sources['num_upsampling_layers']} says {nul!r}, but the "
                              f"checkpoint {'has' if shapes['most'] else 'has no'} up_4 block (only 'most' has one)")
    spec["num_upsampling_layers"] = nul
    factor = {"normal": 32, "more": 64, "most": 128}[nul]
    if shapes["use_vae"] and (h // factor) * (w // factor) != shapes["start_cells"]:
        raise ConversionError(f"generator checkpoint: fc.weight has shape {list(state['fc.weight'].shape)}, a first "
                              f"map of {shapes['start_cells']} cells (16 * ngf = {16 * shapes['ngf']} channels each), "
                              f"but the image size {h}x{w} gives {(h // factor) * (w // factor)} at 1/{factor} "
                              f"({nul}): give the training image size (--opt opt.txt, or --set data.crop_size=... "
                              f"--set data.aspect_ratio=...)")
    spec = s.fill("generator", spec)
    interface = {"num_classes": info.num_classes, "use_instance": info.has_instance, "resolution": [h, w]}
    try:
        G = build_generator(spec, **interface)
    except ConfigError as e:
        raise ConversionError(f"cannot build the SPADE generator for this checkpoint: {e}") from e
    hint = (f"read as SPADE with ngf {spec['ngf']}, {channels} input channels ({info.name}"
            f"{', instance edge' if info.has_instance else ''}), {'VAE' if spec['use_vae'] else 'no VAE'}, "
            f"{nul} layout; a shape difference means a wrong --from, a wrong --preset or the instance map on/off "
            f"(--set data.use_instance=...)")
    load_strict(G, legacy_spectral_to_parametrized(state), "generator checkpoint", hint)
    if shapes["use_vae"]:
        notes.append("the generator takes z (VAE); without --encoder it draws z ~ N(0, I). The official test.py "
                     "encodes the real image with netE: give --encoder latest_net_E.pth for that")
    return G, info, data, label_values, channels


# ------------------------------------------------------------------------------------------------------------
# pix2pixHD-style ResNet generators (SPADE's --netG pix2pixhd here; NVIDIA's own in convert/pix2pixhd.py)


def sequential_units(state: Mapping[str, torch.Tensor], prefix: str) -> list[tuple[str, Any]]:
    """The parameterised members of an official ``nn.Sequential`` at ``prefix``, in order: ``("conv", (conv prefix,
    norm prefix or None))`` for a conv (with the norm that follows it or wraps it with it) and ``("block", [unit,
    unit])`` for a residual block (its ``conv_block``)."""
    pat = re.compile(r"^" + re.escape(prefix) + r"(\d+)\.(.*)$")
    members: dict[int, list[str]] = {}
    for k in state:
        m = pat.match(k)
        if m:
            members.setdefault(int(m.group(1)), []).append(m.group(2))
    units: list[tuple[str, Any]] = []
    for i in sorted(members):
        rests = members[i]
        p = f"{prefix}{i}."
        if any(r.startswith("conv_block.") for r in rests):
            inner = [u for u in sequential_units(state, p + "conv_block.") if u[0] == "conv"]
            units.append(("block", [u[1] for u in inner]))
        elif any(r.startswith("0.") for r in rests):  # SPADE: (conv, norm) wrapped together
            units.append(("conv", (p + "0.", p + "1." if any(r.startswith("1.") for r in rests) else None)))
        elif any(state[p + r].dim() == 4 for r in rests if r.startswith("weight")):
            units.append(("conv", (p, None)))
        elif units and units[-1][0] == "conv" and units[-1][1][1] is None:  # pix2pixHD: a norm after its conv
            units[-1] = ("conv", (units[-1][1][0], p))
        else:
            raise ConversionError(f"generator checkpoint: cannot place the tensors {p}* (not a conv, a norm after a "
                                  f"conv, or a residual block)")
    return units


def resnet_shapes(state: Mapping[str, torch.Tensor], units: list[tuple[str, Any]], with_rgb: bool) -> dict[str, Any]:
    """Options of a pix2pixHD global generator from its units (head, down, blocks, up[, to_rgb])."""
    convs = [u for u in units if u[0] == "conv"]
    blocks = [u for u in units if u[0] == "block"]
    n_down, rem = divmod(len(convs) - 1 - int(with_rgb), 2)
    if rem or n_down < 0 or not convs:
        raise ConversionError(f"generator checkpoint: {len(convs)} convs outside the residual blocks, which is no "
                              f"head + n down + n up{' + RGB' if with_rgb else ''} layout")
    head_conv, head_norm = convs[0][1]
    weight = state[_first(state, head_conv + "weight_orig", head_conv + "weight")]
    out: dict[str, Any] = {"channels": int(weight.shape[1]), "width": int(weight.shape[0]),
                           "first_kernel_size": int(weight.shape[-1]), "n_downsample": n_down,
                           "n_blocks": len(blocks), "spectral": head_conv + "weight_orig" in state,
                           "norm_bias": head_conv + "bias" in state}
    if blocks:
        c0 = blocks[0][1][0][0]
        out["kernel_size"] = int(state[_first(state, c0 + "weight_orig", c0 + "weight")].shape[-1])
    if head_norm is None:
        out["norm"] = "no-stats"
    elif head_norm + "running_mean" in state:
        out["norm"] = "batch-like"
    else:
        raise ConversionError(f"generator checkpoint: the norm {head_norm}* holds no batch statistics; semsynth's "
                              f"pix2pixhd takes instance, batch, syncbatch or none")
    return out


def resnet_key_map(units: list[tuple[str, Any]], target: str, with_rgb: bool) -> list[tuple[str, str]]:
    """(official prefix, semsynth prefix) pairs for a global generator's units."""
    convs = [u[1] for u in units if u[0] == "conv"]
    blocks = [u[1] for u in units if u[0] == "block"]
    n_down = (len(convs) - 1 - int(with_rgb)) // 2
    names = ["head"] + [f"down.{k}" for k in range(n_down)] + [f"up.{k}" for k in range(n_down)]
    pairs = unit_pairs(convs[0], f"{target}.head")
    for name, unit in zip(names[1:], convs[1:]):
        pairs += unit_pairs(unit, f"{target}.{name}")
    for k, (first, second) in enumerate(blocks):
        pairs += unit_pairs(first, f"{target}.blocks.{k}", "conv_0", "norm_0")
        pairs += unit_pairs(second, f"{target}.blocks.{k}", "conv_1", "norm_1")
    if with_rgb:
        pairs.append((convs[-1][0], f"{target}.to_rgb.conv."))
    return pairs


def unit_pairs(unit: tuple[str, str | None], target: str, conv: str = "conv",
               norm: str = "norm") -> list[tuple[str, str]]:
    pairs = [(unit[0], f"{target}.{conv}.")]
    if unit[1] is not None:
        pairs.append((unit[1], f"{target}.{norm}."))
    return pairs


def rename(state: Mapping[str, torch.Tensor], pairs: list[tuple[str, str]]) -> dict[str, torch.Tensor]:
    """Each key with the longest matching official prefix replaced (other keys kept: ``load_strict`` names them)."""
    return {new: state[old] for old, new in renamed_keys(state, pairs).items()}


def renamed_keys(state: Mapping[str, torch.Tensor], pairs: list[tuple[str, str]]) -> dict[str, str]:
    """Official key -> semsynth key (longest matching prefix replaced, then the spectral-norm names)."""
    pairs = sorted(pairs, key=lambda p: -len(p[0]))
    out = {}
    for key in state:
        k = key
        for old, new in pairs:
            if k.startswith(old):
                k = new + k[len(old):]
                break
        out[key] = next(iter(legacy_spectral_to_parametrized({k: state[key]})))
    return out


def load_renamed(module: torch.nn.Module, state: Mapping[str, torch.Tensor], pairs: list[tuple[str, str]],
                 source: str, hint: str) -> None:
    """``load_strict`` of the renamed state; a shape difference names the official key and the semsynth one."""
    names = renamed_keys(state, pairs)
    expected = module.state_dict()
    for old, new in names.items():
        if new in expected and tuple(state[old].shape) != tuple(expected[new].shape):
            raise ConversionError(f"{source}: tensor {old!r} (semsynth {new!r}) has shape {list(state[old].shape)} in "
                                  f"the checkpoint but {list(expected[new].shape)} in the semsynth model; {hint}")
    load_strict(module, {new: state[old] for old, new in names.items()}, source, hint)


def _convert_spade_pix2pixhd(state: Mapping[str, torch.Tensor], opt: Mapping[str, Any], s: Settings,
                             notes: list[str]) -> tuple[torch.nn.Module, DatasetInfo, dict, dict, int]:
    units = sequential_units(state, "model.")
    shapes = resnet_shapes(state, units, with_rgb=True)
    channels = shapes["channels"]
    _, data, info, label_values = spade_dataset(channels, opt, s, notes)
    h, w = (int(x) for x in info.resolution)
    opt_spectral = opt["norm_G"].startswith("spectral") if isinstance(opt.get("norm_G"), str) else None
    sub = opt["norm_G"][len("spectral"):] if opt_spectral else opt.get("norm_G")
    opt_norm = {"instance": "instance", "batch": "batch", "sync_batch": "syncbatch", "none": "none",
                "": "none"}.get(sub) if isinstance(sub, str) else None
    spec: dict[str, Any] = {"name": "pix2pixhd"}
    spec["ngf"] = s.resolve("ngf", shapes["width"], opt.get("ngf"))
    spec["n_downsample"] = s.resolve("n_downsample", shapes["n_downsample"], opt.get("resnet_n_downsample"))
    spec["n_blocks"] = s.resolve("n_blocks", shapes["n_blocks"], opt.get("resnet_n_blocks"))
    if "kernel_size" in shapes:
        spec["kernel_size"] = s.resolve("kernel_size", shapes["kernel_size"], opt.get("resnet_kernel_size"))
    spec["first_kernel_size"] = s.resolve("first_kernel_size", shapes["first_kernel_size"],
                                          opt.get("resnet_initial_kernel_size"))
    spec["spectral"] = s.resolve("spectral", shapes["spectral"], opt_spectral)
    spec["norm"] = s.batch_like("norm", shapes["norm"], opt_norm)
    spec["norm_bias"] = s.resolve("norm_bias", shapes["norm_bias"] if spec["norm"] != "none" else None)
    spec["n_local_enhancers"] = s.resolve("n_local_enhancers", 0)
    spec = s.fill("generator", spec)
    interface = {"num_classes": info.num_classes, "use_instance": info.has_instance, "resolution": [h, w]}
    try:
        G = build_generator(spec, **interface)
    except ConfigError as e:
        raise ConversionError(f"cannot build the pix2pixhd generator for this checkpoint: {e}") from e
    hint = (f"read as SPADE's pix2pixhd with ngf {spec['ngf']}, {spec['n_downsample']} down-samplings, "
            f"{spec['n_blocks']} blocks, {channels} input channels ({info.name}); a shape difference means a wrong "
            f"--from, a wrong --preset or the instance map on/off (--set data.use_instance=...)")
    load_renamed(G, state, resnet_key_map(units, "global_generator", True), "generator checkpoint", hint)
    notes.append("SPADE's --netG pix2pixhd generator (semsynth 'pix2pixhd' as SPADE's code builds it)")
    return G, info, data, label_values, channels


# ------------------------------------------------------------------------------------------------------------
# The encoder and the discriminator (SPADE's; SC-GAN's CelebA models use the same two)


def map_encoder(state: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """``layer{i}.0.*`` -> ``layers.{i-1}.0.*``; ``fc_mu``, ``fc_var`` unchanged."""
    out = {}
    for key, value in state.items():
        m = re.match(r"^layer(\d+)\.(.*)$", key)
        out[f"layers.{int(m.group(1)) - 1}.{m.group(2)}" if m else key] = value
    return legacy_spectral_to_parametrized(out)


def convert_encoder(state: Mapping[str, torch.Tensor], z_dim: int, s: Settings, family: str = "SPADE"
                    ) -> torch.nn.Module:
    """SPADE's ``ConvEncoder`` (``latest_net_E.pth``) -> semsynth ``conv`` encoder."""
    key = _first(state, "layer1.0.weight_orig", "layer1.0.weight")
    if key is None or "fc_mu.weight" not in state:
        raise ConversionError(f"--encoder: not a {family} ConvEncoder checkpoint (no layer1.0.weight_orig / "
                              f"fc_mu.weight; its first keys: {', '.join(list(state)[:3])})")
    layers = len({k.split(".")[0] for k in state if re.match(r"^layer\d+\.", k)})
    width, z = int(state[key].shape[0]), int(state["fc_mu.weight"].shape[0])
    if z != z_dim:
        raise ConversionError(f"--encoder: fc_mu.weight has shape {list(state['fc_mu.weight'].shape)}, a z of {z}, "
                              f"but the generator's fc takes z_dim {z_dim}: the two files are of different models")
    if layers != 6:
        raise ConversionError(f"--encoder: {layers} stride-2 layers; {family}'s encoder resizes every image to 256x256 "
                              f"and needs 6 (it was trained with crop_size < 256, which the official code cannot run)")
    spec: dict[str, Any] = {"name": "conv", "z_dim": z}
    for name, value in (("width", width), ("input_size", 256), ("spectral", key.endswith("_orig"))):
        spec[name] = s.resolve(name, value, sec="encoder")
    spec = s.fill("encoder", spec)
    try:
        E = build_encoder(spec)
    except ConfigError as e:
        raise ConversionError(f"cannot build the encoder for this checkpoint: {e}") from e
    load_strict(E, map_encoder(state), "encoder checkpoint",
                f"read as a {layers}-layer ConvEncoder of width {width}, z {z}; give {family}'s latest_net_E.pth")
    return E


def map_discriminator(state: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """``discriminator_{d}.model{j}.0.0.*`` (the conv in SPADE's (conv, norm) wrapper) -> ``...model{j}.0.*``."""
    out = {}
    for key, value in state.items():
        out[re.sub(r"^(discriminator_\d+\.model\d+)\.0\.0\.", r"\1.0.", key)] = value
    return legacy_spectral_to_parametrized(out)


def convert_discriminator(state: Mapping[str, torch.Tensor], info: DatasetInfo, channels: int, s: Settings,
                          family: str = "SPADE") -> torch.nn.Module:
    """SPADE's multi-scale PatchGAN (``latest_net_D.pth``) -> semsynth ``multiscale``."""
    key = _first(state, "discriminator_0.model0.0.weight")
    if key is None:
        raise ConversionError(f"--discriminator: not a {family} multi-scale discriminator checkpoint (no "
                              f"discriminator_0.model0.0.weight; its first keys: {', '.join(list(state)[:3])})")
    first = state[key]
    if int(first.shape[1]) != channels + 3:
        raise ConversionError(f"--discriminator: {key} has shape {list(first.shape)}, {first.shape[1]} input "
                              f"channels, but the generator reads {channels} (+ 3 for the image): the two files are "
                              f"of different models")
    scales = len({k.split(".")[0] for k in state if k.startswith("discriminator_")})
    layers = len({k.split(".")[1] for k in state if k.startswith("discriminator_0.model")}) - 1
    mid = "discriminator_0.model1.0.0."
    spec: dict[str, Any] = {"name": "multiscale"}
    for name, value in (("num_scales", scales), ("num_layers", layers), ("width", int(first.shape[0])),
                        ("spectral", mid + "weight_orig" in state), ("conv_bias", mid + "bias" in state)):
        spec[name] = s.resolve(name, value, sec="discriminator")
    spec = s.fill("discriminator", spec)
    if spec.get("name") != "multiscale":
        raise ConversionError(f"--discriminator: {family}'s discriminator is 'multiscale', not {spec['name']!r}")
    try:
        D = build_discriminator(spec, num_classes=info.num_classes, use_instance=info.has_instance)
    except ConfigError as e:
        raise ConversionError(f"cannot build the discriminator for this checkpoint: {e}") from e
    load_strict(D, map_discriminator(state), "discriminator checkpoint",
                f"read as {scales} x {layers}-layer PatchGAN of width {spec['width']} on {channels} label channels "
                f"(semsynth's multiscale D has spectral + instance norm, as norm_D spectralinstance)")
    return D


# ------------------------------------------------------------------------------------------------------------
# The converter


@register("spade")
def convert_spade(state: Mapping[str, torch.Tensor], opt: Mapping[str, Any], *,
                  encoder_state: Mapping[str, torch.Tensor] | None = None,
                  discriminator_state: Mapping[str, torch.Tensor] | None = None,
                  preset: str | None = None, overrides: list[str] | tuple[str, ...] = ()) -> Converted:
    if "head_0.norm_0.mlp_shared.0.weight" in state:
        arch = "spade"
    elif any(k.startswith("model.1.0.") for k in state):
        arch = "pix2pixhd"
    else:
        raise wrong_family(state, "spade", "a SPADE generator (no head_0.norm_0.mlp_shared.* tensors of --netG spade, "
                                           "no model.1.0.* of --netG pix2pixhd)")
    if opt.get("netG") not in (None, arch):
        raise ConversionError(f"opt.txt: netG is {opt['netG']!r}, but the checkpoint's keys are those of --netG {arch}")
    s = Settings((arch,), preset, overrides, f"SPADE --netG {arch}")
    notes: list[str] = []
    if arch == "spade":
        G, info, data, label_values, channels = _convert_spade_generator(state, opt, s, notes)
    else:
        G, info, data, label_values, channels = _convert_spade_pix2pixhd(state, opt, s, notes)
    E = None
    if encoder_state is not None:
        if not getattr(G, "use_vae", False):
            raise ConversionError("--encoder: this generator has no VAE (its fc is a conv on the label map) and takes "
                                  "no z; convert it without --encoder")
        E = convert_encoder(encoder_state, G.z_dim, s)
    D = convert_discriminator(discriminator_state, info, channels, s) if discriminator_state is not None else None
    return Converted(generator=G, info=info, encoder=E, discriminator=D, label_values=label_values, data=data,
                     sources=s.sources, notes=notes)

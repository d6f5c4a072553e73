"""CC-FPSE checkpoints (``xh-liu/CC-FPSE``): ``latest_net_G.pth`` (+ ``_E``, ``_D``) -> semsynth ``ccfpse`` generator,
``conv`` encoder and ``fpse`` discriminator.

The tensor shapes determine: ``ngf``, the number of input channels (classes + don't-care + instance edge), VAE or
not and ``z_dim``, the number of up-sampling layers (a 7th label-pyramid level means ``more``), the widths of the
kernel-prediction convs and of SPADE, spectral norm, the encoder's width and depth, the discriminator's width.
``opt.txt`` (or ``--preset`` / ``--set``) gives the dataset (how the channels split into classes, don't-care and
instance edge) and the image size; without any, the dataset is recognised from the channel count (151 ADE20K,
183/184 COCO-Stuff, 35/36 Cityscapes). The label conventions are SPADE's (docs/pretrained.md).

Official key -> semsynth key (generator), no value changed::

    labelenc{i}.0.{0,1}.*        label_pyramid.encode.{i-1}.{0,1}.*      (conv, norm; likewise labellat ->
                                                                           lateral, labeldec -> decode)
    <block>.norm_1 / norm_2      <block>.cc_0.norm / cc_1.norm
    <block>.gen_weights1 / 2     <block>.cc_0.kernels / cc_1.kernels
    <block>.conv_1 / conv_3      <block>.cc_0.pointwise / cc_1.pointwise
    <block>.gen_se_weights1 / 2  <block>.cc_0.attention / cc_1.attention
    <block>.norm_s / conv_s      <block>.shortcut_norm / shortcut_conv
    X.weight_orig, _u, _v        X.parametrizations.weight.original, .0._u, .0._v   (spectral norm)

``<block>.norm_0``, ``<block>.conv_0.norm_layer`` and ``<block>.conv_2.norm_layer`` are BatchNorms the official
block builds but never calls: their shapes are checked, then they are dropped (they still hold their initial
values; the official parameter count includes them).
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
    load_strict,
    register,
    resolve_setting,
)

BLOCKS = ("head_0", "G_middle_0", "G_middle_1", "up_0", "up_1", "up_2", "up_3")
# official sub-module of a CC block -> semsynth sub-module
BLOCK_PARTS = {"norm_1": "cc_0.norm", "gen_weights1": "cc_0.kernels", "conv_1": "cc_0.pointwise",
               "gen_se_weights1": "cc_0.attention", "norm_2": "cc_1.norm", "gen_weights2": "cc_1.kernels",
               "conv_3": "cc_1.pointwise", "gen_se_weights2": "cc_1.attention", "norm_s": "shortcut_norm",
               "conv_s": "shortcut_conv"}
# BatchNorms the official block builds and never calls: (official prefix inside the block, width: "in" or "mid")
UNUSED = (("norm_0.", "mid"), ("conv_0.norm_layer.", "in"), ("conv_2.norm_layer.", "mid"))
PYRAMID = {"labelenc": "encode", "labellat": "lateral", "labeldec": "decode"}

# official dataset_mode -> (semsynth dataset, label channels without instance edge, default test-time data options)
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


# ------------------------------------------------------------------------------------------------------------
# What the generator's tensor shapes say


def _first(state: Mapping[str, torch.Tensor], *keys: str) -> str | None:
    return next((k for k in keys if k in state), None)


def check_family(state: Mapping[str, torch.Tensor]) -> None:
    """Refuse a generator checkpoint that is not CC-FPSE's ``CondConvGenerator``, naming what it looks like."""
    if any(k.startswith("labelenc1.") for k in state) and "head_0.gen_weights1.0.weight" in state:
        return
    keys = list(state)
    if any(".svg." in k or k.startswith("svg.") or "candidates" in k for k in keys):
        guess = " (it looks like an SC-GAN generator: --from scgan)"
    elif any(re.match(r"head_0\.norm_0\.mlp_shared\.", k) for k in keys):
        guess = " (it looks like a SPADE generator: --from spade)"
    elif any(k.startswith("model.") for k in keys):
        guess = " (it looks like a pix2pixHD generator: --from pix2pixhd)"
    else:
        guess = ""
    raise ConversionError(f"the generator checkpoint is not a CC-FPSE CondConvGenerator: it has no labelenc1.* / "
                          f"head_0.gen_weights1.* tensors (its first keys: {', '.join(keys[:3])}){guess}")


def infer_generator(state: Mapping[str, torch.Tensor]) -> dict[str, Any]:
    """The generator options the shapes fix, and the input channel count (``channels``)."""
    key = _first(state, "labelenc1.0.0.weight_orig", "labelenc1.0.0.weight", "labelenc1.0.weight_orig",
                 "labelenc1.0.weight")
    if key is None:
        raise ConversionError("generator checkpoint: the label pyramid's first conv (labelenc1.0.0.weight_orig) "
                              "is missing; give the latest_net_G.pth of CC-FPSE")
    w = state[key]
    if w.dim() != 4:
        raise ConversionError(f"generator checkpoint: {key} has shape {list(w.shape)}, expected a conv weight "
                              f"[ngf, channels, 3, 3]")
    ngf, channels = int(w.shape[0]), int(w.shape[1])
    if "labelenc1.0.1.running_mean" in state:
        label_norm = "batch-like"
    elif key.startswith("labelenc1.0.0."):
        label_norm = "instance"
    else:
        label_norm = "none"
    fc = state.get("fc.weight")
    if fc is None:
        raise ConversionError("generator checkpoint: fc.weight (the first layer) is missing")
    out: dict[str, Any] = {"ngf": ngf, "channels": channels, "spectral": key.endswith("_orig"),
                           "num_upsampling_layers": "more" if any(k.startswith("labelenc7.") for k in state)
                           else "normal", "label_norm": label_norm,
                           "norm": "batch-like" if "head_0.norm_1.running_mean" in state else None}
    if fc.dim() == 2:
        out["use_vae"], out["z_dim"] = True, int(fc.shape[1])
        cells, rem = divmod(int(fc.shape[0]), 16 * ngf)
        if rem:
            raise ConversionError(f"generator checkpoint: fc.weight has shape {list(fc.shape)}; its {fc.shape[0]} "
                                  f"outputs are not a multiple of 16 * ngf = {16 * ngf}")
        out["start_cells"] = cells
    else:
        out["use_vae"] = False
    for name, k in (("hidden", "head_0.gen_weights1.0.weight"), ("spade_hidden", "up_0.norm_s.mlp_shared.0.weight")):
        if k not in state:
            raise ConversionError(f"generator checkpoint: {k} is missing; give the latest_net_G.pth of CC-FPSE")
        out[name] = int(state[k].shape[0])
    return out


# ------------------------------------------------------------------------------------------------------------
# Key mapping


def generator_key(key: str) -> str | None:
    """The semsynth key of an official generator key, or ``None`` for a never-called BatchNorm's tensor."""
    m = re.match(r"^(labelenc|labellat|labeldec)(\d+)\.0\.(.*)$", key)
    if m:
        part, i, rest = PYRAMID[m.group(1)], int(m.group(2)) - 1, m.group(3)
        if not re.match(r"^[01]\.", rest):  # no norm: the conv sits directly at index 0
            rest = "0." + rest
        return f"label_pyramid.{part}.{i}.{rest}"
    m = re.match(r"^(" + "|".join(BLOCKS) + r")\.([A-Za-z_0-9]+?)\.(.*)$", key)
    if m:
        block, sub, rest = m.groups()
        if sub in ("norm_0", "conv_0", "conv_2") and (sub == "norm_0" or rest.startswith("norm_layer.")):
            return None
        if sub in BLOCK_PARTS:
            return f"{block}.{BLOCK_PARTS[sub]}.{rest}"
    return key


def spectral_key(key: str) -> str:
    """Legacy spectral-norm names (``X.weight_orig``, ``_u``, ``_v``) -> those of the parametrisation."""
    for old, new in ((".weight_orig", ".parametrizations.weight.original"), (".weight_u", ".parametrizations.weight.0._u"),
                     (".weight_v", ".parametrizations.weight.0._v")):
        if key.endswith(old):
            return key[: -len(old)] + new
    return key


Mapped = tuple[dict[str, torch.Tensor], dict[str, str]]  # semsynth key -> tensor, semsynth key -> official key


def _mapped(pairs: list[tuple[str, str, torch.Tensor]]) -> Mapped:
    tensors, origin = {}, {}
    for official, new, value in pairs:
        new = spectral_key(new)
        tensors[new], origin[new] = value, official
    return tensors, origin


def map_generator(state: Mapping[str, torch.Tensor], G: torch.nn.Module) -> tuple[Mapped, int]:
    """Official generator state -> semsynth keys (and where each came from); checks and drops the never-called
    BatchNorms (returns how many tensors were dropped)."""
    pairs = []
    dropped = 0
    for key, value in state.items():
        new = generator_key(key)
        if new is not None:
            pairs.append((key, new, value))
            continue
        block_name, rest = key.split(".", 1)
        block = getattr(G, block_name)
        widths = {"in": block.cc_0.pointwise.in_channels, "mid": block.cc_0.pointwise.out_channels}
        which = next(w for p, w in UNUSED if rest.startswith(p))
        expected = [] if rest.endswith("num_batches_tracked") else [widths[which]]
        if list(value.shape) != expected:
            raise ConversionError(f"generator checkpoint: tensor {key!r} has shape {list(value.shape)} but this "
                                  f"never-called BatchNorm of {block_name} should be {expected}; the checkpoint "
                                  f"does not fit the shapes of the rest of the generator")
        dropped += 1
    return _mapped(pairs), dropped


def map_encoder(state: Mapping[str, torch.Tensor]) -> Mapped:
    """``layer{i}.0.*`` -> ``layers.{i-1}.0.*``; ``fc_mu``, ``fc_var`` unchanged."""
    pairs = []
    for key, value in state.items():
        m = re.match(r"^layer(\d+)\.(.*)$", key)
        pairs.append((key, f"layers.{int(m.group(1)) - 1}.{m.group(2)}" if m else key, value))
    return _mapped(pairs)


def map_discriminator(state: Mapping[str, torch.Tensor]) -> Mapped:
    """``{enc,lat,final}{i}.0.0.*`` (conv inside the official norm wrapper) -> ``{enc,lat,final}{i}.0.*``."""
    return _mapped([(key, re.sub(r"^((?:enc|lat|final)\d)\.0\.0\.", r"\1.0.", key), value)
                    for key, value in state.items()])


def official_key(key: str) -> str:
    """The official name of a semsynth key (generator, encoder or discriminator), for messages about tensors the
    checkpoint lacks."""
    for old, new in ((".parametrizations.weight.original", ".weight_orig"), (".parametrizations.weight.0._u", ".weight_u"),
                     (".parametrizations.weight.0._v", ".weight_v")):
        if key.endswith(old):
            key = key[: -len(old)] + new
    m = re.match(r"^label_pyramid\.(encode|lateral|decode)\.(\d+)\.(.*)$", key)
    if m:
        part = {v: k for k, v in PYRAMID.items()}[m.group(1)]
        return f"{part}{int(m.group(2)) + 1}.0.{m.group(3)}"
    for official, ours in BLOCK_PARTS.items():
        m = re.match(r"^(" + "|".join(BLOCKS) + r")\." + re.escape(ours) + r"\.(.*)$", key)
        if m:
            return f"{m.group(1)}.{official}.{m.group(2)}"
    m = re.match(r"^layers\.(\d+)\.(.*)$", key)
    if m:
        return f"layer{int(m.group(1)) + 1}.{m.group(2)}"
    return re.sub(r"^((?:enc|lat|final)\d)\.0\.", r"\1.0.0.", key)


def load_mapped(module: torch.nn.Module, mapped: Mapped, source: str, hint: str) -> None:
    """:func:`load_strict` with messages that name the official key as well."""
    tensors, origin = mapped
    names = {k: official_key(k) for k in module.state_dict()} | origin
    load_strict(module, tensors, source, hint, official_names=names)


# ------------------------------------------------------------------------------------------------------------
# Settings from opt.txt, --preset and --set


def _sections(preset: str | None, overrides: list[str]) -> tuple[dict[str, Any], dict[str, Any]]:
    """(the preset's raw sections, the --set values as sections)."""
    raw: dict[str, Any] = {}
    if preset:
        raw = read_yaml(find_config(preset))
        gname = (raw.get("generator") or {}).get("name")
        if gname != "ccfpse":
            raise ConversionError(f"--preset {preset}: a preset of generator {gname!r}, not of CC-FPSE's 'ccfpse'; "
                                  f"use a ccfpse-* preset (semsynth models lists them) or none")
    sets = apply_overrides({}, overrides)
    for sec in sets:
        if sec not in SETTABLE:
            raise ConfigError(f"--set {sec}.*: convert takes only {', '.join(s + '.KEY' for s in SETTABLE)} "
                              f"settings")
    return raw, sets


def _get(sections: Mapping[str, Any], sec: str, key: str) -> Any:
    part = sections.get(sec)
    return part.get(key) if isinstance(part, Mapping) else None


def _batch_like(name: str, shape_kind: str | None, given: list[tuple[str, Any]], sources: dict[str, str]) -> Any:
    """A norm option where the shapes say only "batch norm" (``syncbatch`` and ``batch`` have the same tensors)."""
    value = resolve_setting(name, given, sources)
    if shape_kind is None:
        return value
    if shape_kind == "batch-like":
        if value is None:
            sources[name] = "tensor shapes (batch-norm statistics)"
            return "syncbatch"
        if value not in ("syncbatch", "batch"):
            raise ConversionError(f"{name}: {sources[name]} says {value!r} but the checkpoint holds batch-norm "
                                  f"statistics there (syncbatch or batch)")
        return value
    return resolve_setting(name, [("tensor shapes", shape_kind), *given], sources)


def _opt_dataset(opt: Mapping[str, Any]) -> str | None:
    mode = opt.get("dataset_mode")
    if mode is None:
        return None
    if mode not in DATASETS and mode != "custom":
        raise ConversionError(f"opt.txt: dataset_mode {mode!r} is not one CC-FPSE ships (ade20k, coco, cityscapes, "
                              f"custom)")
    return mode


# ------------------------------------------------------------------------------------------------------------
# The converter


@register("ccfpse")
def convert_ccfpse(state: Mapping[str, torch.Tensor], opt: Mapping[str, Any], *,
                   encoder_state: Mapping[str, torch.Tensor] | None = None,
                   discriminator_state: Mapping[str, torch.Tensor] | None = None,
                   preset: str | None = None, overrides: list[str] | tuple[str, ...] = ()) -> Converted:
    check_family(state)
    if opt.get("netG") not in (None, "condconv"):
        raise ConversionError(f"opt.txt: netG is {opt['netG']!r}, not CC-FPSE's 'condconv'")
    raw, sets = _sections(preset, list(overrides))
    sources: dict[str, str] = {}
    notes: list[str] = []
    shapes = infer_generator(state)
    src_preset = f"--preset {preset}"

    def setting(name: str, shape_value: Any = None, opt_value: Any = None, sec: str = "generator") -> Any:
        cands = [("tensor shapes", shape_value), ("opt.txt", opt_value), (src_preset, _get(raw, sec, name)),
                 ("--set", _get(sets, sec, name))]
        return resolve_setting(name if sec == "generator" else f"{sec}.{name}", cands, sources)

    # -- the dataset: how the input channels split ------------------------------------------------------------
    channels = shapes["channels"]
    opt_mode = _opt_dataset(opt)
    preset_mode = BY_SEMSYNTH_NAME.get(_get(raw, "data", "name")) if _get(raw, "data", "name") else None
    set_name = _get(sets, "data", "name")
    set_mode = (BY_SEMSYNTH_NAME.get(set_name, "custom" if set_name == "custom" else set_name)
                if set_name else None)
    mode = resolve_setting("dataset", [("opt.txt", opt_mode), (src_preset, preset_mode), ("--set", set_mode)],
                           sources)
    if mode is None:
        mode = CHANNEL_GUESS.get(channels)
        if mode is None:
            raise ConversionError(f"the generator reads {channels} input channels, which is none of CC-FPSE's "
                                  f"datasets (ADE20K 151, COCO-Stuff 183/184, Cityscapes 35/36): give the opt.txt "
                                  f"of the checkpoint (--opt), or --set data.name=custom --set data.num_classes=N")
        sources["dataset"] = f"tensor shapes ({channels} input channels)"
        notes.append(f"no opt.txt: the dataset ({DATASETS[mode][0]}) was recognised from the {channels} input "
                     f"channels; give --opt opt.txt to be sure")
    if mode not in DATASETS and mode != "custom":
        raise ConversionError(f"--set data.name={set_name}: CC-FPSE checkpoints are for ade20k, coco-stuff, "
                              f"cityscapes or custom")
    if mode == "custom":
        label_nc = setting("num_classes", None, opt.get("label_nc"), sec="data")
        if label_nc is None:
            raise ConversionError("a custom-dataset checkpoint needs its number of classes: --opt opt.txt, or "
                                  "--set data.num_classes=N (real classes, without don't-care)")
        dontcare = bool(opt.get("contain_dontcare_label")) if "contain_dontcare_label" in opt else \
            _get(sets, "data", "dontcare") is not None or _get(raw, "data", "dontcare") is not None
        label_channels = int(label_nc) + int(dontcare)
    else:
        label_channels = DATASETS[mode][1]
        if opt.get("label_nc") is not None:
            opt_channels = int(opt["label_nc"]) + int(bool(opt.get("contain_dontcare_label")))
            if opt_channels != label_channels:
                raise ConversionError(f"opt.txt: label_nc {opt['label_nc']} (+ don't-care "
                                      f"{bool(opt.get('contain_dontcare_label'))}) does not match {mode}'s "
                                      f"{label_channels} label channels")
    extra = channels - label_channels
    if extra not in (0, 1):
        raise ConversionError(f"the generator reads {channels} input channels (labelenc1 weight), but {mode} has "
                              f"{label_channels} label channels (+ 1 with instance edges): wrong --from, "
                              f"--preset or dataset")
    use_instance = setting("use_instance", extra == 1, None if "no_instance" not in opt else not opt["no_instance"],
                           sec="data")
    if mode == "ade20k" and use_instance:
        raise ConversionError("ADE20K has no instance maps, but the generator reads an instance-edge channel")

    # -- the data spec (test-time preprocessing of the official test.py) and the image size ---------------------
    if mode == "custom":
        data: dict[str, Any] = {"name": "custom", "root": "datasets/custom", "num_classes": int(label_nc),
                                "dontcare": 255 if dontcare else None, "preprocess": "resize_and_crop",
                                "load_size": 256, "crop_size": 256}
    else:
        data = {"name": DATASETS[mode][0], **DATASETS[mode][2]}
    if mode in ("coco", "cityscapes"):
        data["use_instance"] = bool(use_instance)
    if _get(raw, "data", "root") is not None:
        data["root"] = _get(raw, "data", "root")
    for key in ("crop_size", "aspect_ratio"):
        value = setting(key, None, opt.get(key), sec="data")
        if value is not None:
            data[key] = value
    data["load_size"] = data["crop_size"]  # the official test.py: load_size = crop_size (a resize, no crop)
    data.update({k: v for k, v in (sets.get("data") or {}).items() if k != "name"})
    data["flip"] = False
    if mode == "ade20k" and data.get("label_convention") != "scgan":
        raise ConversionError("data.label_convention: CC-FPSE's ADE20K models read the labels unshifted "
                              "(label_convention scgan: raw 0 = channel 0), as the official loader did; keep it")
    try:
        if mode == "custom":
            names = [f"class-{i}" for i in range(int(label_nc))] + (["unlabeled"] if dontcare else [])
            h_w = (round(int(data["crop_size"]) / float(data.get("aspect_ratio", 1.0))), int(data["crop_size"]))
            info = DatasetInfo(name="custom", num_classes=label_channels, class_names=names,
                               dontcare_index=int(label_nc) if dontcare else None, has_instance=bool(use_instance),
                               resolution=h_w)
            label_values = {str(v): v for v in range(int(label_nc))} | ({"255": int(label_nc)} if dontcare else {})
        else:
            info = dataset_info(data)
            label_values = _label_values(mode)
    except (ConfigError, ValueError, TypeError) as e:
        raise ConversionError(f"the data settings of this conversion are not valid: {e}") from e
    h, w = (int(x) for x in info.resolution)

    # -- the generator --------------------------------------------------------------------------------------
    nul = "more" if opt.get("dataset_mode") == "cityscapes" else ("normal" if opt.get("dataset_mode") else None)
    spec: dict[str, Any] = {"name": "ccfpse"}
    for key in ("ngf", "hidden", "spade_hidden", "spectral"):
        spec[key] = setting(key, shapes[key], opt.get(key) if key == "ngf" else None)
    spec["num_upsampling_layers"] = setting("num_upsampling_layers", shapes["num_upsampling_layers"], nul)
    spec["use_vae"] = setting("use_vae", shapes["use_vae"], opt.get("use_vae"))
    if shapes["use_vae"]:
        spec["z_dim"] = setting("z_dim", shapes["z_dim"], opt.get("z_dim"))
    norm_g = opt.get("norm_G")
    opt_label_norm = None
    if isinstance(norm_g, str) and norm_g.startswith("spectral"):
        sub = norm_g[len("spectral"):]
        opt_label_norm = {"sync_batch": "syncbatch", "batch": "batch", "instance": "instance", "": "none",
                          "none": "none"}.get(sub)
    spec["label_norm"] = _batch_like("label_norm", shapes["label_norm"],
                                     [("opt.txt", opt_label_norm), (src_preset, _get(raw, "generator", "label_norm")),
                                      ("--set", _get(sets, "generator", "label_norm"))], sources)
    spec["norm"] = _batch_like("norm", shapes["norm"], [(src_preset, _get(raw, "generator", "norm")),
                                                        ("--set", _get(sets, "generator", "norm"))], sources)
    for part in (raw.get("generator") or {}, sets.get("generator") or {}):
        for k, v in part.items():
            if k not in spec:
                spec[k] = v
    for k in [k for k, v in spec.items() if v is None]:
        del spec[k]
    factor = 64 if spec["num_upsampling_layers"] == "more" else 32
    if shapes["use_vae"] and (h // factor) * (w // factor) != shapes["start_cells"]:
        raise ConversionError(f"generator checkpoint: fc.weight has shape {list(state['fc.weight'].shape)}, a first "
                              f"map of {shapes['start_cells']} cells (16 * ngf = {16 * shapes['ngf']} channels "
                              f"each), but the image size {h}x{w} gives {(h // factor) * (w // factor)} at 1/"
                              f"{factor}: give the training image size (--opt opt.txt, or --set data.crop_size=... "
                              f"--set data.aspect_ratio=...)")
    interface = {"num_classes": info.num_classes, "use_instance": info.has_instance, "resolution": [h, w]}
    try:
        G = build_generator(spec, **interface)
    except ConfigError as e:
        raise ConversionError(f"cannot build the CC-FPSE generator for this checkpoint: {e}") from e
    hint = (f"read as CC-FPSE with ngf {spec['ngf']}, {channels} input channels ({info.name}"
            f"{', instance edge' if info.has_instance else ''}), {'VAE' if spec['use_vae'] else 'no VAE'}, "
            f"{spec['num_upsampling_layers']} layout; a shape difference means a wrong --from, a wrong --preset or "
            f"the instance map on/off (--set data.use_instance=...)")
    mapped, dropped = map_generator(state, G)
    load_mapped(G, mapped, "generator checkpoint", hint)
    if dropped:
        notes.append(f"dropped {dropped} tensors of the {dropped // 5} BatchNorms the official CC block builds but "
                     f"never calls (norm_0, conv_0.norm_layer, conv_2.norm_layer; initial values, never trained)")

    # -- the encoder ------------------------------------------------------------------------------------------
    E = None
    if encoder_state is not None:
        if not spec["use_vae"]:
            raise ConversionError("--encoder: this generator has no VAE (its fc is a conv on the label map) and takes "
                                  "no z; convert it without --encoder")
        E = _convert_encoder(encoder_state, spec["z_dim"], raw, sets, sources, src_preset)
    elif spec["use_vae"]:
        notes.append("the generator takes z (VAE); without --encoder it draws z ~ N(0, I). The official test.py "
                     "encodes the real image with netE: give --encoder latest_net_E.pth to reproduce it")

    # -- the discriminator ------------------------------------------------------------------------------------
    D = None
    if discriminator_state is not None:
        D = _convert_discriminator(discriminator_state, info, channels, raw, sets, sources, src_preset)

    if mode == "ade20k":
        notes.append("ADE20K labels are read unshifted (raw 0 'other' = channel 0, class k = channel k), as the "
                     "released models saw them: the official loader's shift to don't-care is a no-op")
    return Converted(generator=G, info=info, encoder=E, discriminator=D, label_values=label_values, data=data,
                     sources=sources, notes=notes)


def _label_values(mode: str) -> dict[str, int]:
    """Raw label-file value -> channel, as the official loader maps them (SPADE's conventions)."""
    if mode == "ade20k":
        return {str(v): v for v in range(151)}
    if mode == "coco":
        return {str(v): v for v in range(182)} | {"255": 182}
    return {str(v): v for v in range(35)}


def _convert_encoder(state: Mapping[str, torch.Tensor], z_dim: int, raw: Mapping[str, Any],
                     sets: Mapping[str, Any], sources: dict[str, str], src_preset: str) -> torch.nn.Module:
    key = _first(state, "layer1.0.weight_orig", "layer1.0.weight")
    if key is None or "fc_mu.weight" not in state:
        raise ConversionError(f"--encoder: not a CC-FPSE/SPADE ConvEncoder checkpoint (no layer1.0.weight_orig / "
                              f"fc_mu.weight; its first keys: {', '.join(list(state)[:3])})")
    layers = len({k.split(".")[0] for k in state if re.match(r"^layer\d+\.", k)})
    width, z = int(state[key].shape[0]), int(state["fc_mu.weight"].shape[0])
    if z != z_dim:
        raise ConversionError(f"--encoder: fc_mu.weight has shape {list(state['fc_mu.weight'].shape)}, a z of {z}, but "
                              f"the generator's fc takes z_dim {z_dim}: the two files are of different models")
    spec = {"name": "conv", "z_dim": z}
    for name, value in (("width", width), ("input_size", 4 * 2**layers), ("spectral", key.endswith("_orig"))):
        cands = [("tensor shapes", value), (src_preset, _get(raw, "encoder", name)), ("--set", _get(sets, "encoder", name))]
        spec[name] = resolve_setting(f"encoder.{name}", cands, sources)
    for part in (raw.get("encoder") or {}, sets.get("encoder") or {}):
        for k, v in part.items():
            spec.setdefault(k, v)
    E = build_encoder(spec)
    load_mapped(E, map_encoder(state), "encoder checkpoint",
                f"read as a {layers}-layer ConvEncoder of width {width}, z {z}; give CC-FPSE's latest_net_E.pth")
    return E


def _convert_discriminator(state: Mapping[str, torch.Tensor], info: DatasetInfo, channels: int,
                           raw: Mapping[str, Any], sets: Mapping[str, Any], sources: dict[str, str],
                           src_preset: str) -> torch.nn.Module:
    key = _first(state, "enc1.0.0.weight_orig", "enc1.0.0.weight")
    if key is None or "embedding.weight" not in state:
        raise ConversionError(f"--discriminator: not a CC-FPSE FPSE discriminator checkpoint (no enc1.0.0.weight_orig "
                              f"/ embedding.weight; its first keys: {', '.join(list(state)[:3])})")
    emb = state["embedding.weight"]
    if int(emb.shape[1]) != channels:
        raise ConversionError(f"--discriminator: embedding.weight has shape {list(emb.shape)}, {emb.shape[1]} label "
                              f"channels, but the generator reads {channels}: the two files are of different models")
    spec = {"name": "fpse"}
    for name, value in (("width", int(state[key].shape[0])), ("spectral", key.endswith("_orig"))):
        cands = [("tensor shapes", value), (src_preset, _get(raw, "discriminator", name)),
                 ("--set", _get(sets, "discriminator", name))]
        spec[name] = resolve_setting(f"discriminator.{name}", cands, sources)
    for part in (raw.get("discriminator") or {}, sets.get("discriminator") or {}):
        for k, v in part.items():
            spec.setdefault(k, v)
    if spec.get("name") != "fpse":
        raise ConversionError(f"--discriminator: CC-FPSE's discriminator is 'fpse', not {spec['name']!r}")
    D = build_discriminator(spec, num_classes=info.num_classes, use_instance=info.has_instance)
    load_mapped(D, map_discriminator(state), "discriminator checkpoint",
                f"read as FPSE of width {spec['width']} on {channels} label channels")
    return D

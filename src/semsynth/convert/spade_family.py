"""The SPADE family's conventions, shared by the converters of SPADE (``spade.py``), CC-FPSE (``ccfpse.py``),
SC-GAN (``scgan.py``) and, for recognition and settings, OASIS (``oasis.py``) and pix2pixHD (``pix2pixhd.py``).

CC-FPSE and SC-GAN are forks of SPADE's code, and OASIS and pix2pixHD share its habits, so their checkpoints are
read the same way:

1. **Which family wrote a checkpoint**, from its generator's keys (:func:`looks_like`), and the message that names
   it when ``--from`` is wrong (:func:`wrong_family`, :func:`family_hint`).
2. **Settings**: every value a conversion needs comes from the tensor shapes, ``opt.txt``, ``--preset`` and
   ``--set``; the sources that give one must agree, and each value records where it came from (:class:`Settings`).
3. **The dataset**: SPADE's ``dataset_mode`` s with their channel conventions and test-time preprocessing,
   recognised from the generator's input channel count when no option names one (:func:`spade_dataset`,
   :func:`label_values_of`).
4. **Key names**: the official (legacy) spectral-norm names -> those of the parametrisation, keeping the official
   key of every tensor for the messages (:func:`renamed`, :func:`load_mapped`).
5. **SPADE's encoder and discriminators**: the ``ConvEncoder`` (:func:`convert_encoder`), the multi-scale PatchGAN
   (:func:`convert_discriminator`) and the FPSE discriminator of CC-FPSE and SC-GAN (:func:`convert_fpse`).

Small helpers for every family's generator sit between 1 and 2: the VAE's linear first layer and the image size it
fixes (:func:`vae_first_layer`, :func:`check_first_map`), building a network with the errors of a conversion
(:func:`build_checked`).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping
from typing import Any

import torch

from ..config import apply_overrides, dataset_info, find_config, read_yaml
from ..data import DatasetInfo
from ..errors import ConfigError
from ..models import build_discriminator, build_encoder
from . import ConversionError, legacy_spectral_key, load_strict, parametrized_key, resolve_setting

SHAPES = "tensor shapes"  # the name of the first source of every setting
SETTABLE = ("data", "generator", "encoder", "discriminator")  # the sections --set may name

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


def with_article(name: str) -> str:
    """``a SPADE``, ``an SC-GAN``, ``an OASIS`` (as the names are spoken)."""
    return f"{'an' if name.startswith(('SC-', 'OASIS')) else 'a'} {name}"


# ------------------------------------------------------------------------------------------------------------
# 1. Which family wrote a generator checkpoint


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


def family_hint(state: Mapping[str, torch.Tensor], expected: str) -> str:
    """`` (it looks like a <family> checkpoint: --from <family>)`` when the keys are another family's, else ``""``."""
    guess = looks_like(state)
    return f" (it looks like a {guess} checkpoint: --from {guess})" if guess and guess != expected else ""


def wrong_family(state: Mapping[str, torch.Tensor], expected: str, what: str) -> ConversionError:
    """The error for a generator checkpoint that is not ``what`` (``--from expected``), naming what it looks like."""
    keys = list(state)
    return ConversionError(f"the generator checkpoint is not {what} (its first keys: {', '.join(keys[:3])})"
                           f"{family_hint(state, expected)}")


# ------------------------------------------------------------------------------------------------------------
# Reading the tensor shapes, building the semsynth networks


def section_value(sections: Mapping[str, Any], sec: str, key: str) -> Any:
    """``sections[sec][key]``, or ``None`` where either is missing."""
    part = sections.get(sec)
    return part.get(key) if isinstance(part, Mapping) else None


def first_key(state: Mapping[str, torch.Tensor], *keys: str) -> str | None:
    """The first of ``keys`` that ``state`` has."""
    return next((k for k in keys if k in state), None)


def weight_key(state: Mapping[str, torch.Tensor], prefix: str) -> str | None:
    """The key of a conv's weight: ``prefix + weight_orig`` (spectral norm) or ``prefix + weight``."""
    return first_key(state, prefix + "weight_orig", prefix + "weight")


def vae_first_layer(fc: torch.Tensor, width: int, width_name: str) -> tuple[int, int] | None:
    """The generator's first layer ``fc.weight``: a linear layer from z (VAE generators; ``[width * cells, z_dim]``)
    -> ``(z_dim, cells of the first map)``, or ``None`` for a conv on the label map. ``width``: the first map's
    channels, named ``width_name`` in the message (``16 * ngf``)."""
    if fc.dim() != 2:
        return None
    cells, rem = divmod(int(fc.shape[0]), width)
    if rem:
        raise ConversionError(f"generator checkpoint: fc.weight has shape {list(fc.shape)}; its {fc.shape[0]} "
                              f"outputs are not a multiple of {width_name} = {width}")
    return int(fc.shape[1]), cells


def check_first_map(fc: torch.Tensor, cells: int, width_text: str, size: tuple[int, int], factor: int,
                    layout: str | None = None) -> None:
    """A VAE generator's linear first layer fixes the image size: its ``cells`` must be the first map's, ``size``
    divided by ``factor`` (the layout's)."""
    h, w = size
    if (h // factor) * (w // factor) != cells or h % factor or w % factor:
        raise ConversionError(f"generator checkpoint: fc.weight has shape {list(fc.shape)}, a first map of {cells} "
                              f"cells ({width_text} channels each), but the image size {h}x{w} gives "
                              f"{(h // factor) * (w // factor)} at 1/{factor}{f' ({layout})' if layout else ''}: give "
                              f"the training image size (--opt opt.txt, or --set data.crop_size=... --set "
                              f"data.aspect_ratio=...)")


def build_checked(build: Callable[..., torch.nn.Module], spec: Mapping[str, Any], what: str, **interface: Any
                  ) -> torch.nn.Module:
    """``build(spec, **interface)`` (``build_generator`` / ``build_encoder`` / ``build_discriminator``), a config the
    checkpoint implies but semsynth refuses reported as a :class:`ConversionError` about ``what``."""
    try:
        return build(dict(spec), **interface)
    except ConfigError as e:
        raise ConversionError(f"cannot build the {what} for this checkpoint: {e}") from e


# ------------------------------------------------------------------------------------------------------------
# 2. Settings from the tensor shapes, opt.txt, --preset and --set


class Settings:
    """Every value a conversion needs, from up to four sources that must agree (``resolve_setting``): the tensor
    shapes, the options of ``opt.txt``, the preset (its raw sections, ``raw``) and ``--set`` (``sets``); where each
    value came from is recorded in ``sources``."""

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
        """What the preset and --set say of ``sec.key``, as ``resolve_setting`` candidates."""
        return [(self.src_preset, section_value(self.raw, sec, key)), ("--set", section_value(self.sets, sec, key))]

    def resolve(self, key: str, shape: Any = None, opt: Any = None, sec: str = "generator") -> Any:
        name = key if sec == "generator" else f"{sec}.{key}"
        return resolve_setting(name, [(SHAPES, shape), ("opt.txt", opt), *self.given(sec, key)], self.sources)

    def batch_like(self, key: str, shape_kind: str, opt: Any = None, sec: str = "generator") -> Any:
        """A norm option where the shapes tell only "batch statistics" (``shape_kind`` ``batch-like``: syncbatch or
        batch, the same tensors) or "no statistics" (instance, or none)."""
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


# ------------------------------------------------------------------------------------------------------------
# 3. The dataset: how the input channels split, the data spec, the label values (SPADE's conventions)


def label_values_of(mode: str) -> dict[str, int]:
    """Raw label-file value -> channel, as SPADE's loaders map them."""
    if mode == "ade20k":
        return {str(v): v for v in range(151)}
    if mode == "coco":
        return {str(v): v for v in range(182)} | {"255": 182}
    return {str(v): v for v in range(35)}


def dataset_from_channels(channels: int, s: Settings, notes: list[str], family: str,
                          guess: Mapping[int, str] = CHANNEL_GUESS,
                          datasets: Mapping[str, tuple[Any, ...]] = DATASETS,
                          known: str = "ADE20K 151, COCO-Stuff 183/184, Cityscapes 35/36",
                          fix: str = "--set data.name=custom --set data.num_classes=N") -> str:
    """The official dataset_mode of a generator that reads ``channels`` inputs, when no option names it: one of the
    family's datasets (``guess``: channel count -> dataset_mode; ``known`` lists them for the message), with a note
    that says so."""
    mode = guess.get(channels)
    if mode is None:
        raise ConversionError(f"the generator reads {channels} input channels, which is none of {family}'s datasets "
                              f"({known}): give the opt.txt of the checkpoint (--opt), or {fix}")
    s.sources["dataset"] = f"{SHAPES} ({channels} input channels)"
    notes.append(f"no opt.txt: the dataset ({datasets[mode][0]}) was recognised from the {channels} input channels; "
                 f"give --opt opt.txt to be sure")
    return mode


def has_instance_edge(channels: int, label_channels: int, name: str, label_nc: Any = None,
                      dontcare: Any = None) -> bool:
    """Whether a generator reading ``channels`` inputs takes dataset ``name`` 's ``label_channels`` plus an
    instance-edge channel; ``opt.txt`` 's ``label_nc`` (+ ``contain_dontcare_label``), when given, must agree."""
    if label_nc is not None and int(label_nc) + int(bool(dontcare)) != label_channels:
        raise ConversionError(f"opt.txt: label_nc {label_nc} (+ don't-care {bool(dontcare)}) does not match "
                              f"{name}'s {label_channels} label channels")
    if channels - label_channels not in (0, 1):
        raise ConversionError(f"the generator reads {channels} input channels, but {name} has {label_channels} label "
                              f"channels (+ 1 with instance edges): wrong --from, --preset or dataset")
    return channels == label_channels + 1


def official_test_data(data: dict[str, Any], mode: str, use_instance: bool, opt: Mapping[str, Any], s: Settings,
                       family: str) -> dict[str, Any]:
    """The data spec with which ``evaluate`` reads the dataset as the official test.py did: ``data`` (the dataset's
    defaults) with the instance maps on or off, the preset's root, the image size of ``opt.txt`` / the preset /
    ``--set`` (which must agree), then the other ``--set data.*`` options; resized to the crop size, no flip."""
    if mode in ("coco", "cityscapes"):
        data["use_instance"] = bool(use_instance)
    if section_value(s.raw, "data", "root") is not None:
        data["root"] = section_value(s.raw, "data", "root")
    for key in ("crop_size", "aspect_ratio"):
        value = s.resolve(key, None, opt.get(key), sec="data")
        if value is not None:
            data[key] = value
    data["load_size"] = data["crop_size"]  # the official test.py: resized to the crop size, no random crop
    data.update({k: v for k, v in (s.sets.get("data") or {}).items() if k != "name"})
    data["flip"] = False
    if mode == "ade20k" and data.get("label_convention") != "scgan":
        raise ConversionError(f"data.label_convention: {family}'s ADE20K models read the labels unshifted "
                              f"(label_convention scgan: raw 0 = channel 0, class k = channel k), as the official "
                              f"loader did; keep it")
    return data


def dataset_info_checked(data: Mapping[str, Any]) -> DatasetInfo:
    """The channel convention of a data spec (``config.dataset_info``), a spec it refuses reported as a
    :class:`ConversionError`."""
    try:
        return dataset_info(dict(data))
    except (ConfigError, ValueError, TypeError) as e:
        raise ConversionError(f"the data settings of this conversion are not valid: {e}") from e


def spade_dataset(channels: int, opt: Mapping[str, Any], s: Settings, notes: list[str], family: str = "SPADE",
                  also: Mapping[str, str] | None = None) -> tuple[str, dict[str, Any], DatasetInfo, dict[str, int]]:
    """(official dataset_mode, data spec, DatasetInfo, label values) for a generator reading ``channels`` inputs.

    The dataset comes from ``opt.txt`` (``dataset_mode``), the preset or ``--set data.name``, which must agree, or
    else from the channel count (``CHANNEL_GUESS``). ``also``: the family's other dataset_modes and the mode each is
    read as (SPADE's ``facades``: a custom dataset). The test-time data spec is that of the official test.py:
    resized to the crop size, no flip."""
    also = dict(also or {})
    mode_opt = opt.get("dataset_mode")
    mode_opt = also.get(mode_opt, mode_opt)
    if mode_opt is not None and mode_opt not in DATASETS and mode_opt != "custom":
        raise ConversionError(f"opt.txt: dataset_mode {opt.get('dataset_mode')!r} is not one {family} ships "
                              f"({', '.join([*DATASETS, *also, 'custom'])})")
    pre = section_value(s.raw, "data", "name")
    setn = section_value(s.sets, "data", "name")
    mode = resolve_setting("dataset", [("opt.txt", mode_opt),
                                       (s.src_preset, BY_SEMSYNTH_NAME.get(pre, pre) if pre else None),
                                       ("--set", BY_SEMSYNTH_NAME.get(setn, setn) if setn else None)], s.sources)
    if mode is None:
        mode = dataset_from_channels(channels, s, notes, family)
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
        edge = has_instance_edge(channels, int(label_nc) + int(dontcare), "custom")
    else:
        edge = has_instance_edge(channels, DATASETS[mode][1], DATASETS[mode][0], opt.get("label_nc"),
                                 opt.get("contain_dontcare_label"))
    use_instance = s.resolve("use_instance", edge, None if "no_instance" not in opt else not opt["no_instance"],
                             sec="data")
    if mode == "ade20k" and use_instance:
        raise ConversionError("ADE20K has no instance maps, but the generator reads an instance-edge channel")

    if mode == "custom":
        data: dict[str, Any] = {"name": "custom", "root": "datasets/custom", "num_classes": int(label_nc),
                                "dontcare": 255 if dontcare else None, "preprocess": "resize_and_crop",
                                "load_size": 256, "crop_size": 256}
    else:
        data = {"name": DATASETS[mode][0], **DATASETS[mode][2]}
    data = official_test_data(data, mode, use_instance, opt, s, family)
    if mode == "custom":
        names = [f"class-{i}" for i in range(int(label_nc))] + (["unlabeled"] if dontcare else [])
        try:
            hw = (round(int(data["crop_size"]) / float(data.get("aspect_ratio", 1.0))), int(data["crop_size"]))
            info = DatasetInfo(name="custom", num_classes=len(names), class_names=names,
                               dontcare_index=int(label_nc) if dontcare else None, has_instance=bool(use_instance),
                               resolution=hw)
        except (ConfigError, ValueError, TypeError) as e:
            raise ConversionError(f"the data settings of this conversion are not valid: {e}") from e
        label_values = {str(v): v for v in range(int(label_nc))} | ({"255": int(label_nc)} if dontcare else {})
    else:
        info = dataset_info_checked(data)
        label_values = label_values_of(mode)
    if mode == "ade20k":
        notes.append("ADE20K labels are read unshifted (raw 0 'other' = channel 0, class k = channel k), as the "
                     "released models saw them: the official loader's shift to don't-care is a no-op")
    return mode, data, info, label_values


# ------------------------------------------------------------------------------------------------------------
# 4. Key names

Mapped = tuple[dict[str, torch.Tensor], dict[str, str]]  # (semsynth key -> tensor, semsynth key -> official key)


def renamed(pairs: Iterable[tuple[str, str, torch.Tensor]]) -> Mapped:
    """``(official key, semsynth key with the official spectral-norm names, tensor)`` triples -> the semsynth state
    (spectral-norm names of the parametrisation) and, for every tensor, the official key it came from."""
    tensors: dict[str, torch.Tensor] = {}
    origin: dict[str, str] = {}
    for official, new, value in pairs:
        new = parametrized_key(new)
        tensors[new], origin[new] = value, official
    return tensors, origin


def load_mapped(module: torch.nn.Module, mapped: Mapped, source: str, hint: str,
                official: Callable[[str], str] | None = None) -> None:
    """:func:`load_strict` whose messages name the official key too: the one each tensor came from and, for the
    tensors the checkpoint lacks, ``official(semsynth key)`` (the inverse of the mapping)."""
    tensors, origin = mapped
    names = {k: official(k) for k in module.state_dict()} if official is not None else {}
    load_strict(module, tensors, source, hint, official_names=names | origin)


# ------------------------------------------------------------------------------------------------------------
# 5. SPADE's encoder, its multi-scale discriminator and the FPSE discriminator (CC-FPSE, SC-GAN)


def map_encoder_keys(state: Mapping[str, torch.Tensor]) -> Mapped:
    """``layer{i}.0.*`` -> ``layers.{i-1}.0.*``; ``fc_mu``, ``fc_var`` unchanged."""
    pairs = []
    for key, value in state.items():
        m = re.match(r"^layer(\d+)\.(.*)$", key)
        pairs.append((key, f"layers.{int(m.group(1)) - 1}.{m.group(2)}" if m else key, value))
    return renamed(pairs)


def map_encoder(state: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """SPADE's ``ConvEncoder`` state -> semsynth ``conv`` encoder keys (:func:`map_encoder_keys`, tensors only)."""
    return map_encoder_keys(state)[0]


def official_encoder_key(key: str) -> str:
    """A semsynth ``conv`` encoder key -> the official ``ConvEncoder`` key."""
    key = legacy_spectral_key(key)
    m = re.match(r"^layers\.(\d+)\.(.*)$", key)
    return f"layer{int(m.group(1)) + 1}.{m.group(2)}" if m else key


def convert_encoder(state: Mapping[str, torch.Tensor], z_dim: int, s: Settings, family: str = "SPADE"
                    ) -> torch.nn.Module:
    """SPADE's ``ConvEncoder`` (``latest_net_E.pth``; CC-FPSE and SC-GAN use it unchanged) -> semsynth ``conv``
    encoder."""
    key = first_key(state, "layer1.0.weight_orig", "layer1.0.weight")
    if key is None or "fc_mu.weight" not in state:
        raise ConversionError(f"--encoder: not {with_article(family)} ConvEncoder checkpoint (no "
                              f"layer1.0.weight_orig / fc_mu.weight; its first keys: {', '.join(list(state)[:3])})")
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
    E = build_checked(build_encoder, s.fill("encoder", spec), "encoder")
    load_mapped(E, map_encoder_keys(state), "encoder checkpoint",
                f"read as a {layers}-layer ConvEncoder of width {width}, z {z}; give {family}'s latest_net_E.pth",
                official_encoder_key)
    return E


def map_discriminator_keys(state: Mapping[str, torch.Tensor]) -> Mapped:
    """``discriminator_{d}.model{j}.0.0.*`` (the conv in SPADE's (conv, norm) wrapper) -> ``...model{j}.0.*``."""
    return renamed((key, re.sub(r"^(discriminator_\d+\.model\d+)\.0\.0\.", r"\1.0.", key), value)
                   for key, value in state.items())


def map_discriminator(state: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """SPADE's multi-scale discriminator state -> semsynth ``multiscale`` keys (tensors only)."""
    return map_discriminator_keys(state)[0]


def convert_discriminator(state: Mapping[str, torch.Tensor], info: DatasetInfo, channels: int, s: Settings,
                          family: str = "SPADE") -> torch.nn.Module:
    """SPADE's multi-scale PatchGAN (``latest_net_D.pth``) -> semsynth ``multiscale``."""
    key = first_key(state, "discriminator_0.model0.0.weight")
    if key is None:
        raise ConversionError(f"--discriminator: not {with_article(family)} multi-scale discriminator checkpoint (no "
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
    D = build_checked(build_discriminator, spec, "discriminator", num_classes=info.num_classes,
                      use_instance=info.has_instance)
    load_mapped(D, map_discriminator_keys(state), "discriminator checkpoint",
                f"read as {scales} x {layers}-layer PatchGAN of width {spec['width']} on {channels} label channels "
                f"(semsynth's multiscale D has spectral + instance norm, as norm_D spectralinstance)")
    return D


def map_fpse(state: Mapping[str, torch.Tensor]) -> Mapped:
    """Official FPSE keys: ``enc{k}.0.0.*`` (the conv inside the norm wrapper) -> ``enc{k}.0.*``; likewise ``lat``,
    ``final``; ``tf``, ``seg``, ``embedding`` unchanged."""
    return renamed((key, re.sub(r"^((?:enc|lat|final)\d+)\.0\.0\.", r"\1.0.", key), value)
                   for key, value in state.items())


def official_fpse_key(key: str) -> str:
    """A semsynth ``fpse`` key -> the official FPSE key."""
    return re.sub(r"^((?:enc|lat|final)\d+)\.0\.", r"\1.0.0.", legacy_spectral_key(key))


def convert_fpse(state: Mapping[str, torch.Tensor], info: DatasetInfo, channels: int, s: Settings, family: str
                 ) -> torch.nn.Module:
    """The FPSE discriminator (CC-FPSE's, which SC-GAN reuses for ADE20K and COCO-Stuff) -> semsynth ``fpse``."""
    key = weight_key(state, "enc1.0.0.")
    if key is None or "embedding.weight" not in state:
        raise ConversionError(f"--discriminator: not {with_article(family)} FPSE discriminator checkpoint (no "
                              f"enc1.0.0.weight_orig / embedding.weight; its first keys: {', '.join(list(state)[:3])})")
    emb = state["embedding.weight"]
    if int(emb.shape[1]) != channels:
        raise ConversionError(f"--discriminator: embedding.weight has shape {list(emb.shape)}, {emb.shape[1]} label "
                              f"channels, but the generator reads {channels}: the two files are of different models")
    spec: dict[str, Any] = {"name": "fpse"}
    for name, value in (("width", int(state[key].shape[0])), ("spectral", key.endswith("_orig"))):
        spec[name] = s.resolve(name, value, sec="discriminator")
    spec = s.fill("discriminator", spec)
    if spec.get("name") != "fpse":
        raise ConversionError(f"--discriminator: the checkpoint is an FPSE discriminator, not {spec['name']!r}")
    D = build_checked(build_discriminator, spec, "discriminator", num_classes=info.num_classes,
                      use_instance=info.has_instance)
    load_mapped(D, map_fpse(state), "discriminator checkpoint",
                f"read as an FPSE discriminator of width {spec['width']} on {channels} label channels (norm_D "
                f"spectralinstance)", official_fpse_key)
    return D

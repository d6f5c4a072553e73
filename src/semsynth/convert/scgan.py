"""SC-GAN checkpoints (``dvlab-research/SCGAN``): ``<epoch>_net_G.pth`` (+ ``_E``, ``_D``) -> semsynth ``scgan``
generator, ``conv`` encoder and ``fpse`` / ``multiscale`` discriminator.

The tensor shapes determine: the number of input channels (classes + don't-care + instance edge), ``ngf``
(``srg_width``), ``nff`` (``fc_width``), ``nrf`` (``svg_width``), the numbers of conv and norm candidates, VAE or not
and ``z_dim``, the layout (a 7th SVG stage means ``more``), spectral norm in the SRG and in the SVG, the SPADE
shortcut's hidden width, batch statistics or none; the encoder's width and depth; the discriminator's kind and width.
The rest (the routing temperature and mapping, the position encoding) comes from the options train.py used, from
``--preset`` or ``--set``, or, when none gives them, from the official config of the detected dataset.

``opt.txt`` caveat: the official train.py writes ``opt.txt`` *before* it applies its ``--config`` YAML over the
options, so the file holds the pre-YAML values (``temperature: 1``, ``ngf: 64``, ...). The YAML it names is read
when it lies beside the checkpoint (or in a parent folder); the three shipped configs are known by name. The number
of input channels, however, was fixed before the YAML was read, from ``label_nc``, ``contain_dontcare_label`` and
``no_instance`` as ``opt.txt`` records them.

Official key -> semsynth key (generator), no value changed::

    fc.*                                          fc.*
    pyramid_spaital_routing.labelDec{k}.{j}.*     svg.stages.{k-1}.{j}.*                (sic: "spaital")
    pyramid_spaital_routing.toRGB.{j}.*           svg.to_rgb.{j}.*
    <block>.conv_{i}.conv_bases.{e}.weight_orig   <block>.conv_{i}.weight[e]           (the n candidates stacked)
    <block>.conv_{i}.conv_bases.{e}.weight_u / _v <block>.conv_{i}.sn.u[e] / .sn.v[e]
    <block>.norm_{i}.affine_params_groups         <block>.norm_{i}.candidates
    <block>.norm_{i} / norm_s / conv_s, conv_img  same names
    X.weight_orig, _u, _v                         X.parametrizations.weight.original, .0._u, .0._v

Discriminators: FPSE ``enc{k}.0.0.*`` / ``lat{k}.0.0.*`` / ``final{k}.0.0.*`` -> ``enc{k}.0.*`` ... (the conv inside
the official norm wrapper), ``tf``, ``seg``, ``embedding`` unchanged; the FPSE discriminator (CC-FPSE's), the
multi-scale PatchGAN and the encoder (SPADE's) are converted as the SPADE family's (``convert/spade_family.py``).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

from ..data import DatasetInfo
from ..models import build_generator
from . import ConversionError, Converted, load_strict, register, resolve_setting
from .spade_family import (
    SHAPES,
    Settings,
    build_checked,
    check_first_map,
    convert_discriminator,
    convert_encoder,
    convert_fpse,
    dataset_from_channels,
    dataset_info_checked,
    has_instance_edge,
    official_test_data,
    renamed,
    section_value,
    vae_first_layer,
    weight_key,
    wrong_family,
)

FAMILY = "SC-GAN"
SVG = "pyramid_spaital_routing."  # (sic) the official attribute name
BLOCKS = ("head_0", "G_middle_0", "G_middle_1", "up_0", "up_1", "up_2", "up_3")
OFFICIAL_CODE = "the official SC-GAN code"

# official dataset_mode -> (semsynth dataset, label channels without the instance edge, test-time data options as
# the official test.py reads its images: resized to the crop size, no flip)
DATASETS = {
    "ade20k": ("ade20k", 151, {"root": "datasets/ADEChallengeData2016", "label_convention": "scgan",
                               "preprocess": "resize_and_crop", "crop_size": 256}),
    "coco": ("coco-stuff", 183, {"root": "datasets/coco_stuff", "preprocess": "resize_and_crop", "crop_size": 256}),
    "celeba": ("celebamask-hq", 19, {"root": "datasets/CelebAMask-HQ", "preprocess": "resize_and_crop",
                                     "crop_size": 512}),
    "cityscapes": ("cityscapes", 35, {"root": "datasets/cityscapes", "preprocess": "fixed", "crop_size": 512,
                                      "aspect_ratio": 2.0}),
}
BY_SEMSYNTH_NAME = {v[0]: k for k, v in DATASETS.items()}
CHANNEL_GUESS = {151: "ade20k", 183: "coco", 184: "coco", 19: "celeba", 35: "cityscapes", 36: "cityscapes"}

# The shipped configs (config/*.yml at 4fcaab6): the values that decide a conversion (spec: scgan_official.md §0.1).
_COMMON = {"weight_type": "softmax", "ig_sz": 7, "ig_sigma": 1.5, "ig_iter": 1, "ig_relative": False,
           "norm_G": "spectralsccsyncbatch3x3", "no_instance": True}
_CELEBA = {**_COMMON, "dataset_mode": "celeba", "ngf": 48, "nff": 32, "nrf": 32, "num_experts_conv": 3,
           "num_experts_norm": 3, "temperature": 0.05, "no_spectral_on_routing": True, "position": True,
           "pyr_pos": True, "pyr_rng": 4, "use_vae": True, "netD": "multiscale"}
OFFICIAL_CONFIGS: dict[str, dict[str, Any]] = {
    "scgan_ade20k.yml": {**_COMMON, "dataset_mode": "ade20k", "ngf": 32, "nff": 32, "nrf": 32, "num_experts_conv": 3,
                         "num_experts_norm": 4, "temperature": 0.05, "no_spectral_on_routing": False,
                         "position": False, "pyr_pos": False, "pyr_rng": 5, "use_vae": False, "netD": "fpse"},
    "scgan_coco.yml": {**_COMMON, "dataset_mode": "coco", "ngf": 32, "nff": 24, "nrf": 24, "num_experts_conv": 2,
                       "num_experts_norm": 3, "temperature": 0.5, "no_spectral_on_routing": False, "position": False,
                       "pyr_pos": False, "pyr_rng": 5, "use_vae": False, "netD": "fpse"},
    "scgan_celeba.yml": _CELEBA,
    "scgan_celeba-test.yml": _CELEBA,
}
DATASET_CONFIG = {"ade20k": "scgan_ade20k.yml", "coco": "scgan_coco.yml", "celeba": "scgan_celeba.yml"}
# the options that sized the network's input before train.py applied the YAML: kept from opt.txt as written
CHANNEL_FACTS = ("label_nc", "contain_dontcare_label", "no_instance")
# generator option -> the official option it comes from (the options the shapes cannot tell)
NOT_IN_SHAPES = {"mapping": "weight_type", "temperature": "temperature", "position_encoding": "position",
                 "pyramid_position": "pyr_pos", "position_levels": "pyr_rng", "ig_size": "ig_sz",
                 "ig_sigma": "ig_sigma", "ig_iters": "ig_iter", "ig_relative": "ig_relative"}
MAPPINGS = {"softmax": "softmax", "sigmoid": "sigmoid", "hardtanh": "hardtanh"}  # any other weight_type: identity


class ScganSettings(Settings):
    """:class:`spade.Settings` whose option source is named after what was read (``opt.txt`` + its YAML)."""

    def __init__(self, preset: str | None, overrides: list[str] | tuple[str, ...], opt_label: str = "opt.txt") -> None:
        super().__init__(("scgan",), preset, overrides, FAMILY)
        self.opt_label = opt_label

    def resolve(self, key: str, shape: Any = None, opt: Any = None, sec: str = "generator") -> Any:
        name = key if sec == "generator" else f"{sec}.{key}"
        return resolve_setting(name, [(SHAPES, shape), (self.opt_label, opt), *self.given(sec, key)], self.sources)

    def fixed(self, key: str, value: Any) -> Any:
        """A value the official code always has (no option): a preset or --set may only repeat it."""
        return resolve_setting(key, [(OFFICIAL_CODE, value), *self.given("generator", key)], self.sources)


# ------------------------------------------------------------------------------------------------------------
# The options train.py used: opt.txt with its YAML applied


def _find_yaml(name: str, opt_path: Path | None, checkpoint_path: Path | None) -> Path | None:
    p = Path(name)
    if p.is_absolute():
        return p if p.is_file() else None
    bases: list[Path] = []
    for start in (opt_path, checkpoint_path):
        if start is not None:
            d = start.resolve().parent
            bases += [d, d.parent, d.parent.parent]
    for base in bases:
        for cand in (base / p, base / p.name):
            if cand.is_file():
                return cand
    return None


def effective_options(opt: Mapping[str, Any], opt_path: Path | None, checkpoint_path: Path | None,
                      notes: list[str]) -> tuple[dict[str, Any], dict[str, Any], str]:
    """(the options as train.py used them, the channel facts as opt.txt recorded them, the source's name)."""
    import yaml

    cli = {k: opt[k] for k in CHANNEL_FACTS if k in opt}
    name = opt.get("config")
    if not isinstance(name, str) or not name.strip():
        return dict(opt), cli, "opt.txt"
    found = _find_yaml(name, opt_path, checkpoint_path)
    if found is not None:
        try:
            more = yaml.safe_load(found.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, yaml.YAMLError, ValueError) as e:
            raise ConversionError(f"{found} (the config opt.txt names): cannot be read as YAML: {e}") from None
        if not isinstance(more, dict):
            raise ConversionError(f"{found} (the config opt.txt names) is not a mapping of options")
        notes.append(f"opt.txt names the config {name}: read {found} and applied it over opt.txt, as train.py did")
        return {**opt, **more}, cli, f"opt.txt + {Path(name).name}"
    known = OFFICIAL_CONFIGS.get(Path(name).name)
    if known is not None:
        notes.append(f"opt.txt names the config {name} (not found beside it): applied the values of the official "
                     f"{Path(name).name} over opt.txt, as train.py did")
        return {**opt, **known}, cli, f"opt.txt + official {Path(name).name}"
    notes.append(f"opt.txt names the config {name}, which train.py applied over the options in opt.txt, but it is "
                 f"not beside opt.txt: only opt.txt's {', '.join(CHANNEL_FACTS)} are used (copy the YAML next to "
                 f"opt.txt to use it)")
    return dict(cli), cli, "opt.txt"


# ------------------------------------------------------------------------------------------------------------
# What the generator's tensor shapes say


def check_family(state: Mapping[str, torch.Tensor]) -> None:
    if not any(k.startswith(SVG) for k in state) or not any(".conv_bases." in k for k in state):
        raise wrong_family(state, "scgan", "an SC-GAN generator (no pyramid_spaital_routing.* / conv_bases.* tensors "
                                           "of SCGGenerator)")


def infer_generator(state: Mapping[str, torch.Tensor]) -> dict[str, Any]:
    """The options the official generator's tensor shapes fix, and its number of input channels (``channels``)."""
    check_family(state)
    if any(k.startswith("up_4.") for k in state):
        raise ConversionError("generator checkpoint: it has an up_4 block (num_upsampling_layers 'most'), a layout "
                              "the official SC-GAN code cannot run and semsynth does not build")
    need = {"svg": weight_key(state, SVG + "labelDec1.0."), "rgb": weight_key(state, SVG + "toRGB.0."),
            "expert": weight_key(state, "head_0.conv_0.conv_bases.0."),
            "expert1": weight_key(state, "head_0.conv_1.conv_bases.0."),
            "fc": "fc.weight" if "fc.weight" in state else None,
            "norm": "head_0.norm_0.affine_params_groups" if "head_0.norm_0.affine_params_groups" in state else None}
    missing = [k for k, v in need.items() if v is None]
    if missing:
        if "norm" in missing and "head_0.norm_0.mlp_shared.0.weight" in state:
            raise ConversionError("generator checkpoint: its SC blocks normalise with SPADE (norm_G spade...), not "
                                  "with SCN; semsynth's SC-GAN has SCN in the blocks (norm_G spectralscc...)")
        names = {"svg": f"{SVG}labelDec1.0.weight(_orig)", "rgb": f"{SVG}toRGB.0.weight",
                 "expert": "head_0.conv_0.conv_bases.0.weight(_orig)",
                 "expert1": "head_0.conv_1.conv_bases.0.weight(_orig)", "fc": "fc.weight",
                 "norm": "head_0.norm_0.affine_params_groups"}
        raise ConversionError(f"generator checkpoint: {', '.join(names[k] for k in missing)} missing; give the "
                              f"*_net_G.pth of SC-GAN (SCGGenerator, norm_G spectralscc...)")
    svg0, expert, expert1, fc = state[need["svg"]], state[need["expert"]], state[need["expert1"]], state["fc.weight"]
    f, rem = divmod(int(svg0.shape[0]), 16)
    if rem or f < 1:
        raise ConversionError(f"generator checkpoint: {need['svg']} has shape {list(svg0.shape)}; its {svg0.shape[0]} "
                              f"outputs are not 16 * nrf")
    q, rem_q = divmod(int(expert.shape[1]), 16)
    g, rem_g = divmod(int(expert1.shape[0]), 16)
    if rem_q or rem_g or q < 1 or g < 1:
        raise ConversionError(f"generator checkpoint: head_0 maps {expert.shape[1]} to {expert1.shape[0]} channels, "
                              f"which are not 16 * nff and 16 * ngf")
    conv_n = len({k.split(".")[3] for k in state if k.startswith("head_0.conv_0.conv_bases.")})
    out: dict[str, Any] = {
        "channels": int(svg0.shape[1]), "svg_width": f, "fc_width": q, "srg_width": g, "conv_candidates": conv_n,
        "norm_candidates": int(state[need["norm"]].shape[0]), "svg_spectral": need["svg"].endswith("_orig"),
        "spectral": need["expert"].endswith("_orig"),
        "layout": "more" if any(k.startswith(SVG + "labelDec7.") for k in state) else "normal",
        "norm": "batch-like" if "head_0.norm_0.param_free_norm.running_mean" in state else "no-stats",
    }
    mlp = next((state[k] for k in state if re.fullmatch(r"(head_0|up_\d)\.norm_s\.mlp_shared\.0\.weight", k)), None)
    if mlp is not None:
        out["spade_hidden"] = int(mlp.shape[0])
        if mlp.shape[-1] != 3:
            raise ConversionError(f"generator checkpoint: the shortcut's SPADE has {mlp.shape[-1]}x{mlp.shape[-1]} "
                                  f"kernels (norm_G ...{mlp.shape[-1]}x{mlp.shape[-1]}); semsynth's SC-GAN builds 3x3")
    vae = vae_first_layer(fc, 16 * q, "16 * nff")
    if vae is not None:
        out["input_mode"] = "noise"
        out["z_dim"], out["start_cells"] = vae
    else:
        out["input_mode"] = "label"
        out["channels"] = int(fc.shape[1])  # the first layer reads the label map (labelDec1 must agree)
    return out


# ------------------------------------------------------------------------------------------------------------
# Key mapping (pure: works on meta tensors too)


_EXPERT = re.compile(r"^(.+\.conv_[01])\.conv_bases\.(\d+)\.(weight_orig|weight_u|weight_v|weight|bias)$")
_STAGE = re.compile(r"^" + re.escape(SVG) + r"labelDec(\d+)\.(.*)$")
_STACKED = {"weight_orig": "weight", "weight": "weight", "weight_u": "sn.u", "weight_v": "sn.v", "bias": "bias"}


def map_generator(state: Mapping[str, torch.Tensor]) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """Official generator keys -> semsynth's, the ``n`` experts of each SCC stacked; returns (state, semsynth key ->
    official key). Keys it does not know are kept as they are (``load_strict`` then names them)."""
    pairs: list[tuple[str, str, torch.Tensor]] = []
    experts: dict[str, dict[int, dict[str, tuple[str, torch.Tensor]]]] = {}
    for k, v in state.items():
        m = _EXPERT.match(k)
        if m:
            experts.setdefault(m.group(1), {}).setdefault(int(m.group(2)), {})[m.group(3)] = (k, v)
            continue
        new = k
        m = _STAGE.match(k)
        if m:
            new = f"svg.stages.{int(m.group(1)) - 1}.{m.group(2)}"
        elif k.startswith(SVG + "toRGB."):
            new = "svg.to_rgb." + k[len(SVG + "toRGB."):]
        elif k.endswith(".affine_params_groups"):
            new = k[: -len("affine_params_groups")] + "candidates"
        pairs.append((k, new, v))
    out, names = renamed(pairs)
    for prefix, by_index in experts.items():
        index = sorted(by_index)
        if index != list(range(len(index))):
            raise ConversionError(f"generator checkpoint: {prefix}.conv_bases holds the experts {index}, not 0..n-1")
        kind = set().union(*by_index.values())
        lacking = [(i, sorted(kind - set(d))) for i, d in by_index.items() if kind - set(d)]
        if lacking:
            i, parts = lacking[0]
            raise ConversionError(f"generator checkpoint: {', '.join(f'{prefix}.conv_bases.{i}.{p}' for p in parts)} "
                                  f"missing (the other experts of {prefix} hold {', '.join(sorted(kind))})")
        if "weight_orig" in kind and not {"weight_u", "weight_v"} <= kind:
            raise ConversionError(f"generator checkpoint: {prefix}.conv_bases.0 has weight_orig but not weight_u and "
                                  f"weight_v: a spectral-norm layout of PyTorch < 1.0; load and save it once with "
                                  f"PyTorch >= 1.0 (the official code's version)")
        for part in sorted(kind):
            items = [by_index[i][part] for i in index]
            shapes = {tuple(v.shape) for _, v in items}
            if len(shapes) != 1:
                raise ConversionError(f"generator checkpoint: the experts {prefix}.conv_bases.*.{part} differ in shape "
                                      f"({', '.join(f'{k}: {list(v.shape)}' for k, v in items)})")
            new = f"{prefix}.{_STACKED[part]}"
            out[new] = torch.stack([v for _, v in items])
            names[new] = f"{prefix}.conv_bases.{{0..{len(index) - 1}}}.{part}"
    return out, names


# ------------------------------------------------------------------------------------------------------------
# The dataset: how the input channels split, the data spec, the label values (as the official loaders)


def label_values_of(mode: str) -> dict[str, int]:
    """Raw label-file value -> channel, as the official loaders map the values the dataset's files hold."""
    if mode == "ade20k":  # the SPADE-style shift is commented out in the official loader: unshifted
        return {str(v): v for v in range(151)}
    if mode == "coco":
        return {str(v): v for v in range(182)} | {"255": 182}
    if mode == "celeba":  # label - 1, with background 0 -> label_nc (18)
        return {"0": 18} | {str(v): v - 1 for v in range(1, 19)}
    return {str(v): v for v in range(35)}


def scgan_dataset(channels: int, opt: Mapping[str, Any], cli: Mapping[str, Any], s: ScganSettings,
                  notes: list[str]) -> tuple[str, dict[str, Any], DatasetInfo, dict[str, int]]:
    """(official dataset_mode, data spec, DatasetInfo, label values) for a generator reading ``channels`` inputs."""
    mode_opt = opt.get("dataset_mode")
    if mode_opt is not None and mode_opt not in DATASETS:
        raise ConversionError(f"{s.opt_label}: dataset_mode {mode_opt!r} is not one SC-GAN's code reads (ade20k, coco, "
                              f"celeba, cityscapes)")
    pre, setn = section_value(s.raw, "data", "name"), section_value(s.sets, "data", "name")
    for src, v in ((s.src_preset, pre), ("--set", setn)):
        if v is not None and v not in BY_SEMSYNTH_NAME:
            raise ConversionError(f"data.name {v!r} ({src}): SC-GAN checkpoints convert for "
                                  f"{', '.join(BY_SEMSYNTH_NAME)}")
    mode = resolve_setting("dataset", [(s.opt_label, mode_opt), (s.src_preset, BY_SEMSYNTH_NAME.get(pre)),
                                       ("--set", BY_SEMSYNTH_NAME.get(setn))], s.sources)
    if mode is None:
        mode = dataset_from_channels(channels, s, notes, FAMILY, CHANNEL_GUESS, DATASETS,
                                     "ADE20K 151, COCO-Stuff 183/184, CelebAMask-HQ 19, Cityscapes 35/36",
                                     "--set data.name=...")
    name, label_channels, defaults = DATASETS[mode]
    edge = has_instance_edge(channels, label_channels, name, cli.get("label_nc"), cli.get("contain_dontcare_label"))
    opt_inst = None if cli.get("no_instance") is None else not cli["no_instance"]
    use_instance = s.resolve("use_instance", edge, opt_inst, sec="data")
    if use_instance and mode in ("ade20k", "celeba"):
        raise ConversionError(f"{name} has no instance maps, but the generator reads an instance-edge channel "
                              f"({channels} = {label_channels} + 1)")
    data = official_test_data({"name": name, **defaults}, mode, use_instance, opt, s, FAMILY)
    info = dataset_info_checked(data)
    if mode == "ade20k":
        notes.append("ADE20K labels are read unshifted (raw 0 'other' = channel 0, class k = channel k), as the "
                     "official SC-GAN loader reads them")
    return mode, data, info, label_values_of(mode)


# ------------------------------------------------------------------------------------------------------------
# The generator


def generator_spec(shapes: Mapping[str, Any], opt: Mapping[str, Any], s: ScganSettings, mode: str,
                   info: DatasetInfo, notes: list[str]) -> dict[str, Any]:
    """The semsynth ``scgan`` config of a checkpoint with these shape facts (every value's source in ``s.sources``)."""
    spec: dict[str, Any] = {"name": "scgan"}
    norm_g = opt.get("norm_G") if isinstance(opt.get("norm_G"), str) else None
    for key, official in (("srg_width", "ngf"), ("fc_width", "nff"), ("svg_width", "nrf"),
                          ("conv_candidates", "num_experts_conv"), ("norm_candidates", "num_experts_norm")):
        spec[key] = s.resolve(key, shapes[key], opt.get(official))
    nrs = opt.get("no_spectral_on_routing")
    spec["svg_spectral"] = s.resolve("svg_spectral", shapes["svg_spectral"], None if nrs is None else not nrs)
    spec["spectral"] = s.resolve("spectral", shapes["spectral"], None if norm_g is None else "spectral" in norm_g)
    vae = opt.get("use_vae")
    spec["input_mode"] = s.resolve("input_mode", shapes["input_mode"],
                                   None if vae is None else ("noise" if vae else "label"))
    if shapes["input_mode"] == "noise":
        spec["z_dim"] = s.resolve("z_dim", shapes["z_dim"], opt.get("z_dim"))
    nul = opt.get("num_upsampling_layers")
    spec["layout"] = s.resolve("layout", shapes["layout"], nul if nul in ("normal", "more") else None)
    m = re.fullmatch(r"(?:spectral)?scc(\D+)\dx\d", norm_g or "")
    opt_norm = {"syncbatch": "syncbatch", "batch": "batch", "instance": "instance"}.get(m.group(1)) if m else None
    spec["param_free_norm"] = s.batch_like("param_free_norm", shapes["norm"], opt_norm)
    if "spade_hidden" in shapes:
        spec["spade_hidden"] = s.resolve("spade_hidden", shapes["spade_hidden"])
    for key, value in (("conv_type", "scc"), ("norm_type", "scn"), ("shortcut", "spade"), ("svg_upsample", "nearest"),
                       ("output_activation", "hardtanh")):
        spec[key] = s.fixed(key, value)
    # what no shape tells: from the options, the preset, --set, or else the official config of the dataset
    wt = opt.get("weight_type")
    from_opt = {key: opt.get(official) for key, official in NOT_IN_SHAPES.items()}
    from_opt["mapping"] = None if wt is None else MAPPINGS.get(wt, "none")
    fallback = OFFICIAL_CONFIGS.get(DATASET_CONFIG.get(mode, ""), {})
    defaulted = []
    for key, official in NOT_IN_SHAPES.items():
        value = s.resolve(key, None, from_opt[key])
        if value is None:
            if official not in fallback:
                raise ConversionError(f"generator.{key}: the checkpoint does not tell it and no opt.txt, --preset or "
                                      f"--set gives it, and SC-GAN ships no config for {DATASETS[mode][0]}; give "
                                      f"the checkpoint's opt.txt (--opt) or e.g. --preset scgan-{DATASETS[mode][0]}")
            value = fallback[official] if key != "mapping" else MAPPINGS.get(fallback[official], "none")
            s.sources[key] = f"official {DATASET_CONFIG[mode]} ({DATASETS[mode][0]} detected)"
            defaulted.append(f"{key}={value}")
        spec[key] = value
    if defaulted:
        notes.append(f"no opt.txt or preset gives {', '.join(d.split('=')[0] for d in defaulted)}: took the official "
                     f"{DATASET_CONFIG[mode]} values ({', '.join(defaulted)}), the config of the {DATASETS[mode][0]} "
                     f"checkpoint")
    if spec["position_encoding"] and spec["pyramid_position"] and info.has_instance:
        raise ConversionError("position encoding with pyr_pos and an instance-edge channel: the official code then "
                              "filters the edge channel too, semsynth leaves it out of the position encoding, so the "
                              "outputs would differ; no official config has this combination")
    return s.fill("generator", spec)


def plan_generator(state: Mapping[str, torch.Tensor], opt: Mapping[str, Any], cli: Mapping[str, Any],
                   s: ScganSettings, notes: list[str]) -> dict[str, Any]:
    """Everything about the generator but its weights (works on meta tensors): ``spec`` and ``interface`` (to build
    it), ``info``, ``data``, ``label_values``, ``channels``, ``mode`` (official dataset_mode), ``shapes``, ``hint``."""
    shapes = infer_generator(state)
    channels = shapes["channels"]
    mode, data, info, label_values = scgan_dataset(channels, opt, cli, s, notes)
    h, w = (int(x) for x in info.resolution)
    spec = generator_spec(shapes, opt, s, mode, info, notes)
    if shapes["input_mode"] == "noise":
        check_first_map(state["fc.weight"], shapes["start_cells"], f"16 * nff = {16 * shapes['fc_width']}", (h, w),
                        32 if spec["layout"] == "normal" else 64)
    hint = (f"read as SC-GAN with ngf {spec['srg_width']}, nff {spec['fc_width']}, nrf {spec['svg_width']}, "
            f"{spec['conv_candidates']} conv / {spec['norm_candidates']} norm candidates, {channels} input channels "
            f"({info.name}{', instance edge' if info.has_instance else ''}), "
            f"{'VAE' if spec['input_mode'] == 'noise' else 'label input'}, {spec['layout']} layout; a shape difference "
            f"means a wrong --from, a wrong --preset or the instance map on/off (--set data.use_instance=...)")
    return {"spec": spec, "interface": {"num_classes": info.num_classes, "use_instance": info.has_instance,
                                        "resolution": [h, w]},
            "info": info, "data": data, "label_values": label_values, "channels": channels, "mode": mode,
            "shapes": shapes, "hint": hint}


def convert_generator(state: Mapping[str, torch.Tensor], opt: Mapping[str, Any], cli: Mapping[str, Any],
                      s: ScganSettings, notes: list[str]) -> tuple[torch.nn.Module, dict[str, Any]]:
    """(G holding the official weights, the plan of :func:`plan_generator`)."""
    plan = plan_generator(state, opt, cli, s, notes)
    G = build_checked(build_generator, plan["spec"], "SC-GAN generator", **plan["interface"])
    mapped, names = map_generator(state)
    load_strict(G, mapped, "generator checkpoint", plan["hint"], official_names=names)
    return G, plan


# ------------------------------------------------------------------------------------------------------------
# The converter


@register("scgan")
def convert_scgan(state: Mapping[str, torch.Tensor], opt: Mapping[str, Any], *,
                  encoder_state: Mapping[str, torch.Tensor] | None = None,
                  discriminator_state: Mapping[str, torch.Tensor] | None = None,
                  preset: str | None = None, overrides: list[str] | tuple[str, ...] = (),
                  opt_path: Path | None = None, checkpoint_path: Path | None = None) -> Converted:
    check_family(state)
    notes: list[str] = []
    eff, cli, label = effective_options(opt, opt_path, checkpoint_path, notes)
    if eff.get("netG") not in (None, "scg"):
        raise ConversionError(f"{label}: netG is {eff['netG']!r}, but the checkpoint's keys are those of SC-GAN's "
                              f"'scg' generator")
    s = ScganSettings(preset, overrides, label)
    G, plan = convert_generator(state, eff, cli, s, notes)
    info, channels = plan["info"], plan["channels"]
    E = None
    if encoder_state is not None:
        if G.latent_dim == 0:
            raise ConversionError("--encoder: this generator has no VAE (its fc is a conv on the label map) and takes "
                                  "no z; convert it without --encoder")
        E = convert_encoder(encoder_state, G.latent_dim, s, family=FAMILY)
    elif G.latent_dim > 0:
        notes.append("the generator takes z (VAE); without --encoder it draws z ~ N(0, I). The official test.py "
                     "encodes the real image with netE: give --encoder <epoch>_net_E.pth for that")
    D = None
    if discriminator_state is not None:
        fpse = any(k.startswith("enc1.") for k in discriminator_state)
        if not fpse and not any(k.startswith("discriminator_0.") for k in discriminator_state):
            raise ConversionError(f"--discriminator: not an SC-GAN discriminator checkpoint (no enc1.* of the FPSE "
                                  f"discriminator, no discriminator_0.* of the multi-scale one; its first keys: "
                                  f"{', '.join(list(discriminator_state)[:3])})")
        kind = "fpse" if fpse else "multiscale"
        given = resolve_setting("discriminator.name", [(label, eff.get("netD")), *s.given("discriminator", "name")],
                                s.sources)
        if given is not None and given != kind:
            raise ConversionError(f"--discriminator: {s.sources['discriminator.name']} says netD {given!r}, but the "
                                  f"checkpoint is a{'n FPSE' if fpse else ' multi-scale'} discriminator")
        s.sources["discriminator.name"] = SHAPES
        D = convert_fpse(discriminator_state, info, channels, s, FAMILY) if fpse else \
            convert_discriminator(discriminator_state, info, channels, s, family=FAMILY)
    return Converted(generator=G, info=info, encoder=E, discriminator=D, label_values=plan["label_values"],
                     data=plan["data"], sources=s.sources, notes=notes)

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
    <block>.norm_0, .conv_0.norm_layer, .conv_2.norm_layer      same names (the inert BatchNorms, below)
    X.weight_orig, _u, _v        X.parametrizations.weight.original, .0._u, .0._v   (spectral norm)

The three BatchNorms of each block that the official forward never calls are built by semsynth too, inert (never
called, frozen; ``models/generators/ccfpse.py``), so they load like every other tensor, shapes checked.

The dataset recognition, the settings, the encoder (SPADE's ``ConvEncoder``) and the FPSE discriminator are the SPADE
family's conventions (``spade_family.py``), shared with SPADE's and SC-GAN's converters.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

import torch

from ..models import build_generator
from . import ConversionError, Converted, legacy_spectral_key, register
from .spade_family import (
    Mapped,
    Settings,
    build_checked,
    check_first_map,
    convert_encoder,
    convert_fpse,
    load_mapped,
    renamed,
    spade_dataset,
    vae_first_layer,
    weight_key,
    wrong_family,
)

FAMILY = "CC-FPSE"
BLOCKS = ("head_0", "G_middle_0", "G_middle_1", "up_0", "up_1", "up_2", "up_3")
# official sub-module of a CC block -> semsynth sub-module (the inert BatchNorms keep their official names)
BLOCK_PARTS = {"norm_1": "cc_0.norm", "gen_weights1": "cc_0.kernels", "conv_1": "cc_0.pointwise",
               "gen_se_weights1": "cc_0.attention", "norm_2": "cc_1.norm", "gen_weights2": "cc_1.kernels",
               "conv_3": "cc_1.pointwise", "gen_se_weights2": "cc_1.attention", "norm_s": "shortcut_norm",
               "conv_s": "shortcut_conv"}
PYRAMID = {"labelenc": "encode", "labellat": "lateral", "labeldec": "decode"}


# ------------------------------------------------------------------------------------------------------------
# What the generator's tensor shapes say


def check_family(state: Mapping[str, torch.Tensor]) -> None:
    """Refuse a generator checkpoint that is not CC-FPSE's ``CondConvGenerator``, naming what it looks like."""
    if any(k.startswith("labelenc1.") for k in state) and "head_0.gen_weights1.0.weight" in state:
        return
    raise wrong_family(state, "ccfpse", "a CC-FPSE CondConvGenerator (no labelenc1.* / head_0.gen_weights1.* "
                                        "tensors)")


def infer_generator(state: Mapping[str, torch.Tensor]) -> dict[str, Any]:
    """The generator options the shapes fix, and the input channel count (``channels``)."""
    key = weight_key(state, "labelenc1.0.0.") or weight_key(state, "labelenc1.0.")
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
    vae = vae_first_layer(fc, 16 * ngf, "16 * ngf")
    out["use_vae"] = vae is not None
    if vae is not None:
        out["z_dim"], out["start_cells"] = vae
    for name, k in (("hidden", "head_0.gen_weights1.0.weight"), ("spade_hidden", "up_0.norm_s.mlp_shared.0.weight")):
        if k not in state:
            raise ConversionError(f"generator checkpoint: {k} is missing; give the latest_net_G.pth of CC-FPSE")
        out[name] = int(state[k].shape[0])
    return out


# ------------------------------------------------------------------------------------------------------------
# Key mapping


def generator_key(key: str) -> str:
    """The semsynth key of an official generator key (before the spectral-norm renaming)."""
    m = re.match(r"^(labelenc|labellat|labeldec)(\d+)\.0\.(.*)$", key)
    if m:
        part, i, rest = PYRAMID[m.group(1)], int(m.group(2)) - 1, m.group(3)
        if not re.match(r"^[01]\.", rest):  # no norm: the conv sits directly at index 0
            rest = "0." + rest
        return f"label_pyramid.{part}.{i}.{rest}"
    m = re.match(r"^(" + "|".join(BLOCKS) + r")\.([A-Za-z_0-9]+?)\.(.*)$", key)
    if m and m.group(2) in BLOCK_PARTS:
        block, sub, rest = m.groups()
        return f"{block}.{BLOCK_PARTS[sub]}.{rest}"
    return key


def map_generator(state: Mapping[str, torch.Tensor]) -> Mapped:
    """Official generator state -> (semsynth state, semsynth key -> official key); no value changes."""
    return renamed((key, generator_key(key), value) for key, value in state.items())


def official_key(key: str) -> str:
    """The official name of a semsynth generator key, for messages about tensors the checkpoint lacks."""
    key = legacy_spectral_key(key)
    m = re.match(r"^label_pyramid\.(encode|lateral|decode)\.(\d+)\.(.*)$", key)
    if m:
        part = {v: k for k, v in PYRAMID.items()}[m.group(1)]
        return f"{part}{int(m.group(2)) + 1}.0.{m.group(3)}"
    for official, ours in BLOCK_PARTS.items():
        m = re.match(r"^(" + "|".join(BLOCKS) + r")\." + re.escape(ours) + r"\.(.*)$", key)
        if m:
            return f"{m.group(1)}.{official}.{m.group(2)}"
    return key


# ------------------------------------------------------------------------------------------------------------
# The converter


def _norm_setting(s: Settings, key: str, shape_kind: str | None, opt: Any = None) -> Any:
    """A norm option: batch statistics in the checkpoint allow syncbatch or batch (the same tensors); ``instance``
    or ``none`` (no tensors at all) must agree with the other sources; ``None``: the shapes do not tell."""
    if shape_kind == "batch-like":
        return s.batch_like(key, shape_kind, opt)
    return s.resolve(key, shape_kind, opt)


@register("ccfpse")
def convert_ccfpse(state: Mapping[str, torch.Tensor], opt: Mapping[str, Any], *,
                   encoder_state: Mapping[str, torch.Tensor] | None = None,
                   discriminator_state: Mapping[str, torch.Tensor] | None = None,
                   preset: str | None = None, overrides: list[str] | tuple[str, ...] = ()) -> Converted:
    check_family(state)
    if opt.get("netG") not in (None, "condconv"):
        raise ConversionError(f"opt.txt: netG is {opt['netG']!r}, not CC-FPSE's 'condconv'")
    s = Settings(("ccfpse",), preset, overrides, FAMILY)
    notes: list[str] = []
    shapes = infer_generator(state)
    channels = shapes["channels"]
    _, data, info, label_values = spade_dataset(channels, opt, s, notes, family=FAMILY)
    h, w = (int(x) for x in info.resolution)

    # -- the generator --------------------------------------------------------------------------------------
    nul = "more" if opt.get("dataset_mode") == "cityscapes" else ("normal" if opt.get("dataset_mode") else None)
    spec: dict[str, Any] = {"name": "ccfpse"}
    for key in ("ngf", "hidden", "spade_hidden", "spectral"):
        spec[key] = s.resolve(key, shapes[key], opt.get(key) if key == "ngf" else None)
    spec["num_upsampling_layers"] = s.resolve("num_upsampling_layers", shapes["num_upsampling_layers"], nul)
    spec["use_vae"] = s.resolve("use_vae", shapes["use_vae"], opt.get("use_vae"))
    if shapes["use_vae"]:
        spec["z_dim"] = s.resolve("z_dim", shapes["z_dim"], opt.get("z_dim"))
    norm_g = opt.get("norm_G")
    opt_label_norm = None
    if isinstance(norm_g, str) and norm_g.startswith("spectral"):
        sub = norm_g[len("spectral"):]
        opt_label_norm = {"sync_batch": "syncbatch", "batch": "batch", "instance": "instance", "": "none",
                          "none": "none"}.get(sub)
    spec["label_norm"] = _norm_setting(s, "label_norm", shapes["label_norm"], opt_label_norm)
    spec["norm"] = _norm_setting(s, "norm", shapes["norm"])
    spec = s.fill("generator", spec)
    if shapes["use_vae"]:
        check_first_map(state["fc.weight"], shapes["start_cells"], f"16 * ngf = {16 * shapes['ngf']}", (h, w),
                        64 if spec["num_upsampling_layers"] == "more" else 32)
    G = build_checked(build_generator, spec, "CC-FPSE generator", num_classes=info.num_classes,
                      use_instance=info.has_instance, resolution=[h, w])
    hint = (f"read as CC-FPSE with ngf {spec['ngf']}, {channels} input channels ({info.name}"
            f"{', instance edge' if info.has_instance else ''}), {'VAE' if spec['use_vae'] else 'no VAE'}, "
            f"{spec['num_upsampling_layers']} layout; a shape difference means a wrong --from, a wrong --preset or "
            f"the instance map on/off (--set data.use_instance=...)")
    load_mapped(G, map_generator(state), "generator checkpoint", hint, official_key)

    # -- the encoder and the discriminator --------------------------------------------------------------------
    E = None
    if encoder_state is not None:
        if not spec["use_vae"]:
            raise ConversionError("--encoder: this generator has no VAE (its fc is a conv on the label map) and takes "
                                  "no z; convert it without --encoder")
        E = convert_encoder(encoder_state, spec["z_dim"], s, family=FAMILY)
    elif spec["use_vae"]:
        notes.append("the generator takes z (VAE); without --encoder it draws z ~ N(0, I). The official test.py "
                     "encodes the real image with netE: give --encoder latest_net_E.pth to reproduce it")
    D = None
    if discriminator_state is not None:
        D = convert_fpse(discriminator_state, info, channels, s, FAMILY)
    return Converted(generator=G, info=info, encoder=E, discriminator=D, label_values=label_values, data=data,
                     sources=s.sources, notes=notes)

"""pix2pixHD checkpoints (``NVIDIA/pix2pixHD``): ``latest_net_G.pth`` (+ ``latest_net_D.pth``) -> semsynth
``pix2pixhd`` generator (``norm_bias=true, spectral=false``: convs keep their bias, as that code builds them) and
``multiscale`` discriminator (``spectral=false, conv_bias=true``).

Both ``--netG global`` (``GlobalGenerator``) and ``--netG local`` (``LocalEnhancer``: the released
``label2city_1024p``) convert. The tensor shapes determine ``ngf``, the numbers of down-samplings, residual blocks
and local enhancers, the input channel count and the norm (batch statistics or none); ``opt.txt`` (or ``--preset``
/ ``--set``) gives the dataset and the image size. Without any, 36 input channels are Cityscapes (35 labelIds +
instance edge, ``label_nc 35``) at 1024x2048 (``local``) or 512x1024 (``global``), as the README's test commands.

A checkpoint of SPADE's ``--netG pix2pixhd`` (keys ``model.1.0.*``) converts with ``--from spade``.

Official key -> semsynth key, no value changed::

    model.<i> (conv), model.<i+1> (norm)      global_generator.{head, down.<k>, up.<k>}.conv / .norm
    model.<i>.conv_block.<1, 2, 5, 6>         global_generator.blocks.<k>.{conv_0, norm_0, conv_1, norm_1}
    model.<last> (global: conv to RGB)        global_generator.to_rgb.conv
    model<n>_1.<1, 2, 4, 5>                   local_enhancers.<n-1>.front.{0, 1}.conv / .norm
    model<n>_2.<k>.conv_block.*               local_enhancers.<n-1>.blocks.<k>.*
    model<n>_2.<convT>, <conv to RGB>         local_enhancers.<n-1>.up, .to_rgb.conv
    D: scale<s>_layer<j>.*                    discriminator_<num_D-1-s>.model<j>.*   (pix2pixHD lists scales coarse
                                                                                     first)
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

import torch

from ..data import DatasetInfo
from ..errors import ConfigError
from ..models import build_discriminator, build_generator
from . import ConversionError, Converted, register, resolve_setting
from .spade import load_renamed, resnet_key_map, resnet_shapes, sequential_units, unit_pairs
from .spade_family import (
    SHAPES,
    Settings,
    dataset_info_checked,
    has_instance_edge,
    looks_like,
    section_value,
    wrong_family,
)

CITYSCAPES_LABEL_NC = 35


def infer_generator(state: Mapping[str, torch.Tensor]) -> tuple[dict[str, Any], list[tuple[str, str]]]:
    """(the options the shapes fix + ``channels``, the official -> semsynth key prefixes)."""
    n_local = len({m.group(1) for k in state if (m := re.match(r"^model(\d+)_1\.", k))})
    units = sequential_units(state, "model.")
    out = resnet_shapes(state, units, with_rgb=n_local == 0)
    pairs = resnet_key_map(units, "global_generator", with_rgb=n_local == 0)
    out["n_local_enhancers"] = n_local
    out["ngf"] = out["width"]
    widths: list[int] = []
    for n in range(1, n_local + 1):
        front = [u[1] for u in sequential_units(state, f"model{n}_1.") if u[0] == "conv"]
        rest = sequential_units(state, f"model{n}_2.")
        blocks = [u[1] for u in rest if u[0] == "block"]
        convs = [u[1] for u in rest if u[0] == "conv"]
        if len(front) != 2 or len(convs) != 1 + int(n == n_local):
            raise ConversionError(f"generator checkpoint: local enhancer {n} (model{n}_1.*, model{n}_2.*) has "
                                  f"{len(front)} + {len(convs)} convs; pix2pixHD's has 2 + 1 (+ 1 to RGB on the "
                                  f"last)")
        widths.append(int(state[front[0][0] + "weight"].shape[0]))
        target = f"local_enhancers.{n - 1}"
        pairs += unit_pairs(front[0], f"{target}.front.0") + unit_pairs(front[1], f"{target}.front.1")
        for k, (first, second) in enumerate(blocks):
            pairs += unit_pairs(first, f"{target}.blocks.{k}", "conv_0", "norm_0")
            pairs += unit_pairs(second, f"{target}.blocks.{k}", "conv_1", "norm_1")
        pairs += unit_pairs(convs[0], f"{target}.up")
        if n == n_local:
            pairs.append((convs[1][0], f"{target}.to_rgb.conv."))
        out["ngf"] = widths[-1]
        out["n_blocks_local"] = len(blocks)
    expected = [out["ngf"] * 2 ** (n_local - n) for n in range(1, n_local + 1)]
    if widths != expected or out["width"] != out["ngf"] * 2**n_local:
        raise ConversionError(f"generator checkpoint: the global generator is {out['width']} wide and the local "
                              f"enhancers {widths}; pix2pixHD doubles the width from each enhancer to the coarser one "
                              f"(expected {out['ngf'] * 2**n_local} and {expected})")
    return out, pairs


def _dataset(channels: int, opt: Mapping[str, Any], s: Settings, local: bool,
             notes: list[str]) -> tuple[dict[str, Any], DatasetInfo, dict[str, int]]:
    if opt.get("instance_feat") or opt.get("label_feat"):
        raise ConversionError("opt.txt: this model was trained with --instance_feat/--label_feat (encoded feature "
                              "maps as extra input channels); semsynth does not implement pix2pixHD's feature "
                              "encoder and clustering")
    if opt.get("label_nc") == 0:
        raise ConversionError("opt.txt: label_nc 0 is pix2pixHD's image-to-image mode (RGB input); semsynth's "
                              "generators take label maps")
    name = resolve_setting("dataset", [("opt.txt", "cityscapes" if opt.get("label_nc") == CITYSCAPES_LABEL_NC
                                        else ("custom" if opt.get("label_nc") is not None else None)),
                                       (s.src_preset, section_value(s.raw, "data", "name")),
                                       ("--set", section_value(s.sets, "data", "name"))], s.sources)
    if name is None:
        if channels not in (CITYSCAPES_LABEL_NC, CITYSCAPES_LABEL_NC + 1):
            raise ConversionError(f"the generator reads {channels} input channels, not Cityscapes' 35 labelIds (+ "
                                  f"instance edge): give the opt.txt of the checkpoint (--opt), or --set "
                                  f"data.name=custom --set data.num_classes=N")
        name = "cityscapes"
        s.sources["dataset"] = f"{SHAPES} ({channels} input channels)"
        notes.append(f"no opt.txt: the dataset (cityscapes) was recognised from the {channels} input channels")
    if name not in ("cityscapes", "custom"):
        raise ConversionError(f"data.name {name!r}: pix2pixHD checkpoints convert as cityscapes (label_nc 35) or "
                              f"custom")
    if name == "custom":
        label_nc = s.resolve("num_classes", None, opt.get("label_nc"), sec="data")
        if label_nc is None:
            raise ConversionError("a custom-dataset checkpoint needs its number of classes: --opt opt.txt, or "
                                  "--set data.num_classes=N")
        label_nc = int(label_nc)
    else:
        label_nc = CITYSCAPES_LABEL_NC
    edge = has_instance_edge(channels, label_nc, name)
    use_instance = s.resolve("use_instance", edge, None if "no_instance" not in opt else not opt["no_instance"],
                             sec="data")
    # the image size: resize_or_crop none = the full 2048x1024 images; scale_width = loadSize wide
    width = None
    how = opt.get("resize_or_crop")
    if how == "none":
        width = 2048
    elif how in ("scale_width", "scale_width_and_crop", "resize_and_crop", "crop") and opt.get("loadSize"):
        width = int(opt["loadSize"])
    crop = s.resolve("crop_size", None, width, sec="data")
    if crop is None:
        crop = 2048 if local else 1024
        s.sources["data.crop_size"] = f"the README's test setting of --netG {'local' if local else 'global'}"
    if name == "custom":
        hw = (round(int(crop) / 2.0), int(crop))
        info = DatasetInfo(name="custom", num_classes=label_nc, class_names=[f"class-{i}" for i in range(label_nc)],
                           has_instance=bool(use_instance), resolution=hw)
        data: dict[str, Any] = {"name": "custom", "root": "datasets/custom", "num_classes": label_nc,
                                "dontcare": None, "preprocess": "fixed", "crop_size": int(crop),
                                "aspect_ratio": 2.0, "flip": False}
        return data, info, {str(v): v for v in range(label_nc)}
    data = {"name": "cityscapes", "root": section_value(s.raw, "data", "root") or "datasets/cityscapes",
            "preprocess": "fixed", "load_size": int(crop), "crop_size": int(crop), "aspect_ratio": 2.0,
            "use_instance": bool(use_instance)}
    data.update({k: v for k, v in (s.sets.get("data") or {}).items() if k != "name"})
    data["flip"] = False
    return data, dataset_info_checked(data), {str(v): v for v in range(CITYSCAPES_LABEL_NC)}


def _convert_discriminator(state: Mapping[str, torch.Tensor], info: DatasetInfo, channels: int,
                           s: Settings) -> torch.nn.Module:
    interm = sorted({(int(m.group(1)), int(m.group(2))) for k in state
                     if (m := re.match(r"^scale(\d+)_layer(\d+)\.", k))})
    flat = sorted({int(m.group(1)) for k in state if (m := re.match(r"^layer(\d+)\.model\.", k))})
    pairs: list[tuple[str, str]] = []
    if interm:
        num_d = len({s_ for s_, _ in interm})
        layers = len({j for _, j in interm}) - 1
        for s_, j in interm:
            pairs.append((f"scale{s_}_layer{j}.", f"discriminator_{num_d - 1 - s_}.model{j}."))
        first = state.get("scale0_layer0.0.weight")
        mid_bias = "scale0_layer1.0.bias" in state
    elif flat:  # --no_ganFeat_loss: each scale is one flat Sequential
        num_d = len(flat)
        for s_ in flat:
            convs = [u[1] for u in sequential_units(state, f"layer{s_}.model.") if u[0] == "conv"]
            for j, (conv, norm) in enumerate(convs):
                pairs.append((conv, f"discriminator_{num_d - 1 - s_}.model{j}.0."))
                if norm is not None:
                    pairs.append((norm, f"discriminator_{num_d - 1 - s_}.model{j}.1."))
        layers = len(convs) - 1
        first = state.get("layer0.model.0.weight")
        mid_bias = "layer0.model.2.bias" in state
    else:
        raise ConversionError(f"--discriminator: not a pix2pixHD multi-scale discriminator checkpoint (no "
                              f"scale0_layer0.* / layer0.model.*; its first keys: {', '.join(list(state)[:3])})")
    if first is None or first.dim() != 4:
        raise ConversionError("--discriminator: the first conv of the finest scale is missing")
    if int(first.shape[1]) != channels + 3:
        raise ConversionError(f"--discriminator: its first conv has shape {list(first.shape)}, {first.shape[1]} input "
                              f"channels, but the generator reads {channels} (+ 3 for the image): the two files are "
                              f"of different models")
    spec: dict[str, Any] = {"name": "multiscale"}
    for name, value in (("num_scales", num_d), ("num_layers", layers), ("width", int(first.shape[0])),
                        ("spectral", False), ("conv_bias", mid_bias)):
        spec[name] = s.resolve(name, value, sec="discriminator")
    spec = s.fill("discriminator", spec)
    try:
        D = build_discriminator(spec, num_classes=info.num_classes, use_instance=info.has_instance)
    except ConfigError as e:
        raise ConversionError(f"cannot build the discriminator for this checkpoint: {e}") from e
    # (pix2pixHD's --n_layers_D counts one layer fewer: num_layers = n_layers_D + 1)
    load_renamed(D, state, pairs, "discriminator checkpoint",
                f"read as {num_d} x PatchGAN (n_layers_D {layers - 1}) of width {spec['width']} on {channels} label "
                f"channels, instance norm (semsynth's multiscale D has no batch-norm variant)")
    return D


@register("pix2pixhd")
def convert_pix2pixhd(state: Mapping[str, torch.Tensor], opt: Mapping[str, Any], *,
                      encoder_state: Mapping[str, torch.Tensor] | None = None,
                      discriminator_state: Mapping[str, torch.Tensor] | None = None,
                      preset: str | None = None, overrides: list[str] | tuple[str, ...] = ()) -> Converted:
    if looks_like(state) != "pix2pixhd":
        raise wrong_family(state, "pix2pixhd", "a pix2pixHD GlobalGenerator / LocalEnhancer (no model.1.weight + "
                                               "model.1.bias, no model1_1.*)")
    if encoder_state is not None:
        raise ConversionError("--encoder: pix2pixHD has no VAE style encoder (its feature encoder, netE with "
                              "--instance_feat, is not implemented in semsynth); convert without --encoder")
    s = Settings(("pix2pixhd",), preset, overrides, "pix2pixHD")
    notes: list[str] = []
    shapes, pairs = infer_generator(state)
    local = shapes["n_local_enhancers"] > 0
    if opt.get("netG") not in (None, "global", "local"):
        raise ConversionError(f"opt.txt: netG {opt['netG']!r} is not pix2pixHD's global or local generator")
    if opt.get("netG") is not None and (opt["netG"] == "local") != local:
        raise ConversionError(f"opt.txt: netG {opt['netG']!r}, but the checkpoint {'has' if local else 'has no'} "
                              f"local enhancer (model1_1.*)")
    channels = shapes["channels"]
    data, info, label_values = _dataset(channels, opt, s, local, notes)
    h, w = (int(x) for x in info.resolution)
    spec: dict[str, Any] = {"name": "pix2pixhd"}
    spec["ngf"] = s.resolve("ngf", shapes["ngf"], opt.get("ngf"))
    spec["n_downsample"] = s.resolve("n_downsample", shapes["n_downsample"], opt.get("n_downsample_global"))
    spec["n_blocks"] = s.resolve("n_blocks", shapes["n_blocks"], opt.get("n_blocks_global"))
    spec["n_local_enhancers"] = s.resolve("n_local_enhancers", shapes["n_local_enhancers"],
                                          opt.get("n_local_enhancers") if local else None)
    if local:
        spec["n_blocks_local"] = s.resolve("n_blocks_local", shapes["n_blocks_local"], opt.get("n_blocks_local"))
    if "kernel_size" in shapes:
        spec["kernel_size"] = s.resolve("kernel_size", shapes["kernel_size"])
    spec["first_kernel_size"] = s.resolve("first_kernel_size", shapes["first_kernel_size"])
    spec["norm"] = s.batch_like("norm", shapes["norm"], opt.get("norm"))
    spec["norm_bias"] = s.resolve("norm_bias", shapes["norm_bias"] if spec["norm"] != "none" else None)
    spec["spectral"] = s.resolve("spectral", shapes["spectral"])
    spec = s.fill("generator", spec)
    try:
        G = build_generator(spec, num_classes=info.num_classes, use_instance=info.has_instance, resolution=[h, w])
    except ConfigError as e:
        raise ConversionError(f"cannot build the pix2pixhd generator for this checkpoint: {e}") from e
    hint = (f"read as pix2pixHD {'local' if local else 'global'} with ngf {spec['ngf']}, {spec['n_downsample']} "
            f"down-samplings, {spec['n_blocks']} blocks, {channels} input channels ({info.name}"
            f"{', instance edge' if info.has_instance else ''}); a shape difference means a wrong --from, a wrong "
            f"--preset or the instance map on/off (--set data.use_instance=...)")
    load_renamed(G, state, pairs, "generator checkpoint", hint)
    D = _convert_discriminator(discriminator_state, info, channels, s) if discriminator_state is not None else None
    if opt.get("no_lsgan"):
        notes.append("trained with --no_lsgan (BCE with a sigmoid D); semsynth's D returns logits: fine-tune with "
                     "loss.adversarial=ns")
    notes.append("pix2pixHD reads Cityscapes from flat train_label/train_inst folders; semsynth's cityscapes dataset "
                 "reads the official gtFine tree (the same labelIds and instanceIds PNGs)")
    return Converted(generator=G, info=info, discriminator=D, label_values=label_values, data=data,
                     sources=s.sources, notes=notes)

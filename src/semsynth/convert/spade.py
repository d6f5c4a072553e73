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

The dataset recognition, the settings, the encoder and the discriminator are the SPADE family's conventions
(``spade_family.py``), shared with CC-FPSE's and SC-GAN's converters; this file holds what only SPADE's
generators have.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

import torch

from ..data import DatasetInfo
from ..models import build_generator
from . import (
    ConversionError,
    Converted,
    legacy_spectral_to_parametrized,
    load_strict,
    parametrized_key,
    register,
)
from .spade_family import (
    Settings,
    build_checked,
    check_first_map,
    convert_discriminator,
    convert_encoder,
    spade_dataset,
    vae_first_layer,
    weight_key,
    wrong_family,
)

# SPADE's other dataset_mode: facades (13 classes, no don't-care, no instances) is a custom dataset in semsynth
ALSO = {"facades": "custom"}


# ------------------------------------------------------------------------------------------------------------
# SPADE's options


def parse_norm_g(norm_g: Any) -> tuple[bool | None, str | None, int | None]:
    """SPADE's ``norm_G`` string (``spectralspadesyncbatch3x3``) -> (spectral, param-free norm, kernel size)."""
    if not isinstance(norm_g, str):
        return None, None, None
    m = re.fullmatch(r"(spectral)?spade(\D+)(\d)x\d", norm_g)
    if not m:
        return norm_g.startswith("spectral"), None, None
    return bool(m.group(1)), m.group(2), int(m.group(3))


# ------------------------------------------------------------------------------------------------------------
# --netG spade


def infer_spade(state: Mapping[str, torch.Tensor]) -> dict[str, Any]:
    """The SPADE generator options its tensor shapes fix, and its input channel count (``channels``)."""
    mlp = state["head_0.norm_0.mlp_shared.0.weight"]
    conv = weight_key(state, "head_0.conv_0.")
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
    vae = vae_first_layer(fc, 16 * ngf, "16 * ngf")
    out["use_vae"] = vae is not None
    if vae is not None:
        out["z_dim"], out["start_cells"] = vae
    return out


def _convert_spade_generator(state: Mapping[str, torch.Tensor], opt: Mapping[str, Any], s: Settings,
                             notes: list[str]) -> tuple[torch.nn.Module, DatasetInfo, dict, dict, int]:
    shapes = infer_spade(state)
    channels = shapes["channels"]
    mode, data, info, label_values = spade_dataset(channels, opt, s, notes, also=ALSO)
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
    if shapes["use_vae"]:
        check_first_map(state["fc.weight"], shapes["start_cells"], f"16 * ngf = {16 * shapes['ngf']}", (h, w), factor,
                        nul)
    spec = s.fill("generator", spec)
    G = build_checked(build_generator, spec, "SPADE generator", num_classes=info.num_classes,
                      use_instance=info.has_instance, resolution=[h, w])
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
    weight = state[weight_key(state, head_conv)]
    out: dict[str, Any] = {"channels": int(weight.shape[1]), "width": int(weight.shape[0]),
                           "first_kernel_size": int(weight.shape[-1]), "n_downsample": n_down,
                           "n_blocks": len(blocks), "spectral": head_conv + "weight_orig" in state,
                           "norm_bias": head_conv + "bias" in state}
    if blocks:
        c0 = blocks[0][1][0][0]
        out["kernel_size"] = int(state[weight_key(state, c0)].shape[-1])
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
        out[key] = parametrized_key(k)
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
    _, data, info, label_values = spade_dataset(channels, opt, s, notes, also=ALSO)
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
    G = build_checked(build_generator, spec, "pix2pixhd generator", num_classes=info.num_classes,
                      use_instance=info.has_instance, resolution=[h, w])
    hint = (f"read as SPADE's pix2pixhd with ngf {spec['ngf']}, {spec['n_downsample']} down-samplings, "
            f"{spec['n_blocks']} blocks, {channels} input channels ({info.name}); a shape difference means a wrong "
            f"--from, a wrong --preset or the instance map on/off (--set data.use_instance=...)")
    load_renamed(G, state, resnet_key_map(units, "global_generator", True), "generator checkpoint", hint)
    notes.append("SPADE's --netG pix2pixhd generator (semsynth 'pix2pixhd' as SPADE's code builds it)")
    return G, info, data, label_values, channels


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

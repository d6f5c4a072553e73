"""Run configuration: YAML presets, ``--set key=value`` overrides, validation, full resolution.

Order (fixed): section defaults -> YAML preset -> ``--set`` overrides -> dataset facts -> model defaults from
the registered constructors -> validation. The result, written to ``<run>/config.yaml``, rebuilds the run
by itself.

A config has these sections:

* ``data``: ``{name, **dataset options}`` (a registered dataset; its constructor is the schema);
* ``generator``, ``discriminator``, ``encoder`` (``null`` for none): ``{name, **constructor options}``;
* ``loss``, ``optim``, ``train``: the dataclasses below.
"""

from __future__ import annotations

import copy
import dataclasses
import os
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from .errors import ConfigError

PRESET_DIR = Path(__file__).parent / "configs"


@dataclass
class LossConfig:
    """Loss weights (0 switches a term off) and choices. Defaults: SC-GAN paper Eq. 6 / official code."""

    adversarial: str = "hinge"  # hinge | ns | ls
    gan: float = 1.0
    feature_matching: float = 10.0
    perceptual: float = 10.0  # VGG19 (needs ImageNet weights, see vgg_weights)
    semantic: float = 2.0  # L_s: SVG coarse RGB vs real image (SC-GAN only)
    semantic_loss: str = "l1"  # l1 | l2 | vgg
    kl: float = 0.05  # VAE KL term (only with an encoder), sum-reduced as the official code
    vgg_weights: str | None = None  # path to vgg19-dcbb9e9d.pth; default: the torch hub cache
    vgg_imagenet_normalize: bool = False  # official: VGG sees [-1, 1] images as they are


@dataclass
class OptimConfig:
    """Adam; with TTUR (official) the generator runs at lr / 2 and the discriminator at 2 * lr."""

    lr: float = 2.0e-4  # base learning rate (official)
    ttur: bool = True  # two time-scale update rule: G lr / 2, D 2 * lr; off: both lr
    lr_g: float | None = None  # explicit generator (and encoder) rate; resolved from lr and ttur when null
    lr_d: float | None = None  # explicit discriminator rate; resolved likewise
    beta1: float = 0.0
    beta2: float = 0.999
    eps: float = 1.0e-8  # Adam's epsilon (PyTorch default, as the official code)

    def resolve(self) -> None:
        if self.lr_g is None:
            self.lr_g = self.lr / 2 if self.ttur else self.lr
        if self.lr_d is None:
            self.lr_d = self.lr * 2 if self.ttur else self.lr


@dataclass
class TrainConfig:
    """Length, batch, schedule and bookkeeping of a run."""

    batch_size: int = 16
    epochs: float = 200.0  # passes over the training set ...
    images: int | None = None  # ... or, when set, the number of training images to show instead
    decay_start: float = 0.5  # fraction of training after which both LRs decay linearly to 0 (1 = constant)
    d_steps_per_g: int = 1
    d_fakes: str = "regenerate"  # regenerate (official: fresh G forward for the D step) | reuse (G step's fakes)
    seed: int = 0
    device: str = "auto"  # auto | cpu | cuda | cuda:N
    threads: int | None = None  # CPU threads per process (torch.set_num_threads); null = PyTorch's default
    num_workers: int = 0
    log_every: int = 1000  # images between log lines / stats.jsonl records
    sample_every: int = 10000  # images between sample grids
    checkpoint_every: int = 50000  # images between checkpoints
    keep_checkpoints: int = 3
    num_samples: int = 8  # rows of the sample grid
    precision: str = "fp32"  # fp32 | bf16 (autocast, CPU or CUDA) | fp16 (autocast + gradient scaler, CUDA)
    accumulate: int = 1  # split each batch into this many micro-batches, one optimiser step (saves memory)
    compile: bool = False  # torch.compile the generator and discriminator
    channels_last: bool = False  # NHWC memory format for models and inputs
    sync_batchnorm: bool = True  # under DDP on CUDA, synchronise the generator's sync-batch norms
    nan_patience: int = 20  # consecutive non-finite steps (each skipped) before the run stops
    tensorboard: bool = True  # also write TensorBoard events (needs the tensorboard package)
    ema: bool = False  # keep an exponential moving average of G, used for samples and export (official: off)
    ema_halflife_images: int = 10000  # images over which an old weight's share halves
    ema_rampup: float | None = 0.05  # half-life at most this fraction of the images seen so far (early speed-up)


SECTIONS = ("data", "generator", "discriminator", "encoder", "loss", "optim", "train")
_DATACLASS_SECTIONS = {"loss": LossConfig, "optim": OptimConfig, "train": TrainConfig}


@dataclass
class RunConfig:
    data: dict[str, Any]
    generator: dict[str, Any]
    discriminator: dict[str, Any]
    encoder: dict[str, Any] | None = None
    loss: LossConfig = field(default_factory=LossConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    name: str = "run"  # preset / run name, used for the run directory

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "data": copy.deepcopy(self.data),
            "generator": copy.deepcopy(self.generator),
            "discriminator": copy.deepcopy(self.discriminator),
            "encoder": copy.deepcopy(self.encoder),
            "loss": dataclasses.asdict(self.loss),
            "optim": dataclasses.asdict(self.optim),
            "train": dataclasses.asdict(self.train),
        }

    def to_yaml(self) -> str:
        return yaml.safe_dump(self.to_dict(), sort_keys=False, default_flow_style=False)


# ------------------------------------------------------------------------------------------------------------
# Loading


def preset_names() -> list[str]:
    return sorted(p.stem for p in PRESET_DIR.glob("*.yaml"))


def find_config(path_or_name: str | os.PathLike) -> Path:
    """A YAML path, or the name of a built-in preset (``scgan-ade20k``)."""
    p = Path(path_or_name).expanduser()
    if p.is_file():
        return p
    preset = PRESET_DIR / f"{path_or_name}.yaml"
    if preset.is_file():
        return preset
    raise ConfigError(f"config {str(path_or_name)!r} is neither a file nor a preset; presets are: "
                      f"{', '.join(preset_names())}")


def read_yaml(path: Path) -> dict[str, Any]:
    try:
        with open(path, encoding="utf-8") as f:
            data = yaml.safe_load(f)
    except yaml.YAMLError as e:
        raise ConfigError(f"{path}: not valid YAML: {e}") from e
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: a config must be a mapping of sections ({', '.join(SECTIONS)})")
    return data


def parse_override(text: str) -> tuple[list[str], Any]:
    """``"train.batch_size=8"`` -> (["train", "batch_size"], 8); the value is parsed as YAML."""
    if "=" not in text:
        raise ConfigError(f"--set {text!r}: expected key=value, e.g. --set train.batch_size=8")
    key, raw = text.split("=", 1)
    keys = [k for k in key.strip().split(".") if k]
    if not keys:
        raise ConfigError(f"--set {text!r}: empty key")
    try:
        value = yaml.safe_load(raw) if raw.strip() else None
    except yaml.YAMLError as e:
        raise ConfigError(f"--set {text!r}: cannot parse the value: {e}") from e
    return keys, value


def apply_overrides(raw: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    raw = copy.deepcopy(raw)
    for text in overrides:
        keys, value = parse_override(text)
        if keys[0] not in SECTIONS and keys != ["name"]:
            raise ConfigError(f"--set {text!r}: unknown section {keys[0]!r}; sections are: {', '.join(SECTIONS)}")
        node = raw
        for k in keys[:-1]:
            if node.get(k) is None:
                node[k] = {}
            if not isinstance(node[k], dict):
                raise ConfigError(f"--set {text!r}: {k!r} is not a section")
            node = node[k]
        node[keys[-1]] = value
    return raw


def _check_type(section: str, key: str, value: Any, annotation: Any) -> Any:
    """Validate (and gently coerce int -> float) a dataclass field value."""
    if isinstance(annotation, str):
        annotation = eval(annotation, {"Any": Any}, {})  # annotations are postponed strings
    origin = typing.get_origin(annotation)
    if origin in (typing.Union, types.UnionType):
        options = typing.get_args(annotation)
        if value is None and type(None) in options:
            return None
        errors = []
        for opt in options:
            if opt is type(None):
                continue
            try:
                return _check_type(section, key, value, opt)
            except ConfigError as e:
                errors.append(e)
        raise errors[0]
    if annotation is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if annotation is Any or (isinstance(annotation, type) and isinstance(value, annotation)
                             and not (annotation is int and isinstance(value, bool))):
        return value
    name = getattr(annotation, "__name__", str(annotation))
    raise ConfigError(f"{section}.{key} = {value!r} should be of type {name}")


def build_section(section: str, values: dict[str, Any] | None):
    cls = _DATACLASS_SECTIONS[section]
    values = dict(values or {})
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(values) - set(fields))
    if unknown:
        raise ConfigError(f"{section}: unknown key(s) {', '.join(map(repr, unknown))}; valid keys are: "
                          f"{', '.join(fields)}")
    checked = {k: _check_type(section, k, v, fields[k].type) for k, v in values.items()}
    return cls(**checked)


def _validate(cfg: RunConfig) -> None:
    loss, optim, train = cfg.loss, cfg.optim, cfg.train
    from .losses.adversarial import ADVERSARIAL_LOSSES

    if loss.adversarial not in ADVERSARIAL_LOSSES:
        raise ConfigError(f"loss.adversarial = {loss.adversarial!r}; valid: {', '.join(ADVERSARIAL_LOSSES)}")
    if loss.semantic_loss not in ("l1", "l2", "vgg"):
        raise ConfigError(f"loss.semantic_loss = {loss.semantic_loss!r}; valid: l1, l2, vgg")
    for k in ("gan", "feature_matching", "perceptual", "semantic", "kl"):
        if getattr(loss, k) < 0:
            raise ConfigError(f"loss.{k} = {getattr(loss, k)} must be >= 0 (0 switches the term off)")
    optim.resolve()
    if optim.lr <= 0 or optim.lr_g <= 0 or optim.lr_d <= 0:
        raise ConfigError(f"optim.lr_g and optim.lr_d must be > 0, got {optim.lr_g}, {optim.lr_d}")
    if optim.eps <= 0:
        raise ConfigError(f"optim.eps = {optim.eps} must be > 0")
    if not (0 <= optim.beta1 < 1 and 0 <= optim.beta2 < 1):
        raise ConfigError(f"optim.beta1/beta2 must be in [0, 1), got {optim.beta1}, {optim.beta2}")
    if train.batch_size < 1:
        raise ConfigError(f"train.batch_size = {train.batch_size} must be >= 1")
    if train.epochs <= 0 and train.images is None:
        raise ConfigError(f"train.epochs = {train.epochs} must be > 0 (or set train.images)")
    if train.images is not None and train.images < 1:
        raise ConfigError(f"train.images = {train.images} must be >= 1")
    if not 0 <= train.decay_start <= 1:
        raise ConfigError(f"train.decay_start = {train.decay_start} must be in [0, 1]")
    if train.d_steps_per_g < 1:
        raise ConfigError(f"train.d_steps_per_g = {train.d_steps_per_g} must be >= 1")
    if train.d_fakes not in ("regenerate", "reuse"):
        raise ConfigError(f"train.d_fakes = {train.d_fakes!r}; valid: regenerate, reuse")
    if train.precision not in ("fp32", "bf16", "fp16"):
        raise ConfigError(f"train.precision = {train.precision!r}; valid: fp32, bf16, fp16")
    if train.accumulate < 1 or train.batch_size % train.accumulate:
        raise ConfigError(f"train.accumulate = {train.accumulate} must be >= 1 and divide train.batch_size "
                          f"({train.batch_size})")
    if train.nan_patience < 1:
        raise ConfigError(f"train.nan_patience = {train.nan_patience} must be >= 1")
    if train.ema_halflife_images < 1:
        raise ConfigError(f"train.ema_halflife_images = {train.ema_halflife_images} must be >= 1")
    if train.ema_rampup is not None and train.ema_rampup <= 0:
        raise ConfigError(f"train.ema_rampup = {train.ema_rampup} must be > 0 (or null for none)")
    for k in ("log_every", "sample_every", "checkpoint_every", "keep_checkpoints", "num_samples"):
        if getattr(train, k) < 1:
            raise ConfigError(f"train.{k} = {getattr(train, k)} must be >= 1")
    if train.threads is not None and train.threads < 1:
        raise ConfigError(f"train.threads = {train.threads} must be >= 1 (or null for PyTorch's default)")
    if train.num_workers < 0:
        raise ConfigError(f"train.num_workers = {train.num_workers} must be >= 0")
    dev = train.device
    if not (dev in ("auto", "cpu", "cuda") or dev.startswith("cuda:")):
        raise ConfigError(f"train.device = {dev!r}; valid: auto, cpu, cuda, cuda:N")
    if cfg.encoder is not None and cfg.generator.get("input_mode") != "noise":
        raise ConfigError("an encoder (VAE) needs a generator that takes z: set generator.input_mode=noise, "
                          "or encoder=null")


def dataset_info(data_spec: dict[str, Any]):
    """The dataset's facts, without reading the whole dataset when the class can describe itself."""
    from .data import DATASETS

    full = DATASETS.resolve(data_spec)
    cls = DATASETS.get(full["name"])
    kwargs = {k: v for k, v in full.items() if k != "name"}
    if hasattr(cls, "describe"):
        return cls.describe(**kwargs)
    return DATASETS.build(full).info


def resolve_config(raw: dict[str, Any], overrides: list[str] | tuple[str, ...] = (), name: str | None = None) -> RunConfig:
    """Validate and fully resolve a raw config mapping (as read from YAML) plus ``--set`` overrides."""
    from .data import DATASETS
    from .models import DISCRIMINATORS, ENCODERS, GENERATORS

    raw = apply_overrides(raw, list(overrides))
    unknown = sorted(set(raw) - set(SECTIONS) - {"name"})
    if unknown:
        raise ConfigError(f"unknown config section(s) {', '.join(map(repr, unknown))}; sections are: "
                          f"{', '.join(SECTIONS)}")
    for sec in ("data", "generator", "discriminator"):
        if not isinstance(raw.get(sec), dict) or "name" not in raw[sec]:
            raise ConfigError(f"config section {sec!r} needs a 'name'")
    data = DATASETS.resolve(raw["data"])
    info = dataset_info(data)
    interface = info.model_interface()
    for sec in ("generator", "discriminator"):
        clash = sorted(set(raw[sec]) & set(interface))
        if clash:
            raise ConfigError(f"{sec}: {', '.join(clash)} come(s) from the dataset ({info.name}: "
                              f"{', '.join(f'{k}={interface[k]}' for k in clash)}); remove them from the config")
    generator = GENERATORS.resolve(raw["generator"], **interface)
    discriminator = DISCRIMINATORS.resolve(raw["discriminator"], **interface)
    encoder = None
    if raw.get("encoder") is not None:
        if not isinstance(raw["encoder"], dict):
            raise ConfigError("config section 'encoder' must be a mapping with a 'name', or null")
        encoder = ENCODERS.resolve(raw["encoder"], z_dim=generator.get("z_dim", 256))
    cfg = RunConfig(
        data=data, generator=generator, discriminator=discriminator, encoder=encoder,
        loss=build_section("loss", raw.get("loss")), optim=build_section("optim", raw.get("optim")),
        train=build_section("train", raw.get("train")), name=str(raw.get("name") or name or "run"),
    )
    _validate(cfg)
    return cfg


def load_config(path_or_name: str | os.PathLike, overrides: list[str] | tuple[str, ...] = ()) -> RunConfig:
    """Read a YAML preset (file or built-in name), apply overrides, validate and resolve."""
    path = find_config(path_or_name)
    raw = read_yaml(path)
    try:
        return resolve_config(raw, overrides, name=path.stem)
    except ConfigError as e:
        raise ConfigError(f"{path}: {e}") from e

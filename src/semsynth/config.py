"""Run configuration: YAML presets, ``--set key=value`` overrides, validation, full resolution.

Order (fixed): section defaults -> YAML preset -> ``--set`` overrides -> dataset facts -> model defaults from
the registered constructors -> validation. The result, written to ``<run>/config.yaml``, rebuilds the run
by itself.

A config has these sections:

* ``data``: ``{name, **dataset options}`` (a registered dataset; its constructor is the schema);
* ``generator``, ``discriminator`` (``null`` for an objective without one), ``encoder`` (``null`` for none):
  ``{name, **constructor options}``;
* ``loss``: the objective, ``{name, **options}`` (a registered objective, ``semsynth/objectives/``; without a
  name the default ``gan`` objective);
* ``optim``, ``train``: the dataclasses below.
"""

from __future__ import annotations

import copy
import dataclasses
import json
import os
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from .errors import ConfigError, SemsynthError
from .registry import check_value, short_repr, type_name

PRESET_DIR = Path(__file__).parent / "configs"


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
    recompute: bool = False  # recompute G's residual blocks in backward: less memory, one more forward of them
    # SCC layers (scgan) on maps of at least this many pixels recompute their stacked convolution in backward instead
    # of keeping it (n * Cout channels per layer): less memory, more time; null (default): never
    scc_recompute_pixels: int | None = None
    sync_batchnorm: bool = True  # under DDP on CUDA, synchronise the generator's sync-batch norms
    nan_patience: int = 20  # consecutive non-finite steps (each skipped) before the run stops
    tensorboard: bool = True  # also write TensorBoard events (needs the tensorboard package)
    ema: bool = False  # keep an exponential moving average of G, used for samples and export (official: off)
    ema_halflife_images: int = 10000  # images over which an old weight's share halves
    ema_rampup: float | None = 0.05  # half-life at most this fraction of the images seen so far (early speed-up)
    init: str | None = None  # fine-tuning: a model directory (export/convert) whose weights start a new run
    ema_bn_batches: int = 0  # before the EMA is used: re-estimate its batch-norm statistics on N batches (OASIS 50)


SECTIONS = ("data", "generator", "discriminator", "encoder", "loss", "optim", "train")
_DATACLASS_SECTIONS = {"optim": OptimConfig, "train": TrainConfig}


@dataclass
class RunConfig:
    data: dict[str, Any]
    generator: dict[str, Any]
    discriminator: dict[str, Any] | None  # None: the objective trains without an adversary (CRN)
    encoder: dict[str, Any] | None = None
    loss: dict[str, Any] = field(default_factory=lambda: {"name": "gan"})  # the objective: {name, **options}
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
            "loss": copy.deepcopy(self.loss),
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


# what yaml.safe_load raises for text it cannot turn into values: syntax errors, and e.g. a timestamp with
# month 13 (ValueError), or a document nested thousands of levels deep (RecursionError)
_YAML_ERRORS = (yaml.YAMLError, ValueError, TypeError, OverflowError, RecursionError)


def read_yaml(path: Path) -> dict[str, Any]:
    """A config file's mapping of sections (an empty file is ``{}``)."""
    try:
        with open(path, encoding="utf-8") as f:
            data = yaml.safe_load(f)
    except UnicodeDecodeError as e:
        raise ConfigError(f"{path}: not a text file in UTF-8 ({e.reason} at byte {e.start}); give a YAML "
                          f"config") from None
    except _YAML_ERRORS as e:
        raise ConfigError(f"{path}: not valid YAML: {e}") from None
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: a config must be a mapping of sections ({', '.join(SECTIONS)}), got "
                          f"{short_repr(data)} ({type_name(data)})")
    bad = [k for k in data if not isinstance(k, str)]
    if bad:
        raise ConfigError(f"{path}: section names must be strings, got {short_repr(bad[0])} ({type_name(bad[0])}); "
                          f"sections are: {', '.join(SECTIONS)}")
    return data


def parse_override(text: str) -> tuple[list[str], Any]:
    """``"train.batch_size=8"`` -> (["train", "batch_size"], 8); the value is parsed as YAML."""
    if not isinstance(text, str):
        raise ConfigError(f"--set {short_repr(text)}: expected a string KEY=VALUE, e.g. --set train.batch_size=8")
    if "=" not in text:
        raise ConfigError(f"--set {text!r}: expected key=value, e.g. --set train.batch_size=8")
    key, raw = text.split("=", 1)
    if not key.strip():
        raise ConfigError(f"--set {text!r}: empty key; write SECTION.KEY=VALUE, e.g. --set train.batch_size=8")
    keys = [k.strip() for k in key.split(".")]
    if not all(keys):
        raise ConfigError(f"--set {text!r}: the key {key.strip()!r} has an empty part (a leading, trailing or "
                          f"doubled '.'); write SECTION.KEY=VALUE, e.g. --set train.batch_size=8")
    try:
        value = yaml.safe_load(raw) if raw.strip() else None
    except _YAML_ERRORS as e:
        raise ConfigError(f"--set {text!r}: cannot parse the value {raw!r} as YAML: {e}; quote a string value, "
                          f"e.g. --set 'data.root=\"my dir\"'") from None
    return keys, value


def apply_overrides(raw: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    """``raw`` with each ``--set KEY=VALUE`` applied in order (a copy; ``raw`` is not changed)."""
    if not isinstance(raw, dict):
        raise ConfigError(f"a config must be a mapping of sections ({', '.join(SECTIONS)}), got "
                          f"{short_repr(raw)} ({type_name(raw)})")
    raw = copy.deepcopy(raw)
    for text in overrides:
        keys, value = parse_override(text)
        if keys[0] == "name" and len(keys) > 1:
            raise ConfigError(f"--set {text!r}: 'name' is the run name (a string), not a section; use "
                              f"--set name=VALUE")
        if keys[0] not in SECTIONS and keys[0] != "name":
            raise ConfigError(f"--set {text!r}: unknown section {keys[0]!r}; sections are: {', '.join(SECTIONS)}")
        node = raw
        for depth, k in enumerate(keys[:-1]):
            if node.get(k) is None:
                node[k] = {}
            if not isinstance(node[k], dict):
                where = ".".join(keys[: depth + 1])
                raise ConfigError(f"--set {text!r}: {where} is {short_repr(node[k])} ({type_name(node[k])}), "
                                  f"not a section, so it has no key {keys[depth + 1]!r}; set {where} itself, "
                                  f"or make it a mapping first")
            node = node[k]
        node[keys[-1]] = value
    return raw


def _field_types(cls) -> dict[str, Any]:
    """The evaluated annotations of a config dataclass (they are postponed strings in this module)."""
    return typing.get_type_hints(cls)


def build_section(section: str, values: dict[str, Any] | None):
    """The typed section ``loss``/``optim``/``train`` from its mapping (``None``: all defaults).

    Every value is checked against the field's annotation; floats must be finite unless the field says
    ``metadata={"allow_nonfinite": True}``.
    """
    cls = _DATACLASS_SECTIONS[section]
    if values is None:
        values = {}
    if not isinstance(values, dict):
        raise ConfigError(f"config section {section!r} must be a mapping of keys to values (or null for the "
                          f"defaults), got {short_repr(values)} ({type_name(values)}); e.g. "
                          f"{section}: {{{dataclasses.fields(cls)[0].name}: ...}}")
    fields = {f.name: f for f in dataclasses.fields(cls)}
    bad = [k for k in values if not isinstance(k, str)]
    if bad:
        raise ConfigError(f"{section}: key {short_repr(bad[0])} ({type_name(bad[0])}) is not a name; valid keys are: "
                          f"{', '.join(fields)}")
    unknown = sorted(set(values) - set(fields))
    if unknown:
        raise ConfigError(f"{section}: unknown key(s) {', '.join(map(repr, unknown))}; valid keys are: "
                          f"{', '.join(fields)}")
    types_ = _field_types(cls)
    checked = {k: check_value(f"{section}.{k}", v, types_[k],
                              allow_nonfinite=bool(fields[k].metadata.get("allow_nonfinite")))
               for k, v in values.items()}
    return cls(**checked)


def _validate(cfg: RunConfig) -> None:
    optim, train = cfg.optim, cfg.train
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
    if train.scc_recompute_pixels is not None and train.scc_recompute_pixels < 1:
        raise ConfigError(f"train.scc_recompute_pixels = {train.scc_recompute_pixels} must be >= 1 (pixels per "
                          f"image), or null to keep every SCC layer's stacked output")
    if train.nan_patience < 1:
        raise ConfigError(f"train.nan_patience = {train.nan_patience} must be >= 1")
    if train.ema_halflife_images < 1:
        raise ConfigError(f"train.ema_halflife_images = {train.ema_halflife_images} must be >= 1")
    if train.ema_bn_batches < 0:
        raise ConfigError(f"train.ema_bn_batches = {train.ema_bn_batches} must be >= 0 (0: no refresh)")
    if train.ema_rampup is not None and train.ema_rampup <= 0:
        raise ConfigError(f"train.ema_rampup = {train.ema_rampup} must be > 0 (or null for none)")
    for k in ("log_every", "sample_every", "checkpoint_every", "keep_checkpoints", "num_samples"):
        if getattr(train, k) < 1:
            raise ConfigError(f"train.{k} = {getattr(train, k)} must be >= 1")
    if train.init is not None and not str(train.init).strip():
        raise ConfigError("train.init is empty; give a model directory (written by 'semsynth export' or "
                          "'semsynth convert', or a run's model/ folder), or null to start from scratch")
    if train.threads is not None and train.threads < 1:
        raise ConfigError(f"train.threads = {train.threads} must be >= 1 (or null for PyTorch's default)")
    if train.num_workers < 0:
        raise ConfigError(f"train.num_workers = {train.num_workers} must be >= 0")
    if not 0 <= train.seed < 2**63:
        raise ConfigError(f"train.seed = {train.seed} must be in [0, 2**63 - 1]")
    dev = train.device
    if not (dev in ("auto", "cpu", "cuda") or (dev.startswith("cuda:") and dev[5:].isascii()
                                               and dev[5:].isdigit())):
        raise ConfigError(f"train.device = {short_repr(dev)}; valid: auto, cpu, cuda, cuda:N (N a GPU index)")
    from .models import generator_latent_dim

    if cfg.encoder is not None and generator_latent_dim(cfg.generator) == 0:
        import torch

        from .models import GENERATORS

        with torch.device("meta"):  # an invalid generator option (z_dim=0, ...) is the error to report first
            GENERATORS.build(cfg.generator)
        hint = "set generator.input_mode=noise" if cfg.generator["name"] == "scgan" else \
            "use a generator option that makes it take z"
        raise ConfigError(f"an encoder (VAE) needs a generator that takes z, and generator "
                          f"{cfg.generator['name']!r} as configured takes none: {hint}, or set encoder=null")


def dataset_info(data_spec: dict[str, Any]):
    """The dataset's facts, without reading the whole dataset when the class can describe itself."""
    from .data import DATASETS

    full = DATASETS.resolve(data_spec)
    cls = DATASETS.get(full["name"])
    kwargs = {k: v for k, v in full.items() if k != "name"}
    if hasattr(cls, "describe"):
        try:
            return cls.describe(**kwargs)
        except SemsynthError:
            raise
        except (TypeError, ValueError, OverflowError) as e:
            raise ConfigError(f"dataset {full['name']!r}: these options do not describe a dataset: {e}") from e
    return DATASETS.build(full).info


_CHECKED_MODELS: set[str] = set()
_RESOLUTION_KEYS = ("resolution", "crop_size", "load_size", "aspect_ratio", "preprocess")


def objective_class(loss: dict[str, Any]):
    from .objectives import objective_class as _cls

    return _cls(loss)


def check_models(cfg: RunConfig, info: Any = None) -> None:
    """Build the generator, discriminator (and encoder) on the meta device and run one shape-only forward pass
    at the dataset's resolution, as a training step would: a config that cannot train fails here, before
    anything is written. Costs a fraction of a second (no memory, no arithmetic).
    """
    import torch

    from .models import DISCRIMINATORS, ENCODERS, GENERATORS

    if info is None:
        info = dataset_info(cfg.data)
    h, w = (int(x) for x in info.resolution)
    channels = info.semantic_channels
    # one micro-batch as training sees it (batch norm needs more than one value per channel)
    b = min(2, max(1, cfg.train.batch_size // max(1, cfg.train.accumulate)))
    try:
        key = json.dumps([cfg.generator, cfg.discriminator, cfg.encoder, h, w, channels, b, cfg.train.recompute],
                         sort_keys=True, default=repr)
    except (TypeError, ValueError, RecursionError):  # a value JSON cannot write: check without the memo
        key = None
    if key in _CHECKED_MODELS:  # the same networks at the same input passed before (in this process)
        return
    size_keys = [f"data.{k} ({cfg.data[k]})" for k in _RESOLUTION_KEYS if k in cfg.data]
    data_fix = (f"change {' / '.join(size_keys)}" if size_keys else "change the data section") + " or "

    def build(registry, spec, section):
        try:
            return registry.build(spec)
        except SemsynthError:
            raise
        except (RuntimeError, MemoryError, IndexError) as e:  # e.g. a width so large the sizes overflow
            raise ConfigError(f"cannot build {registry.kind} {spec['name']!r} with these {section} options: "
                              f"{e}") from e

    with torch.device("meta"):
        G = build(GENERATORS, cfg.generator, "generator")
        D = build(DISCRIMINATORS, cfg.discriminator, "discriminator") if cfg.discriminator is not None else None
        E = build(ENCODERS, cfg.encoder, "encoder") if cfg.encoder is not None else None
    if cfg.train.recompute:
        from .layers.recompute import enable_recompute

        if not enable_recompute(G):
            raise ConfigError(f"train.recompute = true: generator {cfg.generator['name']!r} has no residual blocks "
                              f"to recompute (it applies to scgan, scgan-unpaired, spade, oasis, ccfpse, pix2pixhd and "
                              f"crn); set train.recompute=false")
    stage = "generator"
    try:
        with torch.no_grad():
            semantic = torch.zeros(b, channels, h, w, device="meta")
            real = torch.zeros(b, 3, h, w, device="meta")
            z = None
            if E is not None:
                stage = "encoder"
                z, _ = E(real)
            stage = "generator"
            out = G(semantic, z, return_aux=True)
            fake = out.image if hasattr(out, "image") else out
            stage = "discriminator"
            if D is not None:
                D(torch.cat([fake, real]), torch.cat([semantic, semantic]))
    except NotImplementedError:  # an operator without a meta kernel: this check cannot tell, training will
        return
    except (SemsynthError, RuntimeError, ValueError, TypeError, IndexError) as e:
        name = {"generator": cfg.generator, "discriminator": cfg.discriminator, "encoder": cfg.encoder}[stage]["name"]
        raise ConfigError(
            f"the {stage} ({name!r}) cannot take the dataset's samples ({info.name}: {h}x{w}, {channels} label "
            f"channels, batch {b}): {e}. To fix it, {data_fix}the {stage} options ({stage}.*)"
            + (", or give batch norm more than one sample per micro-batch (train.batch_size / train.accumulate)"
               if b == 1 else "")) from None
    if key is not None:
        if len(_CHECKED_MODELS) > 256:
            _CHECKED_MODELS.clear()
        _CHECKED_MODELS.add(key)


def _check_name(value: Any, default: str) -> str:
    """The run name: it names the run directory, so it must be a plain, non-empty file name."""
    if value is None or value == "":
        value = default
    if isinstance(value, int) and not isinstance(value, bool):
        value = str(value)
    if not isinstance(value, str):
        raise ConfigError(f"name = {short_repr(value)} ({type_name(value)}) should be a string (the run name, used "
                          f"for the run directory)")
    if value in (".", "..") or any(c in value for c in "/\\") or not value.isprintable() or value != value.strip():
        raise ConfigError(f"name = {value!r} cannot name a run directory; use letters, digits, '-', '_' and '.', "
                          f"without '/', leading or trailing spaces")
    return value


def _check_sections(raw: Any) -> None:
    """The shape of a config: a mapping of known sections, each of the right kind."""
    if not isinstance(raw, dict):
        raise ConfigError(f"a config must be a mapping of sections ({', '.join(SECTIONS)}), got "
                          f"{short_repr(raw)} ({type_name(raw)})")
    bad = [k for k in raw if not isinstance(k, str)]
    if bad:
        raise ConfigError(f"section names must be strings, got {short_repr(bad[0])} ({type_name(bad[0])}); "
                          f"sections are: {', '.join(SECTIONS)}")
    unknown = sorted(set(raw) - set(SECTIONS) - {"name"})
    if unknown:
        raise ConfigError(f"unknown config section(s) {', '.join(map(repr, unknown))}; sections are: "
                          f"{', '.join(SECTIONS)}")
    for sec in ("data", "generator", "discriminator", "encoder"):
        value = raw.get(sec)
        if sec == "encoder" and value is None:
            continue
        if sec == "discriminator" and value is None and "discriminator" in raw:
            continue  # explicitly null: an objective without an adversary (checked in _resolve)
        example = {"data": "synthetic-faces", "generator": "scgan", "discriminator": "fpse", "encoder": "conv"}[sec]
        if not isinstance(value, dict):
            got = "nothing" if value is None else f"{short_repr(value)} ({type_name(value)})"
            null = ", or null for none" if sec == "encoder" else ""
            raise ConfigError(f"config section {sec!r} must be a mapping with a 'name' and options (e.g. "
                              f"{sec}: {{name: {example}}}{null}), got {got}")
        if "name" not in value:
            raise ConfigError(f"config section {sec!r} needs a 'name' (e.g. {sec}.name={example})")


def _same_value(a: Any, b: Any) -> bool:
    """Equality of config values that tells bools from ints and treats tuples as lists."""
    if isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)):
        return len(a) == len(b) and all(_same_value(x, y) for x, y in zip(a, b))
    if isinstance(a, bool) or isinstance(b, bool):
        return type(a) is type(b) and a == b
    return bool(a == b)


def _check_dataset_keys(sec: str, spec: dict[str, Any], interface: dict[str, Any], dataset: str) -> dict[str, Any]:
    """Drop the dataset-derived keys of a model section when they repeat the dataset's values (a run's own
    fully resolved config.yaml holds them); a different value is an error."""
    spec = dict(spec)
    clash = []
    for k in sorted(set(spec) & set(interface)):
        mine, theirs = spec[k], interface[k]
        if k == "resolution" and isinstance(mine, int) and not isinstance(mine, bool):
            mine = [mine, mine]
        if _same_value(mine, theirs):
            del spec[k]
        else:
            clash.append(k)
    if clash:
        raise ConfigError(f"{sec}: {', '.join(f'{k} = {short_repr(spec[k])}' for k in clash)} differ(s) from the "
                          f"dataset ({dataset}: {', '.join(f'{k}={interface[k]}' for k in clash)}); these keys come "
                          f"from the dataset: remove them from the config (or change the data section)")
    return spec


def _resolve_loss(section: Any) -> dict[str, Any]:
    """The ``loss`` section as a resolved objective spec (``{name, **every option}``; no name: ``gan``), its
    options checked by building the objective (cheap: pretrained networks load only in ``prepare``)."""
    from .objectives import OBJECTIVES, loss_spec

    if section is not None and not isinstance(section, dict):
        raise ConfigError(f"config section 'loss' must be a mapping of the objective's options (e.g. loss: {{name: "
                          f"gan, perceptual: 0}}), got {short_repr(section)} ({type_name(section)})")
    spec = OBJECTIVES.resolve(loss_spec(section))
    OBJECTIVES.build(spec)  # range checks; ValueError -> ConfigError naming the objective
    return spec


def _check_pairing(objective: Any, objective_name: str, d_name: str) -> None:
    """A discriminator's output kind (``output_kind``: ``patch`` realness logits, or ``segmentation`` N+1 class
    logits) must be the kind its objective reads (``discriminator_kinds``), else training runs but is wrong."""
    from .models import DISCRIMINATORS

    kind = getattr(DISCRIMINATORS.get(d_name), "output_kind", "patch")
    if hasattr(objective, "check_discriminator"):  # an objective's own rule (unpaired: an image-only D)
        objective.check_discriminator(DISCRIMINATORS.get(d_name), d_name)
    accepted = tuple(getattr(objective, "discriminator_kinds", ("patch",)))
    if kind not in accepted:
        fits_d = sorted(n for n in DISCRIMINATORS.names()
                        if getattr(DISCRIMINATORS.get(n), "output_kind", "patch") in accepted)
        raise ConfigError(f"discriminator {d_name!r} outputs {kind} logits, but the objective {objective_name!r} "
                          f"reads {' or '.join(accepted)} logits: use a discriminator it reads "
                          f"({', '.join(fits_d)}) or an objective for {d_name!r} (e.g. loss.name=oasis)")


def _resolve(raw: dict[str, Any], name: str | None) -> RunConfig:
    """Resolve a raw config (overrides already applied): shape, dataset facts, models, sections, checks."""
    from .data import DATASETS
    from .models import DISCRIMINATORS, ENCODERS, GENERATORS
    from .objectives import OBJECTIVES

    _check_sections(raw)
    run_name = _check_name(raw.get("name"), str(name) if name else "run")
    data = DATASETS.resolve(raw["data"])
    info = dataset_info(data)
    interface = info.model_interface()
    gspec = _check_dataset_keys("generator", raw["generator"], interface, info.name)
    generator = GENERATORS.resolve(gspec, **interface)
    loss = _resolve_loss(raw.get("loss"))
    objective = OBJECTIVES.build(loss)
    needs_d = objective.needs_discriminator  # an option may decide it (CRN's loss.gan)
    if raw["discriminator"] is None:
        if needs_d:
            raise ConfigError(f"discriminator is null, but the objective {loss['name']!r} trains against one; give "
                              f"discriminator: {{name: ...}} (see 'semsynth models')")
        discriminator = None
    else:
        if not needs_d:
            raise ConfigError(f"the objective {loss['name']!r} trains without a discriminator; set "
                              f"discriminator: null")
        dspec = _check_dataset_keys("discriminator", raw["discriminator"], interface, info.name)
        discriminator = DISCRIMINATORS.resolve(dspec, **interface)
        _check_pairing(objective, loss["name"], discriminator["name"])
    encoder = None
    if raw.get("encoder") is not None:
        from .models import generator_latent_dim

        encoder = ENCODERS.resolve(raw["encoder"], z_dim=generator_latent_dim(generator) or 256)
    cfg = RunConfig(
        data=data, generator=generator, discriminator=discriminator, encoder=encoder,
        loss=loss, optim=build_section("optim", raw.get("optim")),
        train=build_section("train", raw.get("train")), name=run_name,
    )
    _validate(cfg)
    check_models(cfg, info)
    return cfg


def _blame(raw: dict[str, Any], overrides: list[str], error: ConfigError, name: str | None) -> int:
    """Which ``--set`` caused ``error``: the index of the first override after which resolving fails with the same
    message, or -1 when the config without overrides already fails with it (the file's fault)."""
    message = str(error)
    for k in range(len(overrides) + 1):
        try:
            _resolve(apply_overrides(raw, overrides[:k]), name)
        except ConfigError as e:
            if str(e) == message:
                return k - 1
        except Exception:  # noqa: BLE001,S112 - another failure of a partial config says nothing about this one
            continue
    return len(overrides) - 1


def resolve_config(raw: dict[str, Any], overrides: list[str] | tuple[str, ...] = (), name: str | None = None,
                   source: str | os.PathLike | None = None) -> RunConfig:
    """Validate and fully resolve a raw config mapping (as read from YAML) plus ``--set`` overrides.

    Every problem is a :class:`ConfigError` that names where it comes from: the ``--set KEY=VALUE`` argument that
    caused it, or else ``source`` (the config file) when given.
    """
    overrides = list(overrides)
    full = apply_overrides(raw, overrides)  # its errors name the --set argument
    try:
        return _resolve(full, name)
    except ConfigError as e:
        culprit = _blame(raw, overrides, e, name) if overrides else -1
        if culprit >= 0:
            raise ConfigError(f"--set {overrides[culprit]!r}: {e}") from e
        if source is not None:
            raise ConfigError(f"{source}: {e}") from e
        raise


def load_config(path_or_name: str | os.PathLike, overrides: list[str] | tuple[str, ...] = ()) -> RunConfig:
    """Read a YAML preset (file or built-in name), apply overrides, validate and resolve."""
    path = find_config(path_or_name)
    raw = read_yaml(path)
    return resolve_config(raw, overrides, name=path.stem, source=path)

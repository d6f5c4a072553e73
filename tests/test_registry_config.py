import copy
import math
import re
import typing

import pytest
import yaml

from semsynth import build_generator
from semsynth.cli import main
from semsynth.config import (
    apply_overrides,
    load_config,
    parse_override,
    preset_names,
    read_yaml,
    resolve_config,
)
from semsynth.data import DATASETS
from semsynth.errors import ConfigError
from semsynth.models import DISCRIMINATORS, ENCODERS, GENERATORS, generator_latent_dim
from tests.helpers import TINY_RAW


def test_unknown_names_and_keys_list_the_valid_ones():
    with pytest.raises(ConfigError, match="unknown generator 'scgann'; valid generators are: .*scgan"):
        build_generator({"name": "scgann"}, num_classes=3)
    with pytest.raises(ConfigError, match="has no option\\(s\\) 'ngf'; valid options are: .*srg_width"):
        build_generator({"name": "scgan", "ngf": 8}, num_classes=3)
    with pytest.raises(ConfigError, match="needs num_classes"):
        build_generator({"name": "scgan"})


def test_resolved_config_is_recorded_and_rebuilds_the_model():
    G = build_generator({"name": "scgan", "srg_width": 4, "fc_width": 4, "svg_width": 4}, num_classes=3,
                        resolution=32)
    cfg = G.config
    assert cfg["name"] == "scgan" and cfg["srg_width"] == 4 and cfg["temperature"] == 0.05
    assert set(cfg) - {"name"} == set(GENERATORS.parameters("scgan"))
    G2 = build_generator(cfg)
    assert G2.config == cfg


def test_overrides_types_and_validation():
    cfg = resolve_config(TINY_RAW, ["train.batch_size=2", "generator.temperature=0.5", "loss.kl=0"])
    assert cfg.train.batch_size == 2 and cfg.generator["temperature"] == 0.5 and cfg.loss["kl"] == 0.0
    assert cfg.generator["num_classes"] == 15  # from the dataset
    with pytest.raises(ConfigError, match="unknown section 'trian'"):
        resolve_config(TINY_RAW, ["trian.batch_size=2"])
    with pytest.raises(ConfigError, match="train: unknown key\\(s\\) 'batchsize'; valid keys are: batch_size"):
        resolve_config(TINY_RAW, ["train.batchsize=2"])
    with pytest.raises(ConfigError, match="train.batch_size = 'eight' should be of type int"):
        resolve_config(TINY_RAW, ["train.batch_size=eight"])
    with pytest.raises(ConfigError, match="expected key=value"):
        apply_overrides({}, ["train.batch_size"])
    with pytest.raises(ConfigError, match="num_classes = 3 differ\\(s\\) from the dataset \\(synthetic-faces: "
                                          "num_classes=15\\); these keys come from the dataset"):
        resolve_config(TINY_RAW, ["generator.num_classes=3"])
    with pytest.raises(ConfigError, match="encoder \\(VAE\\) needs a generator that takes z"):
        resolve_config(TINY_RAW, ["generator.input_mode=label"])
    with pytest.raises(ConfigError, match="loss.semantic_loss = 'l3'"):
        resolve_config(TINY_RAW, ["loss.semantic_loss=l3"])


def test_every_preset_resolves_and_round_trips(tmp_path):
    assert {"scgan-ade20k", "scgan-coco", "scgan-celeba", "scgan-cityscapes", "scgan-synthetic-faces"} <= set(
        preset_names())
    for name in preset_names():
        cfg = load_config(name)
        text = cfg.to_yaml()
        p = tmp_path / f"{name}.yaml"
        p.write_text(text)
        raw = yaml.safe_load(text)
        for sec in ("generator", "discriminator"):
            for k in ("num_classes", "use_instance", "resolution"):
                (raw[sec] or {}).pop(k, None)  # discriminator: null for an objective without one (CRN, SIMS)
        again = resolve_config(raw, name=name)
        assert again.to_dict() == cfg.to_dict()


def test_bad_yaml_files(tmp_path):
    p = tmp_path / "bad.yaml"
    p.write_text("data: [1, 2\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(p)
    p.write_text("- 1\n- 2\n")
    with pytest.raises(ConfigError, match="must be a mapping"):
        load_config(p)
    with pytest.raises(ConfigError, match="neither a file nor a preset; presets are: .*scgan-ade20k"):
        load_config("no-such-preset")


# ------------------------------------------------------------------------------------------------------------
# Hostile input: every shape of override or file is a ConfigError that names the key and what is expected


@pytest.mark.parametrize("overrides, says", [
    (["train=5"], (r"--set 'train=5': config section 'train' must be a mapping of keys to values \(or null for "
                   r"the defaults\), got 5 \(int\)")),
    (["optim=[1, 2]"], r"config section 'optim' must be a mapping .* got \[1, 2\] \(list\)"),
    (["loss=abc"], r"config section 'loss' must be a mapping"),
    (["generator=scgan"], r"config section 'generator' must be a mapping with a 'name' .*got 'scgan' \(str\)"),
    (["data=5"], r"config section 'data' must be a mapping with a 'name'"),
    (["discriminator=null"], r"discriminator is null, but the objective 'gan' trains against one"),
    (["encoder=3"], r"config section 'encoder' must be a mapping .*or null for none"),
    (["generator.name=null"], r"generator name = None should be a string; valid generators are: .*scgan"),
    (["generator.name=[1]"], r"generator name = \[1\] should be a string"),
    (["name.x=1"], r"--set 'name.x=1': 'name' is the run name \(a string\), not a section; use --set name=VALUE"),
    (["name=[1]"], r"name = \[1\] \(list\) should be a string"),
    (["name=../../etc"], r"name = '../../etc' cannot name a run directory"),
    (["train.batch_size.x=1"], (r"--set 'train.batch_size.x=1': train.batch_size is 4 \(int\), not a section, "
                                r"so it has no key 'x'")),
    (["train=5", "train.seed=1"], r"--set 'train.seed=1': train is 5 \(int\), not a section"),
    (["a..b=1"], r"--set 'a..b=1': the key 'a..b' has an empty part"),
    (["train.=1"], r"the key 'train.' has an empty part"),
    ([".train=1"], r"the key '.train' has an empty part"),
    (["=1"], r"--set '=1': empty key"),
    (["train.batch_size=[1,"], r"--set 'train.batch_size=\[1,': cannot parse the value '\[1,' as YAML"),
    (["train.seed=2020-13-45"], r"--set 'train.seed=2020-13-45': cannot parse the value"),
    (["train.batch_size={a: 1}"], r"train.batch_size = \{'a': 1\} should be of type int"),
    (["train.batch_size=true"], r"train.batch_size = True should be of type int"),
    (["train.images=1.5"], r"train.images = 1.5 should be of type int or null"),
    (["loss={1: 2}"], r"objective option names must be strings, got 1 \(int\)"),
    (["generator={name: scgan, 1: 2}"], r"generator option names must be strings, got 1 \(int\)"),
    (["train.seed=99999999999999999999999"], r"train.seed = 99999999999999999999999 is too large"),
    (["optim.lr=1" + "0" * 400], r"optim.lr = 1000.* is too large"),
])
def test_bad_shapes_of_overrides_are_config_errors_naming_the_key(overrides, says):
    with pytest.raises(ConfigError, match=says):
        resolve_config(TINY_RAW, overrides)


@pytest.mark.parametrize("text, says", [
    ("- 1\n- 2\n", r"a config must be a mapping of sections \(.*\), got \[1, 2\] \(list\)"),
    ("5\n", r"got 5 \(int\)"),
    ("1: {name: x}\n", r"section names must be strings, got 1 \(int\)"),
    ("? [1, 2]\n: 3\n", r"not valid YAML"),  # an unhashable key
    ("data: 2020-13-45\n", r"not valid YAML"),  # a timestamp with month 13
    ("[" * 5000 + "]" * 5000, r"not valid YAML"),  # deeper than the parser's recursion
    ("train: 5\n", r"config section 'train' must be a mapping"),
    ("train: {batch_size: .nan}\n", r"train.batch_size = nan should be of type int"),
    ("optim: {lr: .inf}\n", r"optim.lr = inf is not a finite number"),
])
def test_bad_config_files_are_config_errors_naming_the_file(tmp_path, text, says):
    p = tmp_path / "bad.yaml"
    if text.startswith(("train", "optim")):  # a complete config with one bad section
        raw = copy.deepcopy(TINY_RAW)
        raw.update(yaml.safe_load(text))
        text = yaml.safe_dump(raw)
    p.write_text(text)
    with pytest.raises(ConfigError, match=says) as e:
        load_config(p)
    assert str(e.value).startswith(f"{p}: ")


def test_a_binary_file_is_not_a_config(tmp_path):
    p = tmp_path / "weights.yaml"
    p.write_bytes(b"\x89PNG\r\n\x1a\n\xff\xfe\x00")
    with pytest.raises(ConfigError, match="not a text file in UTF-8"):
        read_yaml(p)


def test_an_alias_bomb_is_refused_without_being_expanded():
    layer = "[" + ",".join(["1"] * 10) + "]"
    bomb = f"[&a0 {layer}, " + ", ".join(f"&a{i} [{','.join([f'*a{i - 1}'] * 10)}]" for i in range(1, 9)) + "]"
    for key in ("train.batch_size", "generator.resolution", "data.split", "name", "loss"):
        with pytest.raises(ConfigError, match=re.escape(f"--set '{key}=") + r".*(should|must|differ)") as e:
            resolve_config(TINY_RAW, [f"{key}={bomb}"])
        assert len(str(e.value)) < 2000


def test_parse_override_keeps_empty_parts_out():
    assert parse_override(" train . batch_size = 8") == (["train", "batch_size"], 8)
    assert parse_override("data.root=") == (["data", "root"], None)
    assert parse_override("name=a=b") == (["name"], "a=b")
    for bad in ("a..b=1", "train.=1", ".train=1", "=1", " . =1"):
        with pytest.raises(ConfigError, match=re.escape(f"--set {bad!r}")):
            parse_override(bad)


# -- values: finite, in range, for every option of every registered model and dataset -------------------------


@pytest.mark.parametrize("override, says", [
    ("optim.lr=.nan", r"optim.lr = nan is not a finite number \(nan and inf are not allowed here\)"),
    ("optim.lr=.inf", r"optim.lr = inf is not a finite number"),
    ("optim.lr_g=-.inf", r"optim.lr_g = -inf is not a finite number"),
    ("optim.beta1=.nan", r"optim.beta1 = nan is not a finite number"),
    ("loss.kl=.nan", r"objective 'gan': kl = nan is not a finite number"),
    ("train.epochs=.inf", r"train.epochs = inf is not a finite number"),
    ("train.ema_rampup=.nan", r"train.ema_rampup = nan is not a finite number"),
    ("train.seed=-1", r"train.seed = -1 must be in \[0, 2\*\*63 - 1\]"),
    ("train.device=cuda:x", r"train.device = 'cuda:x'; valid: auto, cpu, cuda, cuda:N"),
    ("generator.temperature=.nan", r"generator 'scgan': temperature = nan is not a finite number"),
    ("generator.temperature=-1", (r"cannot build generator 'scgan': temperature = -1.0 is out of range; valid: a "
                                  r"finite number > 0")),
    ("generator.temperature=0", r"temperature = 0.0 is out of range; valid: a finite number > 0"),
    ("generator.z_dim=0", r"z_dim = 0 is out of range; valid: an integer >= 1"),
    ("generator.srg_width=0", r"srg_width must be >= 1, got 0"),
    ("generator.conv_candidates=0", r"conv_candidates must be >= 1, got 0"),
    ("generator.spade_hidden=-3", r"spade_hidden = -3 is out of range; valid: an integer >= 1"),
    ("generator.ig_size=4", r"ig_size = 4 is out of range; valid: an odd integer >= 1"),
    ("generator.ig_sigma=0", r"ig_sigma = 0.0 is out of range; valid: a finite number > 0"),
    ("generator.ig_iters=0", r"ig_iters = 0 is out of range"),
    ("generator.init_gain=-0.02", r"init_gain = -0.02 is out of range"),
    ("generator.init=bogus", r"init = 'bogus' is not valid; choose one of: xavier"),
    ("generator.mapping=bogus", r"mapping = 'bogus' is not valid; choose one of: softmax"),
    ("generator.resolution=[64, 64, 3]", r"resolution = \[64, 64, 3\] differ\(s\) from the dataset"),
    ("discriminator.width=0", r"cannot build discriminator 'fpse': width = 0 is out of range; valid: an integer >= 1"),
    ("discriminator.init_gain=.inf", r"discriminator 'fpse': init_gain = inf is not a finite number"),
    ("encoder.width=0", r"cannot build encoder 'conv': width = 0 is out of range"),
    ("encoder.input_size=48", r"input_size must be a power of two >= 8, got 48"),
    ("encoder.z_dim=16", (r"the generator \('scgan'\) cannot take the dataset's samples .*z has shape \(2, 16\), "
                          r"expected \[2, 8\]")),
    ("data.seed=-1", r"synthetic-faces: seed must be an integer >= 0, got -1"),
    ("data.num_samples=0", r"synthetic-faces: num_samples must be an integer >= 1, got 0"),
    ("data.resolution=.nan", r"dataset 'synthetic-faces': resolution = nan should be of type int"),
])
def test_non_finite_and_out_of_range_values_are_rejected_at_resolve_time(override, says):
    with pytest.raises(ConfigError, match=says) as e:
        resolve_config(TINY_RAW, [override])
    assert str(e.value).startswith(f"--set {override!r}: ")


def _bad_values(annotation, option):
    """Values that no option of this type accepts in the registered models and datasets (sizes >= 1, floats > 0,
    strings are choices; a seed may be 0)."""
    if typing.get_origin(annotation) in (typing.Union, __import__("types").UnionType):
        annotation = next(a for a in typing.get_args(annotation) if a is not type(None))
    if annotation is bool:
        return ["yes", 1, [True]]
    if annotation is int:
        return [-1, 1.5, "8", float("nan"), 2**70] + ([] if option == "seed" else [0])
    if annotation is float:
        return [-1.0, 0.0, float("nan"), float("inf"), "0.1"]
    if annotation is str:
        return ["bogus-choice", 3, None]
    return [{"a": 1}]


MODEL_BASES = {
    ("generator", "scgan"): TINY_RAW["generator"],
    ("discriminator", "fpse"): TINY_RAW["discriminator"],
    ("discriminator", "fp"): {"name": "fp", "width": 4},
    ("discriminator", "multiscale"): {"name": "multiscale", "width": 4, "num_scales": 2, "num_layers": 3},
    ("encoder", "conv"): TINY_RAW["encoder"],
    ("generator", "spade"): {"name": "spade", "ngf": 2, "spade_hidden": 4, "use_vae": True, "z_dim": 8},
    ("generator", "pix2pixhd"): {"name": "pix2pixhd", "ngf": 2, "n_downsample": 2, "n_blocks": 1,
                                 "n_local_enhancers": 1, "n_blocks_local": 1},
    ("generator", "ccfpse"): {"name": "ccfpse", "ngf": 2, "hidden": 4, "spade_hidden": 4, "z_dim": 8},
    ("generator", "crn"): {"name": "crn", "widths": [2, 2, 2, 2, 2]},
    ("generator", "oasis"): {"name": "oasis", "channels": 1, "spade_hidden": 4, "z_dim": 8},
    ("discriminator", "oasis"): {"name": "oasis", "channels": 1},
    ("generator", "sims"): {"name": "sims", "encoder_widths": [2] * 4, "encoder_convs": [1] * 4,
                            "decoder_widths": [2] * 4, "final_width": 2},
    ("generator", "scgan-unpaired"): {"name": "scgan-unpaired", "srg_width": 2, "fc_width": 2, "svg_width": 4,
                                      "conv_candidates": 2, "norm_candidates": 2, "spade_hidden": 4},
}
# models of another task: the rest of the config they are checked in (unpaired translation: image pairs, an
# image-only D and its objective)
MODEL_CONTEXT = {
    ("generator", "scgan-unpaired"): {"data": {"name": "synthetic-unpaired", "resolution": 64, "num_samples": 2},
                                      "discriminator": {"name": "fp", "width": 4}, "encoder": None,
                                      "loss": {"name": "unpaired", "content_loss": "edges"}},
}
# int options of a model for which 0 is a meaningful value (no such layers)
ZERO_ALLOWED = {("generator", "pix2pixhd"): {"n_downsample", "n_blocks", "n_local_enhancers", "n_blocks_local"},
                ("generator", "sims"): {"context_weight"}}  # 0: retrieval by shape alone


def test_every_registered_model_option_is_validated_at_resolve_time():
    registries = {"generator": GENERATORS, "discriminator": DISCRIMINATORS, "encoder": ENCODERS}
    assert {(sec, n) for sec, reg in registries.items() for n in reg.names()} == set(MODEL_BASES), \
        "a new model: add a tiny base config for it to MODEL_BASES"
    interface = {"num_classes", "use_instance", "resolution"}
    accepted = []
    for (sec, name), base in MODEL_BASES.items():
        reg = registries[sec]
        hints = reg.type_hints(name)
        raw = copy.deepcopy(TINY_RAW)
        raw.update(copy.deepcopy(MODEL_CONTEXT.get((sec, name), {})))
        raw[sec] = dict(base)
        if sec == "generator" and generator_latent_dim({**reg.defaults(name), **base}) == 0:
            raw["encoder"] = None  # a deterministic generator takes no encoder
        if sec == "discriminator" and getattr(reg.get(name), "output_kind", "patch") == "segmentation":
            raw["loss"] = {"name": "oasis"}  # a segmentation D goes with the objective that reads it
        resolve_config(raw)  # the base is valid
        for option in reg.parameters(name):
            if option in interface:
                continue
            for bad in _bad_values(hints[option], option):
                if type(bad) in (int, float) and bad == 0 and option in ZERO_ALLOWED.get((sec, name), ()):
                    continue
                bad_raw = copy.deepcopy(raw)
                bad_raw[sec][option] = bad
                try:
                    resolve_config(bad_raw)
                except ConfigError as e:
                    assert option in str(e), (sec, name, option, bad, str(e))
                else:
                    accepted.append((sec, name, option, bad))
    assert not accepted, f"bad values accepted: {accepted}"


DATA_BASES = {
    "synthetic-faces": {"name": "synthetic-faces", "resolution": 64, "num_samples": 4},
    "synthetic-landscapes": {"name": "synthetic-landscapes", "resolution": 64, "num_samples": 4},
    "ade20k": {"name": "ade20k", "root": "/nonexistent/ade", "crop_size": 64, "load_size": 72},
    "coco-stuff": {"name": "coco-stuff", "root": "/nonexistent/coco", "crop_size": 64, "load_size": 72},
    "cityscapes": {"name": "cityscapes", "root": "/nonexistent/cityscapes", "crop_size": 128},
    "celebamask-hq": {"name": "celebamask-hq", "root": "/nonexistent/celeba", "crop_size": 64, "load_size": 64},
    "synthetic-unpaired": {"name": "synthetic-unpaired", "resolution": 64, "num_samples": 2},
    "unpaired-folder": {"name": "unpaired-folder", "root": "/nonexistent/s2w", "crop_size": 64, "load_size": 72},
}
# options whose every value of the type is meaningful, or that only name files (checked when read)
DATA_FREE = {"root", "root_a", "root_b"}


def test_every_dataset_option_is_validated_at_resolve_time():
    assert set(DATASETS.names()) - {"custom"} == set(DATA_BASES), "a new dataset: add a base to DATA_BASES"
    accepted = []
    for name, base in DATA_BASES.items():
        raw = copy.deepcopy(TINY_RAW)
        raw["data"] = dict(base)
        raw["encoder"] = None
        raw["generator"]["input_mode"] = "label"
        resolve_config(raw)  # the base is valid
        hints = DATASETS.type_hints(name)
        for option in DATASETS.parameters(name):
            for bad in _bad_values(hints[option], option):
                if option in DATA_FREE and isinstance(bad, str):
                    continue
                if bad is None and type(None) in typing.get_args(hints[option]):
                    continue  # an optional option (unpaired-folder's root_a): null is one of its values
                bad_raw = copy.deepcopy(raw)
                bad_raw["data"][option] = bad
                try:
                    resolve_config(bad_raw)
                except ConfigError as e:
                    assert option in str(e) or repr(bad) in str(e) or str(bad) in str(e), (name, option, bad, str(e))
                else:
                    accepted.append((name, option, bad))
    assert not accepted, f"bad values accepted: {accepted}"


# -- a config that cannot train fails before anything is written ---------------------------------------------


def test_a_resolution_the_discriminator_cannot_take_fails_the_dry_run_and_creates_nothing(tmp_path, capsys):
    outdir = tmp_path / "runs"
    for extra in (["--dry-run"], []):
        rc = main(["train", "--config", "scgan-synthetic-faces", "--set", "data.resolution=32", "--outdir",
                   str(outdir), *extra])
        err = capsys.readouterr().err
        assert rc == 2
        assert "--set 'data.resolution=32': the discriminator ('fpse') cannot take the dataset's samples " \
               "(synthetic-faces: 32x32" in err
        assert "divisible by 32 and at least 64" in err and "change data.resolution (32)" in err
        assert "Traceback" not in err
        assert not outdir.exists()


@pytest.mark.parametrize("overrides, says", [
    (["discriminator.image_channels=4"],
     (r"^--set 'discriminator.image_channels=4': the discriminator \('fpse'\) cannot take the dataset's samples "
      r"\(synthetic-faces: 64x64, 15 label channels, batch 2\): discriminator expects images \[B, 4, H, W\]")),
    (["data.resolution=96", "generator.layout=more"],
     r"^--set 'generator.layout=more': cannot build generator 'scgan': resolution 96x96 must be divisible by 64"),
    (["discriminator={name: multiscale, width: 4, num_layers: 3}", "data.resolution=32", "train.batch_size=1"],
     (r"^--set 'train.batch_size=1': the generator \('scgan'\) cannot take the dataset's samples \(synthetic-faces: "
      r"32x32, 15 label channels, batch 1\): Expected more than 1 value per channel .*train.batch_size")),
])
def test_networks_that_cannot_take_the_data_fail_at_resolve_time(overrides, says):
    with pytest.raises(ConfigError, match=says):
        resolve_config(TINY_RAW, overrides)


def test_every_preset_passes_the_dry_run(capsys):
    for name in preset_names():
        assert main(["train", "--config", name, "--dry-run"]) == 0, capsys.readouterr().err
        assert f"name: {name}" in capsys.readouterr().out


# -- a run's own config.yaml repeats the run -----------------------------------------------------------------


def test_a_runs_own_config_yaml_resolves_to_the_same_config(tmp_path, capsys):
    cfg = resolve_config(TINY_RAW)
    run = tmp_path / "00000-tiny"
    run.mkdir()
    (run / "config.yaml").write_text(cfg.to_yaml())
    raw = read_yaml(run / "config.yaml")
    assert raw["generator"]["num_classes"] == 15 and raw["discriminator"]["use_instance"] is False
    assert raw["generator"]["resolution"] == [64, 64]
    again = load_config(run / "config.yaml")
    assert again.to_dict() == cfg.to_dict() and again.to_yaml() == cfg.to_yaml()
    assert main(["train", "--config", str(run / "config.yaml"), "--dry-run"]) == 0
    assert capsys.readouterr().out == cfg.to_yaml()
    # an override still applies, and a dataset fact that differs is refused with both values
    assert load_config(run / "config.yaml", ["train.batch_size=2"]).train.batch_size == 2
    with pytest.raises(ConfigError, match=r"--set 'data.resolution=96': generator: resolution = \[64, 64\] "
                                          r"differ\(s\) from the dataset \(synthetic-faces: resolution=\[96, 96\]\)"):
        load_config(run / "config.yaml", ["data.resolution=96"])
    raw["discriminator"]["num_classes"] = 3
    (run / "config.yaml").write_text(yaml.safe_dump(raw))
    with pytest.raises(ConfigError, match=r"config.yaml: discriminator: num_classes = 3 differ\(s\) from the "
                                          r"dataset \(synthetic-faces: num_classes=15\)"):
        load_config(run / "config.yaml")


def test_presets_round_trip_with_their_dataset_keys(tmp_path):
    for name in preset_names():
        cfg = load_config(name)
        p = tmp_path / f"{name}.yaml"
        p.write_text(cfg.to_yaml())
        assert load_config(p).to_dict() == cfg.to_dict()
        assert resolve_config(yaml.safe_load(cfg.to_yaml()), name=name).to_dict() == cfg.to_dict()


# -- errors name their source: the --set argument, or the file ------------------------------------------------


def test_set_errors_name_the_argument_and_file_errors_name_the_file(tmp_path):
    good = tmp_path / "good.yaml"
    good.write_text(yaml.safe_dump(TINY_RAW))
    with pytest.raises(ConfigError) as e:
        load_config(good, ["train.seed=1", "generator.temperature=-1", "train.batch_size=2"])
    msg = str(e.value)
    assert msg.startswith("--set 'generator.temperature=-1': cannot build generator 'scgan': temperature = -1.0")
    assert str(good) not in msg
    # an error that only the combination of two overrides makes: the one that completes it is named
    with pytest.raises(ConfigError, match=r"^--set 'train.accumulate=4': train.accumulate = 4 must be >= 1 and "
                                          r"divide train.batch_size \(6\)"):
        load_config(good, ["train.batch_size=6", "train.accumulate=4"])
    # a bad file is named, with or without unrelated overrides
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump({**TINY_RAW, "train": {**TINY_RAW["train"], "batch_size": 0}}))
    for overrides in ([], ["train.seed=3"]):
        with pytest.raises(ConfigError) as e:
            load_config(bad, overrides)
        assert str(e.value).startswith(f"{bad}: train.batch_size = 0 must be >= 1"), str(e.value)
        assert "--set" not in str(e.value)
    # an override that fixes the file's bad value wins
    assert load_config(bad, ["train.batch_size=2"]).train.batch_size == 2
    # the file is bad in one way, an override in another: the override's error names the override
    with pytest.raises(ConfigError, match=r"^--set 'optim.lr=.nan': optim.lr = nan"):
        load_config(bad, ["optim.lr=.nan"])


def test_check_value_messages_name_option_value_and_expected_type():
    from semsynth.registry import check_range, check_value

    assert check_value("x", 3, float) == 3.0 and isinstance(check_value("x", 3, float), float)
    assert check_value("x", (64, 32), int | typing.Sequence[int]) == [64, 32]
    assert check_value("x", None, float | None) is None
    assert math.isnan(check_value("x", float("nan"), float, allow_nonfinite=True))
    with pytest.raises(ConfigError, match=r"^x = nan is not a finite number"):
        check_value("x", float("nan"), float | None)
    with pytest.raises(ConfigError, match=r"^x = 'a' should be of type int or list of int"):
        check_value("x", "a", int | typing.Sequence[int])
    with pytest.raises(ConfigError, match=r"^x\[1\] = 'b' should be of type int"):
        check_value("x", [1, "b"], list[int])
    with pytest.raises(ValueError, match=r"^w = 0 is out of range; valid: an integer >= 1$"):
        check_range("w", 0, ge=1, integer=True)
    with pytest.raises(ValueError, match=r"^p = 1.5 is out of range; valid: a finite number >= 0 and <= 1$"):
        check_range("p", 1.5, ge=0, le=1)

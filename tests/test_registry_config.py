import pytest
import yaml

from semsynth import build_generator
from semsynth.config import apply_overrides, load_config, preset_names, resolve_config
from semsynth.errors import ConfigError
from semsynth.models import GENERATORS
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
    assert cfg.train.batch_size == 2 and cfg.generator["temperature"] == 0.5 and cfg.loss.kl == 0.0
    assert cfg.generator["num_classes"] == 15  # from the dataset
    with pytest.raises(ConfigError, match="unknown section 'trian'"):
        resolve_config(TINY_RAW, ["trian.batch_size=2"])
    with pytest.raises(ConfigError, match="train: unknown key\\(s\\) 'batchsize'; valid keys are: batch_size"):
        resolve_config(TINY_RAW, ["train.batchsize=2"])
    with pytest.raises(ConfigError, match="train.batch_size = 'eight' should be of type int"):
        resolve_config(TINY_RAW, ["train.batch_size=eight"])
    with pytest.raises(ConfigError, match="expected key=value"):
        apply_overrides({}, ["train.batch_size"])
    with pytest.raises(ConfigError, match="num_classes come\\(s\\) from the dataset"):
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
                raw[sec].pop(k, None)
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

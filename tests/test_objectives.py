"""Objectives are registered components: the loss section names one, the training function runs any of them."""

import pytest
import torch
import torch.nn.functional as F

from semsynth.config import resolve_config
from semsynth.errors import ConfigError
from semsynth.objectives import OBJECTIVES, Objective, build_objective
from semsynth.training import load_training_state, train
from semsynth.training.checkpoint import list_checkpoints, numerics_changes
from tests.helpers import TINY_RAW


class L1Regression(Objective):
    """A test objective without an adversary: L1 between the generated and the real image."""

    needs_discriminator = False

    def __init__(self, weight: float = 1.0) -> None:
        super().__init__()
        if weight <= 0:
            raise ValueError(f"loss.weight = {weight} must be > 0")
        self.weight = weight

    def generator_loss(self, G, D, E, semantic, real, kl_scale=1.0):
        fake = G(semantic, None)
        loss = self.weight * F.l1_loss(fake, real)
        return loss, {"G/l1": loss.detach()}, fake.detach()


@pytest.fixture
def l1_objective():
    OBJECTIVES.register("test-l1")(L1Regression)
    yield "test-l1"
    OBJECTIVES._entries.pop("test-l1")
    OBJECTIVES._docs.pop("test-l1")


def _raw(**changes):
    raw = {**TINY_RAW, "train": {**TINY_RAW["train"], "images": 8, "checkpoint_every": 8}}
    raw.update(changes)
    return raw


def test_a_loss_section_without_a_name_is_the_gan_objective():
    cfg = resolve_config(_raw(loss={"perceptual": 0, "kl": 0.01}))
    assert cfg.loss["name"] == "gan" and cfg.loss["kl"] == 0.01 and cfg.loss["feature_matching"] == 10.0
    assert cfg.to_dict()["loss"] == cfg.loss
    obj = build_objective(cfg.loss)
    assert obj.needs_vgg is False and obj.find_unused_parameters is False  # L_s on: every G parameter learns


def test_checkpoints_written_before_objectives_had_names_resume_without_a_difference():
    new = resolve_config(_raw(loss={"perceptual": 0})).to_dict()
    old = {**new, "loss": {k: v for k, v in new["loss"].items() if k != "name"}}
    assert numerics_changes(old, new) == []
    assert numerics_changes(old, {**new, "loss": {**new["loss"], "kl": 1.0}}) == [("loss.kl", 0.05, 1.0)]


def test_a_discriminator_matches_the_objective(l1_objective):
    with pytest.raises(ConfigError, match="trains without a discriminator; set discriminator: null"):
        resolve_config(_raw(loss={"name": l1_objective}))
    with pytest.raises(ConfigError, match="discriminator is null, but the objective 'gan' trains against one"):
        resolve_config(_raw(discriminator=None))
    with pytest.raises(ConfigError, match="loss.weight = -1.0 must be > 0"):
        resolve_config(_raw(loss={"name": l1_objective, "weight": -1}, discriminator=None))


def test_training_without_a_discriminator(l1_objective, tmp_path):
    raw = _raw(loss={"name": l1_objective}, discriminator=None, encoder=None)
    raw["generator"] = {**raw["generator"], "input_mode": "label"}
    cfg = resolve_config(raw, name="l1")
    assert cfg.discriminator is None and cfg.to_dict()["discriminator"] is None
    torch.manual_seed(0)
    run = train(cfg, outdir=tmp_path)
    state = load_training_state(list_checkpoints(run)[-1])
    assert state["D"] is None and state["opt_D"] is None and state["cur_nimg"] == 8
    from semsynth import build_generator
    from semsynth.training.loop import seed_everything

    seed_everything(cfg.train.seed)
    G0 = build_generator(cfg.generator)
    changed = [k for k, v in G0.state_dict().items() if v.is_floating_point() and not torch.equal(v, state["G"][k])]
    assert any(k.startswith("svg.") for k in changed) and any(k.startswith("head") for k in changed)
    assert "G/l1" in (run / "stats.jsonl").read_text()
    # the run's own config resolves again (discriminator: null round-trips through YAML)
    from semsynth.config import load_config

    assert load_config(run / "config.yaml").to_dict() == cfg.to_dict()


def test_a_discriminator_must_output_what_its_objective_reads():
    """A segmentation D (OASIS: N+1 class logits) with a hinge objective would train, wrongly: refused."""
    with pytest.raises(ConfigError, match="discriminator 'oasis' outputs segmentation logits, but the objective 'gan' "
                                          "reads patch logits: use a discriminator it reads \\(fp, fpse, multiscale\\)"):
        resolve_config(_raw(discriminator={"name": "oasis"}))
    with pytest.raises(ConfigError, match="discriminator 'fpse' outputs patch logits, but the objective 'oasis' reads "
                                          "segmentation logits"):
        resolve_config(_raw(loss={"name": "oasis"}))
    cfg = resolve_config(_raw(loss={"name": "oasis"}, discriminator={"name": "oasis"}))
    assert cfg.loss["name"] == cfg.discriminator["name"] == "oasis"

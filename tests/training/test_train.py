import json

import pytest
import torch

from semsynth.config import resolve_config
from semsynth.errors import ConfigError
from semsynth.training import load_model, load_training_state, train
from semsynth.training.loop import lr_factor
from tests.helpers import TINY_RAW


def test_lr_schedule_constant_then_linear_to_zero():
    assert lr_factor(0.0, 0.5) == 1.0 and lr_factor(0.5, 0.5) == 1.0
    assert lr_factor(0.75, 0.5) == pytest.approx(0.5)
    assert lr_factor(1.0, 0.5) == 0.0
    assert lr_factor(0.9, 1.0) == 1.0


def test_short_training_run_writes_a_complete_run_directory(tmp_path):
    cfg = resolve_config(TINY_RAW, name="tiny")
    run = train(cfg, outdir=tmp_path)
    assert run.name == "00000-tiny"
    for f in ("config.yaml", "log.txt", "stats.jsonl", "report.html", "model/config.json", "model/model.safetensors",
              "model/encoder.safetensors", "samples/init.png"):
        assert (run / f).is_file(), f
    rows = [json.loads(line) for line in (run / "stats.jsonl").read_text().splitlines()]
    assert rows[-1]["images"] == 16 and all(k in rows[-1] for k in ("G/adv", "G/fm", "G/semantic", "G/kl", "D/real"))
    assert all(v == v for r in rows for v in r.values() if isinstance(v, float))  # no NaN
    ckpts = sorted((run / "checkpoints").glob("training-state-*.pt"))
    assert [p.name for p in ckpts] == ["training-state-000000008.pt", "training-state-000000016.pt"]
    state = torch.load(ckpts[-1], weights_only=True)  # safe to load: tensors and plain values only
    assert state["cur_nimg"] == 16 and state["config"]["name"] == "tiny"
    html = (run / "report.html").read_text()
    assert "<svg" in html and "samples/" in html and "srg_width" in html

    # the exported model rebuilds from its own files and reproduces the trained generator
    G, E, info, _ = load_model(run / "model")
    assert info.num_classes == 15 and E is not None
    G_ckpt = __import__("semsynth").build_generator(state["config"]["generator"])
    G_ckpt.load_state_dict(state["G"])
    G_ckpt.eval()
    sem = torch.zeros(1, 15, 64, 64)
    sem[:, 1] = 1
    z = torch.randn(1, 8)
    torch.testing.assert_close(G(sem, z), G_ckpt(sem, z))


def test_resume_continues_exactly(tmp_path):
    torch.use_deterministic_algorithms(True)
    try:
        raw = {**TINY_RAW, "train": {**TINY_RAW["train"], "images": 16, "checkpoint_every": 8}}
        straight = train(resolve_config(raw, name="a"), outdir=tmp_path)
        # a second run stopped after 8 images, then resumed from its checkpoint
        first = train(resolve_config(raw, name="b"), outdir=tmp_path, stop_after=8)
        assert not (first / "DONE").exists()
        assert [p.name for p in (first / "checkpoints").glob("*.pt")] == ["training-state-000000008.pt"]
        resumed = train(resolve_config(raw, name="b"), outdir=tmp_path, resume=first)
        assert resumed == first
        a = load_training_state(sorted((straight / "checkpoints").glob("*.pt"))[-1])
        b = load_training_state(sorted((resumed / "checkpoints").glob("*.pt"))[-1])
        for k in a["G"]:
            torch.testing.assert_close(a["G"][k], b["G"][k], rtol=0, atol=0, msg=k)
        for k in a["D"]:
            torch.testing.assert_close(a["D"][k], b["D"][k], rtol=0, atol=0, msg=k)
        la = [json.loads(x) for x in (straight / "stats.jsonl").read_text().splitlines()]
        lb = [json.loads(x) for x in (resumed / "stats.jsonl").read_text().splitlines()]
        assert la[-1]["G/total"] == lb[-1]["G/total"] and la[-1]["D/total"] == lb[-1]["D/total"]
    finally:
        torch.use_deterministic_algorithms(False)


def test_missing_vgg_weights_stop_before_anything_is_written(tmp_path):
    from semsynth.errors import MissingWeightsError

    cfg = resolve_config(TINY_RAW, ["loss.perceptual=10", f"loss.vgg_weights={tmp_path / 'nope.pth'}"], name="v")
    with pytest.raises(MissingWeightsError, match="--set loss.perceptual=0"):
        train(cfg, outdir=tmp_path / "runs")
    assert not (tmp_path / "runs").exists()


def _model_with_discriminator(run):
    """A run's model/ directory plus discriminator.safetensors and its config section, as `semsynth convert
    --discriminator` writes a converted model."""
    from safetensors.torch import save_file

    state = load_training_state(sorted((run / "checkpoints").glob("*.pt"))[-1])
    model = run / "model"
    save_file({k: v.contiguous() for k, v in state["D"].items()}, str(model / "discriminator.safetensors"))
    cfg = json.loads((model / "config.json").read_text())
    cfg["discriminator"] = state["config"]["discriminator"]
    (model / "config.json").write_text(json.dumps(cfg))
    return model


def test_train_init_starts_a_new_run_from_exactly_the_models_weights(tmp_path):
    from semsynth.utils.files import read_safetensors

    raw = {**TINY_RAW, "train": {**TINY_RAW["train"], "images": 4, "checkpoint_every": 4}}
    model = _model_with_discriminator(train(resolve_config(raw, name="src"), outdir=tmp_path / "a"))
    tuned = {**raw, "train": {**raw["train"], "init": str(model), "seed": 7}}
    run = train(resolve_config(tuned, name="ft"), outdir=tmp_path / "b", stop_after=0)  # checkpoint before step 1
    state = load_training_state(run / "checkpoints" / "training-state-000000000.pt")
    for key, fname in (("G", "model.safetensors"), ("E", "encoder.safetensors"), ("D", "discriminator.safetensors")):
        want = read_safetensors(model / fname)
        assert set(state[key]) == set(want), key
        for k, v in want.items():
            assert torch.equal(state[key][k], v.to(state[key][k].dtype)), f"{key} {k}"
    log = (run / "log.txt").read_text()
    assert f"initialised from {model}: G (model.safetensors), E (encoder.safetensors), D (discriminator.safetensors)" \
        in log

    # resuming ignores train.init (the checkpoint's weights continue), and says so
    resumed = train(resolve_config(tuned, name="ft"), outdir=tmp_path / "b", resume=run, stop_after=4)
    assert f"train.init {model} not applied: a resumed run continues" in (resumed / "log.txt").read_text()

    # a model of another width: the error names the file, the key and both shapes, before anything is written
    wide = {**tuned, "generator": {**tuned["generator"], "srg_width": 8}}
    with pytest.raises(ConfigError, match=r"model\.safetensors \(the generator\) does not fit .*tensor '.*' has shape "
                                          r"\[\d+(, \d+)*\] in the weights but \[\d+(, \d+)*\]"):
        train(resolve_config(wide, name="w"), outdir=tmp_path / "c")
    assert not (tmp_path / "c").exists()

    # the same classes in another order (a label convention) is refused
    cfg = json.loads((model / "config.json").read_text())
    names = cfg["dataset"]["class_names"]
    names[1], names[2] = names[2], names[1]
    (model / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(ConfigError, match=r"channel 1 is .* another order"):
        train(resolve_config(tuned, name="p"), outdir=tmp_path / "d")
    assert not (tmp_path / "d").exists()


def test_bf16_on_a_cpu_without_native_bf16_warns_and_trains_in_fp32(tmp_path, monkeypatch):
    import semsynth.training.loop as loop

    monkeypatch.setattr(loop, "cpu_bf16_supported", lambda: False)
    raw = {**TINY_RAW, "train": {**TINY_RAW["train"], "images": 4, "precision": "bf16", "log_every": 4,
                                 "sample_every": 4, "checkpoint_every": 4}}
    seen = []
    orig = torch.autocast

    def spy(*a, **k):
        seen.append(k.get("dtype"))
        return orig(*a, **k)

    monkeypatch.setattr(torch, "autocast", spy)
    run = train(resolve_config(raw, name="bf16"), outdir=tmp_path)
    log = (run / "log.txt").read_text()
    assert "no native bfloat16" in log and "400x" in log and "precision fp32" in log
    assert torch.bfloat16 not in seen  # no bf16 autocast anywhere in the step
    assert "precision: bf16" in (run / "config.yaml").read_text()  # the setting is kept for a bf16 machine


def test_the_generator_gradients_are_released_before_the_d_step(tmp_path, monkeypatch):
    """After G's optimiser step its gradients are not read again: the D step runs without them in memory."""
    from semsynth.objectives.gan import GANObjective

    seen = []
    orig = GANObjective.discriminator_loss

    def spy(self, D, semantic, real, fake):
        seen.append(sum(p.grad is not None for p in self._spy_G.parameters()))
        return orig(self, D, semantic, real, fake)

    orig_gen = GANObjective.generator_loss

    def spy_gen(self, G, *args, **kwargs):
        self._spy_G = G
        return orig_gen(self, G, *args, **kwargs)

    monkeypatch.setattr(GANObjective, "discriminator_loss", spy)
    monkeypatch.setattr(GANObjective, "generator_loss", spy_gen)
    raw = {**TINY_RAW, "train": {**TINY_RAW["train"], "images": 8, "checkpoint_every": 8}}
    train(resolve_config(raw, name="g"), outdir=tmp_path)
    assert seen == [0, 0]  # two steps of 4 images, no G gradient held during either D step


def test_scc_recompute_pixels_changes_nothing_the_run_computes(tmp_path):
    """Every SCC layer recomputing its stack (1 pixel) or none (null): the same weights after two steps, bit for
    bit (a bookkeeping key: a resume may change it)."""
    raw = {**TINY_RAW, "train": {**TINY_RAW["train"], "images": 8, "checkpoint_every": 8}}
    runs = [train(resolve_config(raw, [f"train.scc_recompute_pixels={v}"], name=f"r{i}"), outdir=tmp_path)
            for i, v in enumerate(("1", "null"))]
    a, b = (load_training_state(sorted((r / "checkpoints").glob("*.pt"))[-1]) for r in runs)
    for k in a["G"]:
        assert torch.equal(a["G"][k], b["G"][k]), k
    with pytest.raises(ConfigError, match="train.scc_recompute_pixels = 0 must be >= 1"):
        resolve_config(TINY_RAW, ["train.scc_recompute_pixels=0"], name="bad")

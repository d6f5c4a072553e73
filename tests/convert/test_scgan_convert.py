"""``semsynth convert --from scgan``: equivalence with the official SC-GAN networks (reference outputs made by running
dvlab-research/SCGAN, see tests/data/official/scgan/README.md) in eval mode and over one training step, the full-size
official layouts (key names, shapes, parameter counts), the options (opt.txt and its YAML, presets, --set, the
official configs as the fallback), the label conventions, and the errors."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image
from safetensors.torch import load_file

from semsynth.cli import main
from semsynth.convert import ConversionError, convert_checkpoint, read_opt_txt
from semsynth.convert.scgan import (
    ScganSettings,
    convert_scgan,
    effective_options,
    map_generator,
    plan_generator,
)
from semsynth.convert.spade_family import map_fpse
from semsynth.layers import channel_pool
from semsynth.models import build_discriminator, build_encoder, build_generator, count_parameters

OFFICIAL = Path(__file__).parents[1] / "data" / "official" / "scgan"
TINY = {"ade_like": "D", "celeba_like": "DE"}  # the two tiny references and the letters of their D (+E) file


def _state(data: dict[str, torch.Tensor], prefix: str) -> dict[str, torch.Tensor]:
    """The official state dict stored under ``prefix.`` (fp16-exact values, as float32 as the official run used)."""
    return {k[len(prefix) + 1:]: (v.float() if v.is_floating_point() else v) for k, v in data.items()
            if k.startswith(prefix + ".")}


def official_files(name: str, tmp: Path) -> dict[str, Path]:
    """The reference's official files as a user has them: latest_net_{G,D,E}.pth, opt.txt and the YAML it names."""
    d = tmp / name
    d.mkdir(parents=True, exist_ok=True)
    de = load_file(OFFICIAL / f"{name}_{TINY[name]}.safetensors")
    files = {"checkpoint": d / "latest_net_G.pth", "discriminator": d / "latest_net_D.pth"}
    torch.save(_state(load_file(OFFICIAL / f"{name}_G.safetensors"), "G"), files["checkpoint"])
    torch.save(_state(de, "D"), files["discriminator"])
    if "E" in TINY[name]:
        files["encoder"] = d / "latest_net_E.pth"
        torch.save(_state(de, "E"), files["encoder"])
    shutil.copy(OFFICIAL / f"{name}_opt.txt", d / "opt.txt")
    shutil.copy(OFFICIAL / f"{name}.yml", d / f"{name}.yml")
    return files


@pytest.fixture(scope="module")
def converted(tmp_path_factory):
    """Both references converted through the framework (files in, model directory out), once."""
    out = {}
    for name in TINY:
        tmp = tmp_path_factory.mktemp(name)
        files = official_files(name, tmp)
        model_dir, result = convert_checkpoint("scgan", files["checkpoint"], tmp / "model",
                                               encoder=files.get("encoder"), discriminator=files["discriminator"])
        out[name] = (model_dir, result, files)
    return out


def one_hot(label: torch.Tensor, n: int) -> torch.Tensor:
    return F.one_hot(label.long(), n).permute(0, 3, 1, 2).float()


def _close(a: torch.Tensor, b: torch.Tensor, what: str, rel: bool = False) -> float:
    diff = (a - b).abs().max().item()
    scale = max(b.abs().max().item(), 1.0) if rel else 1.0
    assert diff <= 1e-5 * scale, f"{what}: max difference {diff:.3g} (scale {scale:.3g})"
    return diff


# ------------------------------------------------------------------------------------------------------------
# Equivalence with the official networks


@pytest.mark.parametrize("name", list(TINY))
def test_eval_outputs_are_the_official_ones(converted, name):
    _, result, _ = converted[name]
    io = load_file(OFFICIAL / f"{name}_G_io.safetensors")
    G = result.generator.eval()
    C = result.info.num_classes
    with torch.no_grad():
        out = G(one_hot(io["label"], C), io.get("z"), return_aux=True)
    _close(out.image, io["eval.image"], "image")
    _close(out.coarse_rgb, io["eval.coarse_rgb"], "coarse RGB (SVG toRGB)")
    assert out.image.abs().max() > 0.5 and out.image.std() > 0.1  # not a degenerate reference
    for k, f in enumerate(out.semantic_features):  # the raw semantic vectors (official: weights before g)
        _close(channel_pool(f, G.conv_candidates), io[f"eval.routing_raw.{k}"], f"routing {k}", rel=True)


@pytest.mark.parametrize("name", list(TINY))
def test_one_training_step_follows_the_official_one(converted, name, tmp_path):
    """Train mode from the converted checkpoint: batch statistics, one power iteration (v, then u) per forward,
    the gradients (one SGD step on a fixed linear loss) and the running statistics all follow the official code."""
    from semsynth.training.checkpoint import load_model

    model_dir, _, _ = converted[name]
    G, _, info, _ = load_model(model_dir)  # from the written model directory: what a fine-tuning run loads
    io = load_file(OFFICIAL / f"{name}_G_io.safetensors")
    C, lr = info.num_classes, float(io["train.lr"])
    G.train()
    out = G(one_hot(io["train.label.0"], C), io.get("train.z.0"), return_aux=True)
    _close(out.image, io["train.step0.image"], "train-mode image")
    _close(out.coarse_rgb, io["train.step0.coarse_rgb"], "train-mode coarse RGB")
    loss = (out.image * io["train.loss_weight.image"]).mean() + (out.coarse_rgb * io["train.loss_weight.coarse_rgb"]
                                                                 ).mean()
    _close(loss.detach().reshape(1), io["train.step0.loss"], "loss")
    G.zero_grad()
    loss.backward()
    with torch.no_grad():
        for p in G.parameters():
            if p.grad is not None:
                p.sub_(lr * p.grad)
        out = G(one_hot(io["train.label.1"], C), io.get("train.z.1"), return_aux=True)
    _close(out.image, io["train.step1.image"], "image after the step")
    _close(out.coarse_rgb, io["train.step1.coarse_rgb"], "coarse RGB after the step")
    after, names = map_generator({k[len("train.after.G."):]: v for k, v in io.items()
                                  if k.startswith("train.after.G.")})
    state = G.state_dict()
    checked = {"u": 0, "v": 0, "running": 0, "weight": 0}
    for k, v in after.items():
        _close(state[k], v, f"{k} (official {names[k]})", rel=True)
        kind = "u" if k.endswith(("_u", ".sn.u")) else "v" if k.endswith(("_v", ".sn.v")) else \
            "running" if "running" in k else "weight"
        checked[kind] += 1
    assert min(checked.values()) > 0, checked


def test_discriminators_and_encoder_follow_the_official_ones(converted):
    """Eval outputs of the FPSE (ADE-like) and multi-scale (CelebA-like) discriminators and of the VAE encoder,
    and three train-mode forwards (power iteration order) after them."""
    for name, letters in TINY.items():
        _, result, _ = converted[name]
        ref = load_file(OFFICIAL / f"{name}_{letters}.safetensors")
        sem = one_hot(ref["label"], result.info.num_classes)
        D = result.discriminator

        def outputs(image, D=D, sem=sem, name=name):
            o = D(image, sem)
            if name == "ade_like":
                return {f"feat.{i}": f[0] for i, f in enumerate(o.features)} | \
                       {f"pred.{i}": p for i, p in enumerate(o.logits)}
            return {f"out.{i}.{j}": t for i, (fs, lg) in enumerate(zip(o.features, o.logits))
                    for j, t in enumerate([*fs, lg])}

        D.eval()
        with torch.no_grad():
            got = outputs(ref["image"])
            assert len(got) == len([k for k in ref if k.startswith("eval.") and k[5:] in got]) > 0
            for k, v in got.items():
                _close(v, ref[f"eval.{k}"], f"{name} D eval {k}", rel=True)
            D.train()
            for i in range(1, 4):
                got = outputs(ref[f"train.image.{i}"])
            for k, v in got.items():
                _close(v, ref[f"train.last.{k}"], f"{name} D train {k}", rel=True)
        mapped, _ = map_fpse({k[len("train.after.D."):]: v for k, v in ref.items() if k.startswith("train.after.D.")}) \
            if name == "ade_like" else (_multiscale_after(ref), None)
        assert mapped
        for k, v in mapped.items():
            _close(D.state_dict()[k], v, f"{name} D {k}", rel=True)
        if "E" in letters:
            E = result.encoder.eval()
            with torch.no_grad():
                mu, logvar = E(ref["image"])
                _close(mu, ref["eval.mu"], "mu")
                _close(logvar, ref["eval.logvar"], "logvar")
                E.train()
                for i in range(1, 4):
                    mu, logvar = E(ref[f"train.image.{i}"])
                _close(mu, ref["train.last.mu"], "train-mode mu")
                _close(logvar, ref["train.last.logvar"], "train-mode logvar")
            from semsynth.convert.spade_family import map_encoder

            after = map_encoder({k[len("train.after.E."):]: v for k, v in ref.items()
                                 if k.startswith("train.after.E.")})
            assert after
            for k, v in after.items():
                _close(E.state_dict()[k], v, f"E {k}", rel=True)


def _multiscale_after(ref: dict) -> dict:
    from semsynth.convert.spade_family import map_discriminator

    return map_discriminator({k[len("train.after.D."):]: v for k, v in ref.items() if k.startswith("train.after.D.")})


def test_the_written_model_directory(converted):
    """config.json holds the resolved config, the channel convention, label_values and the data spec; the weights
    reload with ``load_model`` and give the official outputs."""
    from semsynth.training.checkpoint import load_model

    model_dir, _, _ = converted["celeba_like"]
    for f in ("model.safetensors", "encoder.safetensors", "discriminator.safetensors", "config.json"):
        assert (model_dir / f).is_file(), f
    cfg = json.loads((model_dir / "config.json").read_text())
    assert cfg["generator"]["input_mode"] == "noise" and cfg["generator"]["z_dim"] == 8
    assert cfg["generator"]["position_encoding"] is True and cfg["generator"]["pyramid_position"] is True
    assert cfg["encoder"]["name"] == "conv" and cfg["discriminator"]["name"] == "multiscale"
    assert cfg["dataset"]["name"] == "celebamask-hq" and cfg["dataset"]["num_classes"] == 19
    assert cfg["label_values"] == {"0": 18} | {str(v): v - 1 for v in range(1, 19)}
    assert cfg["data"]["name"] == "celebamask-hq" and cfg["data"]["crop_size"] == 32 and cfg["data"]["flip"] is False
    assert cfg["converted_from"]["family"] == "scgan"
    assert cfg["converted_from"]["sources"]["temperature"] == "opt.txt + celeba_like.yml"
    G, E, _, _ = load_model(model_dir)
    io = load_file(OFFICIAL / "celeba_like_G_io.safetensors")
    with torch.no_grad():
        _close(G(one_hot(io["label"], 19), io["z"]), io["eval.image"], "reloaded image")
    assert E is not None


# ------------------------------------------------------------------------------------------------------------
# The released layouts at full size (key names, shapes, parameter counts; meta tensors, no memory)


def _normalised(state: dict[str, torch.Tensor]) -> dict[str, tuple]:
    """Key -> shape with spectral norm folded away (a model built on the meta device has no spectral norm)."""
    out = {}
    for k, v in state.items():
        if k.endswith((".parametrizations.weight.0._u", ".parametrizations.weight.0._v")):
            continue
        out[k.replace(".parametrizations.weight.original", ".weight")] = tuple(v.shape)
    return out


FULL = {  # official name -> (semsynth dataset, channels, temperature, G, D, E parameter counts of the spec, §7.2)
    "ade20k": ("ade20k", 151, 0.05, 60_854_662, 5_190_593, None),
    "coco": ("coco-stuff", 183, 0.5, 41_846_838, 5_194_689, None),
    "coco-instance": ("coco-stuff", 184, 0.5, 41_862_966, 5_194_689, None),
    "celeba": ("celebamask-hq", 19, 0.05, 147_570_054, 5_566_594, 6_672_656),
}


@pytest.mark.parametrize("name", list(FULL))
def test_full_size_official_layouts_map_key_for_key(name):
    facts = json.loads((OFFICIAL / "official_shapes.json").read_text())[name]
    dataset, channels, tau, n_g, n_d, n_e = FULL[name]
    meta = {k: torch.empty(s, device="meta") for k, s in facts["G"].items()}
    opt_path = OFFICIAL / f"opt_{name}.txt"  # names config/scgan_*.yml, which is not beside it: the known values
    notes: list[str] = []
    eff, cli, label = effective_options(read_opt_txt(opt_path), opt_path, None, notes)
    s = ScganSettings(None, [], label)
    plan = plan_generator(meta, eff, cli, s, notes)
    assert plan["info"].name == dataset and plan["channels"] == channels
    assert plan["spec"]["temperature"] == tau and s.sources["temperature"] == label
    with torch.device("meta"):
        G = build_generator(plan["spec"], **plan["interface"])
    mapped, _ = map_generator(meta)
    assert _normalised(mapped) == _normalised(G.state_dict())
    assert count_parameters(G) == facts["params"]["G"] == n_g
    d_meta = {k: torch.empty(s, device="meta") for k, s in facts["D"].items()}
    with torch.device("meta"):
        if name == "celeba":
            from semsynth.convert.spade_family import map_discriminator, map_encoder

            D = build_discriminator({"name": "multiscale", "width": 64}, num_classes=19)
            d_mapped = map_discriminator(d_meta)
            E = build_encoder({"name": "conv", "width": 48, "z_dim": 256})
            e_meta = {k: torch.empty(s, device="meta") for k, s in facts["E"].items()}
            assert _normalised(map_encoder(e_meta)) == _normalised(E.state_dict())
            assert count_parameters(E) == facts["params"]["E"] == n_e
        else:  # (the official D is built after the YAML's no_instance: true, so its embedding reads 183 channels
            # even where the generator reads 184: the crash of spec §0 item 2)
            D = build_discriminator({"name": "fpse", "width": 64}, num_classes=183 if name.startswith("coco") else 151)
            d_mapped = map_fpse(d_meta)[0]
    assert _normalised(d_mapped) == _normalised(D.state_dict())
    assert count_parameters(D) == facts["params"]["D"] == n_d
    if name == "celeba":
        sp = plan["spec"]
        assert (sp["position_encoding"], sp["pyramid_position"], sp["position_levels"], sp["svg_spectral"],
                sp["input_mode"], sp["z_dim"], sp["srg_width"], sp["fc_width"]) == (True, True, 4, False, "noise",
                                                                                     256, 48, 32)


def test_without_options_the_official_config_of_the_detected_dataset_is_used():
    facts = json.loads((OFFICIAL / "official_shapes.json").read_text())
    for name, tau in (("ade20k", 0.05), ("coco", 0.5), ("celeba", 0.05)):
        meta = {k: torch.empty(s, device="meta") for k, s in facts[name]["G"].items()}
        notes: list[str] = []
        s = ScganSettings(None, [])
        plan = plan_generator(meta, {}, {}, s, notes)
        assert plan["spec"]["temperature"] == tau
        assert s.sources["temperature"].startswith("official scgan_") and "detected" in s.sources["temperature"]
        assert s.sources["dataset"].startswith("tensor shapes")
        assert any("took the official" in n and "temperature" in n for n in notes), notes
        assert plan["spec"]["position_encoding"] is (name == "celeba")


def test_label_conventions_are_those_of_the_official_loaders():
    """ADE20K unshifted (SC-GAN's variant, semsynth ``label_convention: scgan``), COCO-Stuff 182 + unlabeled 255,
    CelebAMask-HQ ``label - 1`` with background last: raw value -> channel exactly as the official loaders."""
    facts = json.loads((OFFICIAL / "official_shapes.json").read_text())

    def official(raw: int, mode: str, label_nc: int) -> int:  # pix2pix_dataset + the dataset's postprocess
        v = label_nc if raw == 255 else raw
        if mode == "celeba":
            v = v - 1
            v = label_nc if v == -1 else v
            v = min(max(v, 0), label_nc)
        return v

    for name, mode, label_nc in (("ade20k", "ade20k", 150), ("coco", "coco", 182), ("celeba", "celeba", 18)):
        meta = {k: torch.empty(s, device="meta") for k, s in facts[name]["G"].items()}
        plan = plan_generator(meta, {}, {}, ScganSettings(None, []), [])
        table, info, data = plan["label_values"], plan["info"], plan["data"]
        assert {int(k): v for k, v in table.items()} == {raw: official(raw, mode, label_nc) for raw in map(int, table)}
        assert info.num_classes == label_nc + 1
        if mode == "ade20k":
            assert sorted(map(int, table)) == list(range(151)) and data["label_convention"] == "scgan"
            assert info.dontcare_index == 0 and info.class_names[1] == "wall"
        if mode == "coco":
            assert table["255"] == 182 and len(table) == 183 and info.dontcare_index == 182
        if mode == "celeba":
            assert table["0"] == 18 and table["1"] == 0 and info.class_names[18] == "background"
        assert data["flip"] is False and data["load_size"] == data["crop_size"]


def test_generate_reads_a_label_png_as_the_official_test_script(converted, tmp_path):
    """``semsynth generate`` on a converted CelebA-like model maps a raw mask PNG through label_values: the image
    is G(one-hot of the official mapping)."""
    from semsynth.inference import Synthesizer

    model_dir, _, _ = converted["celeba_like"]
    raw = np.random.default_rng(0).integers(0, 19, (32, 32)).astype(np.uint8)
    Image.fromarray(raw).save(tmp_path / "mask.png")
    synth = Synthesizer.from_pretrained(model_dir, device="cpu")
    label = synth.read_label(tmp_path / "mask.png")
    expected = torch.from_numpy(np.where(raw == 0, 18, raw.astype(np.int64) - 1))
    assert torch.equal(label, expected)


# ------------------------------------------------------------------------------------------------------------
# Options: sources, contradictions


def _tiny_state(name: str) -> dict[str, torch.Tensor]:
    return _state(load_file(OFFICIAL / f"{name}_G.safetensors"), "G")


def test_contradictions_name_both_sources(tmp_path):
    files = official_files("ade_like", tmp_path)
    opt = read_opt_txt(files["checkpoint"].parent / "opt.txt")
    kw = {"encoder_state": None, "discriminator_state": None, "opt_path": files["checkpoint"].parent / "opt.txt",
          "checkpoint_path": files["checkpoint"]}
    state = _tiny_state("ade_like")
    with pytest.raises(ConversionError, match=r"temperature: opt\.txt \+ ade_like\.yml says 5\.0 but --set says 0\.5"):
        convert_scgan(state, opt, preset=None, overrides=["generator.temperature=0.5"], **kw)
    with pytest.raises(ConversionError, match=r"srg_width: tensor shapes says 1 but --preset scgan-celeba says 48"):
        convert_scgan(state, {}, preset="scgan-celeba", overrides=[], encoder_state=None, discriminator_state=None)
    with pytest.raises(ConversionError, match=r"19 input channels, but ade20k has 151 label channels"):
        convert_scgan(state, {}, preset="scgan-ade20k", overrides=[], encoder_state=None, discriminator_state=None)
    with pytest.raises(ConversionError, match=r"--preset spade-ade20k|preset of generator"):
        convert_scgan(state, {}, preset="scgan-ade20k".replace("scgan", "spade"), overrides=[], encoder_state=None,
                      discriminator_state=None)
    # what the shapes cannot tell may come from --set when nothing else gives it
    res = convert_scgan(state, {}, preset=None, overrides=["generator.temperature=2.0", "data.name=celebamask-hq",
                                                           "data.crop_size=32"],
                        encoder_state=None, discriminator_state=None)
    assert res.generator.temperature == 2.0 and res.sources["temperature"] == "--set"


def test_an_unknown_yaml_that_opt_txt_names_drops_its_stale_values(tmp_path):
    files = official_files("ade_like", tmp_path)
    (files["checkpoint"].parent / "ade_like.yml").unlink()
    opt_path = files["checkpoint"].parent / "opt.txt"
    res = convert_scgan(_tiny_state("ade_like"), read_opt_txt(opt_path), encoder_state=None, discriminator_state=None,
                        preset=None, overrides=["generator.temperature=5.0"], opt_path=opt_path,
                        checkpoint_path=files["checkpoint"])
    # opt.txt says ngf 64 (the pre-YAML default): not a contradiction, since those values were never used
    assert res.generator.config["srg_width"] == 1 and res.generator.config["temperature"] == 5.0
    assert any("not beside opt.txt" in n for n in res.notes), res.notes


def test_cli_prints_the_resolved_config_and_sources(converted, tmp_path, capsys):
    _, _, files = converted["ade_like"]
    rc = main(["convert", "--from", "scgan", "--checkpoint", str(files["checkpoint"]), "--discriminator",
               str(files["discriminator"]), "--out", str(tmp_path / "m")])
    text = capsys.readouterr().out
    assert rc == 0, text
    assert "generator scgan:" in text and "temperature=5.0" in text and "conv_candidates=3" in text
    assert "discriminator fpse:" in text
    assert "temperature: from opt.txt + ade_like.yml" in text and "srg_width: from tensor shapes" in text
    assert "wrote" in text and (tmp_path / "m" / "discriminator.safetensors").is_file()


@pytest.mark.parametrize("case", ["missing", "extra", "channels", "other-family", "encoder-without-vae"])
def test_errors_name_the_key_the_shapes_and_the_cause(case):
    state = _tiny_state("ade_like")
    kw = {"encoder_state": None, "discriminator_state": None, "preset": None,
          "overrides": ["data.name=celebamask-hq", "data.crop_size=32", "generator.temperature=5.0"]}
    if case == "missing":
        del state["up_1.norm_s.mlp_beta.bias"]
        match = r"1 tensor\(s\) missing from the checkpoint \('up_1\.norm_s\.mlp_beta\.bias'\)"
    elif case == "extra":
        state["up_1.extra.weight"] = torch.zeros(2)
        match = r"have no place in the model \('up_1\.extra\.weight'\)"
    elif case == "channels":  # one SPADE shortcut of a model with an instance channel more
        w = state["up_0.norm_s.mlp_shared.0.weight"]
        state["up_0.norm_s.mlp_shared.0.weight"] = torch.cat([w, w[:, :1]], 1)
        match = (r"'up_0\.norm_s\.mlp_shared\.0\.weight' has shape \[128, 20, 3, 3\] in the checkpoint but "
                 r"\[128, 19, 3, 3\].*instance map on/off")
    elif case == "other-family":
        state = {"head_0.norm_0.mlp_shared.0.weight": torch.zeros(128, 184, 3, 3), "fc.weight": torch.zeros(2)}
        match = r"not an SC-GAN generator.*--from spade"
    else:
        kw["encoder_state"] = {"layer1.0.weight_orig": torch.zeros(1)}
        match = r"no VAE"
    with pytest.raises(ConversionError, match=match):
        convert_scgan(state, {}, **kw)


def test_stacked_experts_keep_their_power_iteration_vectors(converted):
    """The n experts' u and v land in the SCC layer's stacked spectral norm, row e = expert e."""
    _, result, _ = converted["ade_like"]
    state = _tiny_state("ade_like")
    scc = result.generator.up_0.conv_1
    for e in range(3):
        assert torch.equal(scc.weight[e], state[f"up_0.conv_1.conv_bases.{e}.weight_orig"])
        assert torch.equal(scc.sn.u[e], state[f"up_0.conv_1.conv_bases.{e}.weight_u"])
        assert torch.equal(scc.sn.v[e], state[f"up_0.conv_1.conv_bases.{e}.weight_v"])
    assert torch.equal(result.generator.up_0.norm_1.candidates, state["up_0.norm_1.affine_params_groups"])

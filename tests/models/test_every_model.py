"""Every registered generator and discriminator, one table (timm-style): the official parameter count at the
ADE20K setting, built on the meta device; one training step of its synthetic-faces preset gives a gradient to every
parameter that should learn; eval output shape and range; the export -> generate round trip.

A newly registered model fails the first tests until it has its rows here.
"""

from __future__ import annotations

import pytest
import torch

from semsynth.config import load_config
from semsynth.data import build_dataset
from semsynth.inference import Synthesizer
from semsynth.layers import semantic_input
from semsynth.models import (DISCRIMINATORS, ENCODERS, GENERATORS, build_discriminator, build_encoder,
                             build_generator, count_parameters)
from semsynth.objectives import build_objective
from semsynth.training import export_model

ADE20K = {"num_classes": 151, "use_instance": False, "resolution": [256, 256]}

# (options at the ADE20K setting, the official count) — measured from the official repositories (docs/models.md)
GENERATOR_COUNTS = {
    "scgan": [({"conv_candidates": 3, "norm_candidates": 4, "srg_width": 32, "fc_width": 32, "svg_width": 32},
               60_854_662)],
    "spade": [({}, 96_492_483), ({"use_vae": True}, 111_942_595)],
    "pix2pixhd": [({}, 182_886_019)],
    "ccfpse": [({"use_vae": True}, 140_704_323), ({"use_vae": False}, 125_254_211)],
    "oasis": [({}, 74_314_691)],
    "crn": [(None, 105_106_947)],  # the crn-ade20k preset (the paper's widths; no official code: hand count)
    "sims": [(None, 59_402_330)],  # the sims-ade20k preset (hand count)
    # the scgan-unpaired preset (ADE20K widths, 256x256, 3 input channels): the official SCGGenerator at C = 3 (the
    # official translation model is not runnable; this is the scgan count at num_classes=3)
    "scgan-unpaired": [(None, 58_126_726)],
}
DISCRIMINATOR_COUNTS = {
    "multiscale": [({}, 5_836_930)],  # SPADE's multi-scale PatchGAN
    "fpse": [({}, 5_190_593)],  # CC-FPSE's / SC-GAN's
    "fp": [({}, None)],  # FP-only ablation of FPSE (CC-FPSE report): no official count; checked against fpse below
    "oasis": [({}, 22_258_904)],
}
ENCODER_COUNTS = {"conv": [({"z_dim": 256, "width": 64, "input_size": 256}, 10_463_424)]}
PRESET_OF = {"crn": "crn-ade20k", "sims": "sims-ade20k", "scgan-unpaired": "scgan-unpaired"}
# generators of another task than label -> image synthesis, and the tests that train, export and run them
OTHER_TASKS = {"scgan-unpaired": "tests/test_unpaired.py (unpaired image translation)"}

# the synthetic-faces preset of each generator (and of each discriminator, through the preset that uses it)
FACES = {"scgan": "scgan-synthetic-faces", "spade": "spade-synthetic-faces", "pix2pixhd": "pix2pixhd-synthetic-faces",
         "ccfpse": "ccfpse-synthetic-faces", "oasis": "oasis-synthetic-faces", "crn": "crn-synthetic-faces",
         "sims": "sims-synthetic-faces"}
def _meta_count(registry, spec) -> int:
    with torch.device("meta"):
        return count_parameters(registry.build(spec))


def test_every_registered_model_has_its_rows():
    assert set(GENERATORS.names()) == set(GENERATOR_COUNTS), "add the new generator's official count"
    assert set(DISCRIMINATORS.names()) == set(DISCRIMINATOR_COUNTS), "add the new discriminator's count"
    assert set(ENCODERS.names()) == set(ENCODER_COUNTS)
    assert set(GENERATORS.names()) == set(FACES) | set(OTHER_TASKS), "add the new generator's synthetic-faces preset"
    assert not set(FACES) & set(OTHER_TASKS)


@pytest.mark.parametrize("name,options,expected", [(n, o, c) for n, rows in GENERATOR_COUNTS.items()
                                                   for o, c in rows])
def test_generator_count_at_the_ade20k_setting(name, options, expected):
    if options is None:
        spec = load_config(PRESET_OF[name]).generator
    else:
        spec = {"name": name, **options, **ADE20K}
    assert _meta_count(GENERATORS, spec) == expected


@pytest.mark.parametrize("name,options,expected", [(n, o, c) for n, rows in DISCRIMINATOR_COUNTS.items()
                                                   for o, c in rows])
def test_discriminator_count_at_the_ade20k_setting(name, options, expected):
    spec = {"name": name, **options, "num_classes": 151, "use_instance": False}
    count = _meta_count(DISCRIMINATORS, spec)
    if expected is None:  # FP-only: FPSE without its semantic-embedding projection
        fpse = _meta_count(DISCRIMINATORS, {**spec, "name": "fpse"})
        assert 0 < count < fpse
    else:
        assert count == expected


@pytest.mark.parametrize("name,options,expected", [(n, o, c) for n, rows in ENCODER_COUNTS.items()
                                                   for o, c in rows])
def test_encoder_count(name, options, expected):
    assert _meta_count(ENCODERS, {"name": name, **options}) == expected


# -- one training step, eval, export round trip -----------------------------------------------------------------


@pytest.fixture(scope="module")
def bank(tmp_path_factory):
    """A memory bank of 16 training faces for SIMS."""
    from semsynth.sims import build_bank

    path = tmp_path_factory.mktemp("bank") / "bank.safetensors"
    ds = build_dataset({"name": "synthetic-faces", "resolution": 64, "num_samples": 16, "seed": 0})
    build_bank(ds).save(path)
    return path


def _faces_config(name: str, bank_path):
    overrides = ["data.num_samples=16", "train.batch_size=2"]
    if name == "sims":
        overrides.append(f"loss.bank={bank_path}")
    return load_config(FACES[name], overrides)


@pytest.mark.parametrize("name", sorted(FACES))
def test_one_step_trains_every_parameter_eval_and_round_trip(name, bank, tmp_path):
    torch.manual_seed(0)
    torch.set_num_threads(1)
    cfg = _faces_config(name, bank)
    ds = build_dataset(cfg.data)
    info = ds.info
    G = build_generator(cfg.generator).train()
    D = build_discriminator(cfg.discriminator).train() if cfg.discriminator else None
    E = build_encoder(cfg.encoder).train() if cfg.encoder else None
    objective = build_objective(cfg.loss)
    objective.prepare("cpu", pretrained=False) if "pretrained" in objective.prepare.__code__.co_varnames \
        else objective.prepare("cpu")
    objective.attach(G)
    batch = [ds[i] for i in range(2)]
    label = torch.stack([b["label"] for b in batch])
    real = torch.stack([b["image"] for b in batch])
    sem = semantic_input(label, info.num_classes, None)

    loss, stats, fake = objective.generator_loss(G, D, E, sem, real)
    assert torch.isfinite(loss)
    loss.backward()
    learners = [(k, p) for k, p in G.named_parameters() if p.requires_grad]
    if E is not None:
        learners += [(f"E.{k}", p) for k, p in E.named_parameters()]
    silent = [k for k, p in learners if p.grad is None or not bool(p.grad.abs().sum() > 0)]
    assert not silent, f"{name}: parameters with no gradient after a generator step: {silent[:8]}"
    if D is not None:
        d_loss, _ = objective.discriminator_loss(D, sem, real, fake)
        d_loss.backward()
        silent = [k for k, p in D.named_parameters() if p.grad is None or not bool(p.grad.abs().sum() > 0)]
        assert not silent, f"{name}: D parameters with no gradient: {silent[:8]}"

    # eval: shape and range
    G.eval()
    z = torch.randn(2, G.latent_dim) if G.latent_dim else None
    with torch.no_grad():
        out = G(sem, z)
    assert out.shape == (2, 3, 64, 64) and out.min() >= -1 and out.max() <= 1

    # export -> generate: the same image through the model directory
    model_dir = export_model(tmp_path / "model", G, info, E, extra={"data": cfg.data})
    syn = Synthesizer.from_pretrained(model_dir, "cpu")
    assert syn.z_dim == G.latent_dim
    again = syn.generate(label, z=z)
    torch.testing.assert_close(again, out, atol=1e-5, rtol=1e-5)

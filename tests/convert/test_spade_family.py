"""The SPADE family's conventions (``convert/spade_family.py``) hold alike in every converter that shares them: SPADE,
CC-FPSE, SC-GAN (and, for recognising a checkpoint, OASIS). The reference files are those of the families' own tests
(tests/data/official/<family>/)."""

from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from semsynth.convert import ConversionError
from semsynth.convert.ccfpse import convert_ccfpse
from semsynth.convert.oasis import convert_oasis
from semsynth.convert.scgan import convert_scgan
from semsynth.convert.spade import convert_spade
from semsynth.convert.spade_family import looks_like

OFFICIAL = Path(__file__).parents[1] / "data" / "official"
CCFPSE_OPT = {"dataset_mode": "custom", "label_nc": 4, "contain_dontcare_label": True, "no_instance": True,
              "crop_size": 32, "aspect_ratio": 1.0, "netG": "condconv", "use_vae": True, "z_dim": 256}
SPADE_OPT = {"dataset_mode": "custom", "label_nc": 5, "contain_dontcare_label": True, "no_instance": False,
             "crop_size": 64, "aspect_ratio": 1.0, "netG": "spade", "norm_G": "spectralspadeinstance1x1"}
SPADE_VAE_OPT = {"dataset_mode": "custom", "label_nc": 5, "contain_dontcare_label": False, "no_instance": False,
                 "crop_size": 128, "aspect_ratio": 2.0, "netG": "spade", "use_vae": True, "z_dim": 256,
                 "num_upsampling_layers": "more", "norm_G": "spectralspadesyncbatch1x1"}


def state(file: str, prefix: str) -> dict[str, torch.Tensor]:
    data = load_file(OFFICIAL / f"{file}.safetensors")
    return {k[len(prefix) + 1:]: v for k, v in data.items() if k.startswith(prefix + ".")}


def convert(fn, g, opt=None, **kw):
    return fn(g, opt or {}, **{"encoder_state": None, "discriminator_state": None, "preset": None, "overrides": [],
                               **kw})


CHECKPOINTS = {
    "scgan": lambda: {"pyramid_spaital_routing.labelDec1.0.weight": torch.zeros(16, 5, 3, 3),
                      "head_0.conv_0.conv_bases.0.weight": torch.zeros(16, 16, 3, 3)},
    "spade": lambda: state("spade/spade_g", "G"),
    "ccfpse": lambda: state("ccfpse/generator_vae", "netG"),
    "oasis": lambda: state("oasis/generator", "state"),
}
CONVERTERS = {"scgan": convert_scgan, "spade": convert_spade, "ccfpse": convert_ccfpse, "oasis": convert_oasis}


@pytest.mark.parametrize("source", list(CHECKPOINTS))
def test_every_converter_names_the_family_of_a_foreign_checkpoint(source):
    g = CHECKPOINTS[source]()
    assert looks_like(g) == source
    for family, fn in CONVERTERS.items():
        if family == source:
            continue
        with pytest.raises(ConversionError, match=rf"it looks like a {source} checkpoint: --from {source}\)"):
            convert(fn, g)


def test_the_test_time_data_spec_is_the_official_test_scripts_in_every_family():
    """Resized to the crop size (no random crop), no flip: SPADE's converter used to keep load_size 256 > crop."""
    spade = convert(convert_spade, state("spade/spade_g", "G"), SPADE_OPT).data
    ccfpse = convert(convert_ccfpse, state("ccfpse/generator_vae", "netG"), CCFPSE_OPT).data
    for data, crop in ((spade, 64), (ccfpse, 32)):
        assert (data["load_size"], data["crop_size"], data["flip"]) == (crop, crop, False)
        assert set(data) == set(spade)


def test_the_encoder_rules_are_the_same_in_every_family():
    """SPADE's ConvEncoder (CC-FPSE's is the same code) resizes every image to 256x256, so a 5-layer encoder (trained
    with crop_size < 256) cannot run in the official code: both converters refuse it alike."""
    cases = ((convert_spade, state("spade/spade_g_vae", "G"), SPADE_VAE_OPT, state("spade/spade_e", "E"), "SPADE"),
             (convert_ccfpse, state("ccfpse/generator_vae", "netG"), CCFPSE_OPT, state("ccfpse/encoder", "netE"),
              "CC-FPSE"))
    for fn, g, opt, e, family in cases:
        assert convert(fn, g, opt, encoder_state=e).encoder.config["input_size"] == 256
        five = {k: v for k, v in e.items() if not k.startswith("layer6.")}
        with pytest.raises(ConversionError, match=rf"5 stride-2 layers; {family}'s encoder resizes every image to "
                                                  r"256x256 and needs 6"):
            convert(fn, g, opt, encoder_state=five)
        with pytest.raises(ConversionError, match=rf"--encoder: not a {family} ConvEncoder checkpoint"):
            convert(fn, g, opt, encoder_state=g)


@pytest.mark.parametrize("fn, g, family", [
    (convert_spade, ("spade/spade_g", "G"), "spade"),
    (convert_ccfpse, ("ccfpse/generator_vae", "netG"), "ccfpse"),
])
def test_a_preset_of_a_dataset_the_family_never_shipped_is_refused_alike(fn, g, family):
    with pytest.raises(ConversionError, match=r"data.name 'synthetic-faces': .* checkpoints are for ade20k, "
                                              r"coco-stuff, cityscapes or custom"):
        convert(fn, state(*g), preset=f"{family}-synthetic-faces")

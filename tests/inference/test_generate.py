import numpy as np
import pytest
import torch
from PIL import Image

from semsynth.cli import main
from semsynth.config import resolve_config
from semsynth.data.synthetic_faces import PALETTE, write_synthetic_faces
from semsynth.errors import DataError, SemsynthError
from semsynth.inference import Synthesizer, parse_seeds
from semsynth.training import train
from tests.helpers import TINY_RAW


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("gen")
    run = train(resolve_config({**TINY_RAW, "train": {**TINY_RAW["train"], "images": 8}}, name="g"), outdir=tmp)
    return run / "model"


@pytest.fixture(scope="module")
def labels_dir(tmp_path_factory):
    return write_synthetic_faces(tmp_path_factory.mktemp("faces"), 2, size=64, seed=3, split="val") / "labels"


def test_seeds_are_reproducible_and_different(model_dir, labels_dir):
    syn = Synthesizer.from_pretrained(model_dir)
    label = syn.read_label(next(labels_dir.iterdir()))
    a = syn.generate(label[None], seeds=[0, 1, 2])
    b = syn.generate(label[None], seeds=[2, 0])
    assert a.shape == (1, 3, 3, 64, 64)
    torch.testing.assert_close(a[0, 2], b[0, 0])  # a seed gives the same image in any batch
    torch.testing.assert_close(a[0, 0], b[0, 1])
    assert not torch.allclose(a[0, 0], a[0, 1])


def test_interpolation_ends_at_the_seeds(model_dir, labels_dir):
    syn = Synthesizer.from_pretrained(model_dir)
    label = syn.read_label(next(labels_dir.iterdir()))
    seq = syn.interpolate(label, 4, 9, 5)
    ends = syn.generate(label[None], seeds=[4, 9])[0]
    assert seq.shape == (5, 3, 64, 64)
    torch.testing.assert_close(seq[0], ends[0], atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(seq[-1], ends[1], atol=1e-5, rtol=1e-5)


def test_rgb_layouts_decode_with_the_palette(model_dir, labels_dir, tmp_path):
    syn = Synthesizer.from_pretrained(model_dir)
    f = next(labels_dir.iterdir())
    ids = syn.read_label(f)
    rgb = np.asarray(PALETTE, dtype=np.uint8)[ids.numpy()]
    Image.fromarray(rgb).save(tmp_path / "colour.png")
    assert torch.equal(syn.read_label(tmp_path / "colour.png"), ids)
    rgb[0, 0] = (1, 2, 3)
    Image.fromarray(rgb).save(tmp_path / "bad.png")
    with pytest.raises(DataError, match=r"colours \[\[1, 2, 3\]\] are not in the synthetic-faces palette"):
        syn.read_label(tmp_path / "bad.png")
    Image.fromarray(np.full((64, 64), 40, np.uint8)).save(tmp_path / "ids.png")
    with pytest.raises(DataError, match=r"label values \[40\] are outside the model's classes 0..14"):
        syn.read_label(tmp_path / "ids.png")


def test_cli_generate_writes_named_outputs(model_dir, labels_dir, tmp_path, capsys):
    out = tmp_path / "out"
    assert main(["generate", "--model", str(model_dir), "--labels", str(labels_dir), "--out", str(out),
                 "--seeds", "0-2", "--grid"]) == 0
    names = sorted(p.name for p in out.iterdir())
    assert names == ["grid.png"] + sorted(f"val_00000{i}_seed{s}.png" for i in range(2) for s in range(3))
    assert Image.open(out / "val_000000_seed1.png").size == (64, 64)
    style = next((labels_dir.parent / "images").iterdir())
    assert main(["generate", "--model", str(model_dir), "--labels", str(labels_dir), "--out", str(tmp_path / "s"),
                 "--style", str(style)]) == 0
    assert (tmp_path / "s" / f"val_000000_style-{style.stem}.png").is_file()
    assert main(["generate", "--model", str(model_dir), "--labels", str(labels_dir / "val_000001.png"),
                 "--out", str(tmp_path / "i"), "--interpolate", "0", "1", "--steps", "3"]) == 0
    assert len(list((tmp_path / "i").iterdir())) == 3


@pytest.mark.parametrize("args,msg", [
    (["--seeds", "3-1"], "ends before it starts; write 1-3"),
    (["--seeds", "1", "--interpolate", "0", "1"], "choose one of"),
    (["--steps", "1", "--interpolate", "0", "1"], "need at least 2"),
    (["--batch-size", "0"], "must be >= 1"),
])
def test_cli_generate_bad_options(model_dir, labels_dir, tmp_path, capsys, args, msg):
    rc = main(["generate", "--model", str(model_dir), "--labels", str(labels_dir), "--out", str(tmp_path), *args])
    assert rc == 2 and msg in capsys.readouterr().err


def test_missing_model_and_labels(tmp_path, model_dir, capsys):
    assert main(["generate", "--model", str(tmp_path), "--labels", str(tmp_path), "--out", str(tmp_path)]) == 2
    assert "config.json is missing" in capsys.readouterr().err
    (tmp_path / "empty").mkdir()
    assert main(["generate", "--model", str(model_dir), "--labels", str(tmp_path / "empty"),
                 "--out", str(tmp_path)]) == 2
    assert "no label maps" in capsys.readouterr().err


def test_deterministic_models_refuse_seeds(tmp_path):
    raw = {**TINY_RAW, "encoder": None, "generator": {**TINY_RAW["generator"], "input_mode": "label"},
           "train": {**TINY_RAW["train"], "images": 4}}
    run = train(resolve_config(raw, name="det"), outdir=tmp_path)
    syn = Synthesizer.from_pretrained(run / "model")
    with pytest.raises(SemsynthError, match="needs a multi-modal model"):
        syn.generate(torch.zeros(1, 64, 64, dtype=torch.long), seeds=[0, 1])
    with pytest.raises(SemsynthError, match="has no style encoder"):
        syn.style_z(torch.zeros(1, 3, 64, 64))


def test_parse_seeds():
    assert parse_seeds("0-3,7") == [0, 1, 2, 3, 7]
    assert list(parse_seeds(" 5 , 0-1")) == [5, 0, 1]
    big = parse_seeds("0-99999")  # ranges are kept as ranges: no list of 100,000 ints
    assert len(big) == 100_000 and big[0] == 0 and big[-1] == 99_999 and big[50_000:50_002] == [50_000, 50_001]
    assert parse_seeds(str(2**63 - 1)) == [2**63 - 1]
    for text, msg in [("a", "not a seed"), ("1,,2", "empty item between"), (",1", "leading comma"),
                      ("1,", "trailing comma"), ("", "no seeds"), ("-1", "not a seed"), ("3-1", "ends before"),
                      ("18446744073709551616", "too large"), ("0-100000", "limit of 100,000"),
                      ("0-3,2", "given twice"), ("1.5", "not a seed")]:
        with pytest.raises(SemsynthError, match=msg):
            parse_seeds(text)


def test_generate_streams_batches_and_names_every_seed(model_dir, labels_dir, tmp_path, monkeypatch):
    """Latents are drawn per batch: the generator never sees more than --batch-size images, and every seed of a
    long range is written with the image a seed alone gives."""
    from semsynth.inference import run_generate

    calls = []
    real_run = Synthesizer._run

    def spy(self, sem, z, batch_size):
        calls.append(sem.shape[0])
        return real_run(self, sem, z, batch_size)

    monkeypatch.setattr(Synthesizer, "_run", spy)
    label = labels_dir / "val_000000.png"
    written = run_generate(model_dir, label, tmp_path, seeds=parse_seeds("0-20"), batch_size=4, progress=False)
    assert len(written) == 21 and max(calls) <= 4 and sum(calls) == 21
    syn = Synthesizer.from_pretrained(model_dir)
    alone = syn.generate(syn.read_label(label)[None], seeds=[17])[0, 0]
    saved = torch.from_numpy(np.asarray(Image.open(tmp_path / "val_000000_seed17.png")).copy()).permute(2, 0, 1)
    expected = ((alone.clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)
    assert (saved.int() - expected.int()).abs().max() <= 1  # the same image, whatever batch it was drawn in


def test_generate_grid_is_bounded(model_dir, labels_dir, tmp_path, capsys):
    from semsynth.inference import run_generate

    run_generate(model_dir, labels_dir / "val_000000.png", tmp_path, seeds=parse_seeds("0-19"), grid=True,
                 progress=False)
    grid = np.asarray(Image.open(tmp_path / "grid.png"))
    assert grid.shape[1] == 2 + 17 * (64 + 2)  # layout + the first 16 outputs
    assert "first 1 layouts and 16 outputs" in capsys.readouterr().err


def test_truncated_weights_file_is_named(tmp_path, model_dir, labels_dir, capsys):
    import shutil

    broken = tmp_path / "broken"
    shutil.copytree(model_dir, broken)
    data = (broken / "model.safetensors").read_bytes()
    (broken / "model.safetensors").write_bytes(data[: len(data) // 2])
    assert main(["generate", "--model", str(broken), "--labels", str(labels_dir), "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert f"cannot read {broken / 'model.safetensors'}" in err and "Traceback" not in err
    (broken / "model.safetensors").unlink()
    assert main(["generate", "--model", str(broken), "--labels", str(labels_dir), "--out", str(tmp_path / "o")]) == 2
    assert "model.safetensors is missing" in capsys.readouterr().err


def test_from_pretrained_tunes_the_allocator_and_threads_like_the_cli(model_dir, monkeypatch):
    import semsynth.utils.runtime as runtime

    calls = []
    monkeypatch.setattr(runtime, "tune_malloc", lambda: calls.append(1) or True)
    before = torch.get_num_threads()
    try:
        Synthesizer.from_pretrained(model_dir, "cpu", threads=1)
        assert calls == [1] and torch.get_num_threads() == 1
        Synthesizer.from_pretrained(model_dir, "cpu", tune_allocator=False)
        assert calls == [1]
        for bad in (0, -2, 1.5, True):
            with pytest.raises(SemsynthError, match="positive number of CPU threads"):
                Synthesizer.from_pretrained(model_dir, "cpu", threads=bad)
    finally:
        torch.set_num_threads(before)


def test_the_synthesizer_prepares_its_model_on_the_cpu_only():
    """On a GPU the CPU-made rewrites of the preparation cost more than they save (1.9x and 4.4x slower on an H200:
    docs/benchmarks.md): there the model runs as loaded."""
    from pathlib import Path

    bundled = Path(__file__).resolve().parents[2] / "src/semsynth/assets/scgan-synthetic-faces"
    syn = Synthesizer.from_pretrained(bundled, "cpu")
    loaded = syn.G
    syn.device = torch.device("cuda")  # what from_pretrained(..., "cuda") records (nothing runs here)
    assert syn.prepare_for_inference() is False and syn.G is loaded
    syn.device = torch.device("cpu")
    assert syn.prepare_for_inference() is True and syn.G.prepared_for_inference
    assert syn.prepare_for_inference() is True  # once

"""benchmarks/bench_cuda.py: its arguments are checked before anything is built; without a GPU it measures nothing."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest
import torch

PATH = Path(__file__).resolve().parents[1] / "benchmarks" / "bench_cuda.py"


def _bench():
    spec = importlib.util.spec_from_file_location("bench_cuda", PATH)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


@pytest.mark.parametrize("argv,message", [
    (["--presets", "scgan-ade20k,nope"], "--presets: unknown preset(s) nope; known: ccfpse-ade20k"),
    (["--batch", "0"], "--batch 0: give a positive number"),
    (["--rounds", "-1"], "--rounds -1: give a positive number"),
    (["--official", "/nonexistent"], "--official /nonexistent: model/net/generator.py is missing"),
])
def test_bad_arguments_exit_2_with_the_reason(argv, message, capsys):
    with pytest.raises(SystemExit) as e:
        _bench().main(argv)
    assert e.value.code == 2 and message in capsys.readouterr().err


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a GPU: the benchmark would run")
def test_without_a_gpu_it_says_so_and_measures_nothing(capsys, tmp_path):
    assert _bench().main(["--presets", "scgan-synthetic-faces", "--json", str(tmp_path / "r.json")]) == 0
    assert capsys.readouterr().out == "bench_cuda: no CUDA GPU here; nothing measured\n"
    assert not (tmp_path / "r.json").exists()

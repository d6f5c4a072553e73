"""``--allocator``: the command restarted with tcmalloc or jemalloc preloaded (semsynth.cli.use_allocator), the
library lookup and its errors (semsynth.utils.runtime)."""

import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from semsynth.cli import main
from semsynth.errors import ConfigError
from semsynth.utils import allocator, runtime
from tests.helpers import TINY_RAW


def _installed(name: str) -> bool:
    try:
        allocator.find_preload_allocator(name)
    except ConfigError:
        return False
    return True


@pytest.fixture
def no_libraries(tmp_path, monkeypatch):
    """A machine without tcmalloc or jemalloc: the lookup searches an empty folder only."""
    monkeypatch.setattr(allocator, "_LIBRARY_DIRS", (str(tmp_path),))
    monkeypatch.delenv("LD_LIBRARY_PATH", raising=False)


def test_lookup_names_the_package_to_install(no_libraries):
    with pytest.raises(ConfigError, match=r"libtcmalloc_minimal\.so\.4.*apt-get install libtcmalloc-minimal4"):
        allocator.find_preload_allocator("tcmalloc")
    with pytest.raises(ConfigError, match=r"apt-get install libjemalloc2"):
        allocator.find_preload_allocator("jemalloc")
    with pytest.raises(ConfigError, match=r"'mimalloc'.*\['jemalloc', 'tcmalloc'\]"):
        allocator.find_preload_allocator("mimalloc")


def test_lookup_finds_the_library_on_ld_library_path(no_libraries, tmp_path, monkeypatch):
    lib = tmp_path / "mylibs" / "libjemalloc.so.2"
    lib.parent.mkdir()
    lib.write_bytes(b"")
    monkeypatch.setenv("LD_LIBRARY_PATH", str(lib.parent))
    assert allocator.find_preload_allocator("jemalloc") == str(lib)


def test_this_process_runs_on_glibc():
    if os.environ.get("LD_PRELOAD"):
        pytest.skip(f"this test process runs with LD_PRELOAD={os.environ['LD_PRELOAD']}")
    assert allocator.active_allocator() == "glibc"


def test_missing_library_exits_2(no_libraries, capsys):
    assert main(["train", "--config", "scgan-synthetic-faces", "--dry-run", "--allocator", "tcmalloc"]) == 2
    err = capsys.readouterr().err
    assert "semsynth train: error: allocator 'tcmalloc'" in err and "apt-get install libtcmalloc-minimal4" in err
    assert "Traceback" not in err


def test_from_python_it_says_how_to_start_python(tmp_path, monkeypatch, capsys):
    (tmp_path / "libtcmalloc_minimal.so.4").write_bytes(b"")  # found, but this process cannot be restarted
    monkeypatch.setattr(allocator, "_LIBRARY_DIRS", (str(tmp_path),))
    monkeypatch.delenv("LD_LIBRARY_PATH", raising=False)
    assert main(["train", "--config", "scgan-synthetic-faces", "--dry-run", "--allocator", "tcmalloc"]) == 2
    err = capsys.readouterr().err
    assert f"start Python with LD_PRELOAD={tmp_path / 'libtcmalloc_minimal.so.4'}" in err


def test_a_restart_the_loader_ignored_is_an_error_not_a_loop(monkeypatch, capsys):
    if os.environ.get("LD_PRELOAD"):
        pytest.skip(f"this test process runs with LD_PRELOAD={os.environ['LD_PRELOAD']}")
    monkeypatch.setenv("SEMSYNTH_PRELOADED", "/usr/lib/x86_64-linux-gnu/libjemalloc.so.2")
    monkeypatch.setenv("LD_PRELOAD", "/usr/lib/x86_64-linux-gnu/libjemalloc.so.2")
    assert main(["train", "--config", "scgan-synthetic-faces", "--dry-run", "--allocator", "jemalloc"]) == 2
    assert "but jemalloc is not loaded" in capsys.readouterr().err
    assert "SEMSYNTH_PRELOADED" not in os.environ and "LD_PRELOAD" not in os.environ  # children start clean


def test_after_the_restart_the_library_leaves_the_environment(monkeypatch):
    """The processes a command starts choose their allocator themselves: the restart's library is taken out of
    LD_PRELOAD again, what the user had there stays."""
    from semsynth.cli import use_allocator

    monkeypatch.setenv("SEMSYNTH_PRELOADED", "/x/libtcmalloc_minimal.so.4")
    monkeypatch.setenv("LD_PRELOAD", "/x/libtcmalloc_minimal.so.4 /users/own.so")
    use_allocator("glibc", argv=["train"])
    assert os.environ["LD_PRELOAD"] == "/users/own.so" and "SEMSYNTH_PRELOADED" not in os.environ


def test_auto_takes_tcmalloc_from_a_command_line_only(tmp_path, monkeypatch):
    from semsynth.cli import allocator_to_preload

    if os.environ.get("LD_PRELOAD"):
        pytest.skip(f"this test process runs with LD_PRELOAD={os.environ['LD_PRELOAD']}")
    monkeypatch.setattr(allocator, "_LIBRARY_DIRS", (str(tmp_path),))
    monkeypatch.delenv("LD_LIBRARY_PATH", raising=False)
    assert allocator_to_preload("auto", from_command_line=True) is None  # not installed: glibc, no error
    (tmp_path / "libtcmalloc_minimal.so.4").write_bytes(b"")
    assert allocator_to_preload("auto", from_command_line=True) == str(tmp_path / "libtcmalloc_minimal.so.4")
    assert allocator_to_preload("auto", from_command_line=False) is None  # main([...]) from Python
    assert allocator_to_preload("auto", from_command_line=True, restarted=True) is None  # ignored once: no loop
    assert allocator_to_preload("glibc", from_command_line=True) is None


def test_in_process_calls_keep_working_with_the_default(capsys):
    assert main(["train", "--config", "scgan-synthetic-faces", "--dry-run"]) == 0
    assert main(["train", "--config", "scgan-synthetic-faces", "--dry-run", "--allocator", "glibc"]) == 0


@pytest.mark.parametrize("name,runs_on", [("jemalloc", "jemalloc"), (None, "tcmalloc"), ("glibc", "glibc")])
def test_training_restarts_on_the_allocator(name, runs_on, tmp_path):
    """A real command line: the training run's log names the malloc it ran on, and its model is written; without
    --allocator (auto) that is tcmalloc where it is installed."""
    if runs_on != "glibc" and not _installed(runs_on):
        pytest.skip(f"{runs_on} is not installed here (apt-get install "
                    f"{'libtcmalloc-minimal4' if runs_on == 'tcmalloc' else 'libjemalloc2'}; .ci/run installs both)")
    cfg = tmp_path / "tiny.yaml"
    cfg.write_text(yaml.safe_dump({**TINY_RAW, "train": {**TINY_RAW["train"], "images": 4, "checkpoint_every": 4,
                                                          "log_every": 4, "sample_every": 4}}))
    env = {k: v for k, v in os.environ.items() if k not in ("LD_PRELOAD", "SEMSYNTH_PRELOADED")}
    r = subprocess.run([sys.executable, "-m", "semsynth", "train", "--config", str(cfg), "--outdir",
                        str(tmp_path / "runs"), "--threads", "1", *(["--allocator", name] if name else [])],
                       capture_output=True, text=True, timeout=300, env=env)
    assert r.returncode == 0, r.stderr[-2000:]
    (run,) = (tmp_path / "runs").iterdir()
    log = (run / "log.txt").read_text()
    assert f"malloc {runs_on}" in log
    assert (run / "model" / "model.safetensors").is_file()


def test_the_console_script_restarts_as_itself(tmp_path):
    """``semsynth train ...`` (the installed script, not ``python -m``) restarts through the same script."""
    script = Path(sys.executable).parent / "semsynth"
    if not script.is_file():
        pytest.skip(f"no console script beside {sys.executable} (semsynth not installed with pip)")
    if not _installed("tcmalloc"):
        pytest.skip("tcmalloc is not installed here (apt-get install libtcmalloc-minimal4)")
    cfg = tmp_path / "tiny.yaml"
    cfg.write_text(yaml.safe_dump({**TINY_RAW, "train": {**TINY_RAW["train"], "images": 4, "checkpoint_every": 4,
                                                          "log_every": 4, "sample_every": 4}}))
    env = {k: v for k, v in os.environ.items() if k not in ("LD_PRELOAD", "SEMSYNTH_PRELOADED")}
    r = subprocess.run([str(script), "train", "--config", str(cfg), "--outdir", str(tmp_path / "runs"), "--threads",
                        "1"], capture_output=True, text=True, timeout=300, env=env)
    assert r.returncode == 0, r.stderr[-2000:]
    (run,) = (tmp_path / "runs").iterdir()
    assert "malloc tcmalloc" in (run / "log.txt").read_text()


def test_glibc_tuning_is_skipped_under_another_allocator():
    if not _installed("tcmalloc"):
        pytest.skip("tcmalloc is not installed here (apt-get install libtcmalloc-minimal4)")
    code = ("from semsynth.utils.allocator import active_allocator; from semsynth.utils.runtime import tune_malloc; "
            "print(active_allocator(), tune_malloc())")
    env = {**os.environ, "LD_PRELOAD": allocator.find_preload_allocator("tcmalloc")}
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, env=env)
    assert r.stdout.split() == ["tcmalloc", "False"], r.stderr
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                       env={k: v for k, v in os.environ.items() if k != "LD_PRELOAD"})
    assert r.stdout.split() == ["glibc", "True"], r.stderr


def test_unknown_allocator_is_an_argparse_error():
    r = subprocess.run([sys.executable, "-m", "semsynth", "generate", "--model", "m", "--labels", "l", "--out", "o",
                        "--allocator", "mimalloc"], capture_output=True, text=True, timeout=120)
    assert r.returncode == 2 and "invalid choice: 'mimalloc'" in r.stderr
    assert Path("o").exists() is False


@pytest.mark.parametrize("words,expected", [
    (["train", "--config", "x"], ("auto", "train")),
    (["generate", "--allocator", "glibc", "--model", "m"], ("glibc", "generate")),
    (["serve", "--allocator=jemalloc"], ("jemalloc", "serve")),
    (["evaluate", "--alloc", "tcmalloc"], ("tcmalloc", "evaluate")),  # argparse accepts the prefix too
    (["demo", "--allocator", "mimalloc"], (None, "demo")),  # not a choice: argparse reports it
    (["models", "--json"], (None, "models")),  # no such option
    (["--help"], (None, None)),
])
def test_the_allocator_is_read_before_argparse(words, expected):
    from semsynth.cli import allocator_in_command_line

    assert allocator_in_command_line(words) == expected


def test_the_command_line_module_does_not_import_torch():
    """The restart comes before torch is imported (else every command would import it twice)."""
    code = ("import sys, semsynth.cli; semsynth.cli.allocator_to_preload('auto', True); "
            "print('torch' in sys.modules)")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert r.stdout.strip() == "False", r.stderr

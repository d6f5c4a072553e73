"""Every command in the README and docs/ is run by this test, at tiny size.

The fenced ``bash`` blocks of README.md and docs/*.md are read; each command is

* run in-process through ``semsynth.cli.main`` in a workspace of its own document (commands of one document run
  in order, so that ``semsynth train`` makes the run that the next ``semsynth generate`` reads), with the sizes
  shrunk (``TINY`` below: fewer images, samples, epochs);
* or, where it needs what a test cannot have (a dataset download, several GPUs, a benchmark's minutes), parsed by
  the CLI's own parser and, for ``train``, run with ``--dry-run``, with the reason recorded in ``NOT_RUN``;
* ``semsynth serve`` runs until stopped: in a document with ``curl`` examples of ``http://127.0.0.1:8000``, the first
  one is started in a subprocess on a free port and the examples are sent to it (``NOT_RUN["serve"]``).

A command that fits no rule fails the test, so a new example in the docs is run from its first day.
"""

from __future__ import annotations

import io
import os
import re
import shlex
import shutil
import subprocess
import sys
from contextlib import redirect_stderr, redirect_stdout
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from semsynth.cli import build_parser, main

REPO = Path(__file__).resolve().parents[1]
DOCS = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]
SHARED_COCO = REPO.parent / "shared" / "data" / "coco_stuff_sample"


def fenced_commands(path: Path) -> list[str]:
    """The commands of the ``bash``/``sh`` blocks of a Markdown file: continuation lines joined, comments and
    ``[optional]`` parts removed."""
    out = []
    for block in re.findall(r"```(?:bash|sh|console)\n(.*?)```", path.read_text(encoding="utf-8"), re.S):
        block = re.sub(r"\\\n\s*", " ", block)
        for line in block.splitlines():
            line = re.sub(r"\s+#.*$", "", line).strip()
            if not line or line.startswith("#"):
                continue
            line = re.sub(r"\s*\[[^\]]*\]", "", line)  # optional arguments shown as [--num 100]
            out.append(line)
    return out


# -- what cannot run here, and why ---------------------------------------------------------------------------

NEEDS_DATA = ("/data/", "datasets/ADE", "scgan-coco", "runs/00003-scgan-coco", "runs/00007-scgan-ade20k",
              "data/my_set", "backbone_weights=imagenet", "datasets/summer2winter")
NOT_RUN = {
    "make": "make targets: `make test` is what CI runs; `make demo` is `semsynth demo`, run by "
            "tests/evaluation/test_demo.py; the target must exist in the Makefile",
    "torchrun": "several processes: tests/training/test_distributed.py runs torchrun; here the command is parsed "
                "and its config resolved with --dry-run",
    "benchmark": "benchmarks take minutes; the script must exist and accept every option the docs use",
    "shell": "a shell command (download instructions), not semsynth",
    "data": "needs a dataset download (ADE20K, Cityscapes, COCO-Stuff, CelebAMask-HQ), a released checkpoint, or a "
            "run made from one; parsed, and train commands run with --dry-run",
    "serve": "a server runs until it is stopped: in a document with curl examples, the first `semsynth serve` is "
             "started in a subprocess with --port 0 (any free port), the curl examples are sent to it (the address "
             "rewritten), and it is stopped at the end; any other `semsynth serve` is parsed and its options and "
             "--model directories checked",
    "sweep": "a sweep trains grid x seeds runs (minutes to hours): run with --dry-run, which resolves every cell, builds "
             "its networks on the meta device and checks the evaluator; tests/test_sweep.py runs a real sweep at tiny "
             "size",
    "curl": "an HTTP request to the server of the document's `semsynth serve` (http://127.0.0.1:8000): run with "
            "curl against the started server; must exit 0, and a file written with -o must be a PNG",
    "gpu-check": "benchmarks/cuda_check.sh, the checks that need a CUDA GPU: without one it is run as written (OUT "
                 "in a temporary folder): its GPU tests skip, the benchmark says there is no GPU, and it must exit 0 "
                 "with its logs written; with a GPU (minutes of work) only the script's syntax is checked",
}
LOCAL_SERVER = ("http://127.0.0.1:8000", "http://localhost:8000")


def classify(cmd: str) -> str:
    words = shlex.split(cmd)
    script = [w for w in words if "=" not in w]  # VAR=value settings before the command
    if script[:1] == ["bash"] and len(script) > 1 and script[1].startswith("benchmarks/") and script[1].endswith(".sh"):
        return "gpu-check"
    if words[0] == "make":
        return "make"
    if words[0] == "torchrun":
        return "torchrun"
    if words[0] == "python" and words[1].startswith("benchmarks/"):
        return "benchmark"
    if words[0] == "curl" and any(s in cmd for s in LOCAL_SERVER):
        return "curl"
    if words[0] in ("curl", "mkdir", "cd", "pip", "wget"):
        return "shell"
    if words[0] != "semsynth":
        raise AssertionError(f"unclassified command in the docs: {cmd!r}; add a rule to tests/test_docs_examples.py")
    if words[1] == "serve":
        return "serve"
    if words[1] == "convert":
        return "data"  # a released checkpoint (a download); tests/convert/ run the command on official files
    if any(s in cmd for s in NEEDS_DATA) or " MODEL " in f" {cmd} " and ("--data-root /data" in cmd):
        return "data"
    if words[1] == "sweep":
        return "sweep"
    if words[1] == "train" and any(p in cmd for p in ("scgan-ade20k", "scgan-cityscapes", "scgan-celeba")):
        return "data"
    return "run"


def _run_gpu_check(words: list[str], tmp_path: Path) -> None:
    """``[VAR=value ...] bash benchmarks/SCRIPT.sh``: see NOT_RUN["gpu-check"]."""
    env_words = [w for w in words if "=" in w and not w.startswith("-")]
    script = REPO / [w for w in words if "=" not in w][1]
    assert script.is_file(), f"{script} is missing"
    subprocess.run(["bash", "-n", str(script)], check=True, timeout=60)
    text = script.read_text()
    for w in env_words:  # every setting the docs show is one the script reads
        assert f"${{{w.split('=')[0]}" in text, f"{script.name} does not read {w.split('=')[0]}"
    if torch.cuda.is_available():
        return
    out = tmp_path / "cuda-check"
    env = {**os.environ, **dict(w.split("=", 1) for w in env_words), "OUT": str(out), "PYTHON": sys.executable}
    r = subprocess.run(["bash", str(script)], capture_output=True, text=True, cwd=REPO, env=env, timeout=600)
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-2000:]
    # the benchmark says there is no GPU, or (OFFICIAL naming no checkout here) why its arguments are wrong
    assert "bench_cuda: no CUDA GPU here; nothing measured" in r.stdout or "(expected a checkout of" in r.stdout, \
        r.stdout[-2000:]
    assert (out / "pytest.log").is_file() and "skipped" in (out / "pytest.log").read_text()


# -- shrinking a command -------------------------------------------------------------------------------------


# narrower networks for the presets the docs train (SC-GAN's preset, and my_run.yaml: a copy of it)
_SCGAN_TINY = ["generator.srg_width=4", "generator.fc_width=4", "generator.svg_width=4", "discriminator.width=4",
               "encoder.width=4"]
TINY_WIDTHS = {"scgan-synthetic-faces": _SCGAN_TINY, "scgan-synthetic-landscapes": _SCGAN_TINY,
               "my_run": _SCGAN_TINY,
               "scgan-unpaired-synthetic": [w for w in _SCGAN_TINY if not w.startswith("encoder.")]}


def tiny(words: list[str]) -> list[str]:
    """The same command at a size that runs in seconds."""
    out = []
    for w in words:
        m = re.fullmatch(r"train\.images=(\d+)", w)
        if m:  # keep the order of the lengths (resumes extend runs), divided by 2500
            w = f"train.images={max(8, int(m.group(1)) // 2500 // 4 * 4)}"
        w = re.sub(r"^data\.num_samples=\d+$", "data.num_samples=16", w)
        out.append(w)
    sub = out[1] if len(out) > 1 else ""
    if sub == "train" and "--resume" not in out and "--dry-run" not in out:
        extra = ["train.batch_size=4", "data.num_samples=16", "train.log_every=8", "train.sample_every=1000",
                 "train.checkpoint_every=1000", "train.tensorboard=false"]
        config = out[out.index("--config") + 1] if "--config" in out else ""
        extra += TINY_WIDTHS.get(Path(config).stem, [])
        if not any(w.startswith("train.images=") for w in out):
            extra.append("train.images=8")
        for e in extra:
            out += ["--set", e]
    if sub == "segmenter" and out[2] == "train":
        out = _replace_option(out, "--epochs", "1")
        out = _replace_option(out, "--val-limit", "4")
        if not any(w.startswith("data.num_samples=") for w in out):
            out += ["--set", "data.num_samples=16"]
        out += ["--batch-size", "8"]
    if sub == "evaluate" or (sub == "translate" and "--evaluate" in out):
        out = _replace_option(out, "--num", "4")
    if sub == "analyze":
        out = _replace_option(out, "--num", "4")
        out = _replace_option(out, "--points", "60")
    if sub == "data" and out[2] == "make":
        out = _replace_option(out, "--num", "4")
    return out


def _replace_option(words: list[str], flag: str, value: str) -> list[str]:
    if flag in words:
        i = words.index(flag)
        return words[: i + 1] + [value] + words[i + 2 :]
    return words + [flag, value]


def run_main(argv: list[str]) -> tuple[int, str]:
    out, err = io.StringIO(), io.StringIO()
    with redirect_stdout(out), redirect_stderr(err):
        try:
            rc = main(argv)
        except SystemExit as e:
            rc = e.code
    return rc, out.getvalue() + err.getvalue()


def _producer(cmd: str) -> bool:
    """Commands that make what other examples read (a run, data, a segmenter): they run first."""
    words = shlex.split(cmd)
    return words[:2] == ["semsynth", "train"] and "--resume" not in words and "--dry-run" not in words \
        or words[:3] in (["semsynth", "data", "make"], ["semsynth", "segmenter", "train"])


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory) -> Path:
    """``runs/00000-scgan-synthetic-faces`` as the docs' first training example makes it, at tiny size."""
    root = tmp_path_factory.mktemp("docs-run")
    cwd = os.getcwd()
    os.chdir(root)
    try:
        rc, text = run_main(tiny(["semsynth", "train", "--config", "scgan-synthetic-faces"])[1:])
    finally:
        os.chdir(cwd)
    assert rc == 0, text[-2000:]
    return root / "runs" / "00000-scgan-synthetic-faces"


def _workspace(tmp: Path, cmds: list[str], run: Path) -> None:
    """What the examples refer to besides what the document's own examples make: layouts, a face image, a
    config file, the bundled assets, and a training run when the document trains none."""
    from semsynth.config import PRESET_DIR
    from semsynth.data.synthetic_faces import write_synthetic_faces

    if not any(_producer(c) and " train " in f" {c} " for c in cmds):
        shutil.copytree(run, tmp / "runs" / run.name)
    shutil.copy(PRESET_DIR / "scgan-synthetic-faces.yaml", tmp / "my_run.yaml")

    faces = write_synthetic_faces(tmp / "_faces", 2, size=64, seed=5, split="val", progress=False)
    shutil.copytree(faces / "labels", tmp / "layouts")
    shutil.copy(sorted((faces / "labels").iterdir())[0], tmp / "layout.png")
    Image.open(sorted((faces / "images").iterdir())[0]).convert("RGB").save(tmp / "face.jpg")
    mask = np.zeros((64, 64), np.uint8)  # a region to re-sample (docs/serve.md), at the layout's size
    mask[8:32, 16:48] = 255
    Image.fromarray(mask).save(tmp / "mask.png")
    (tmp / "request.json").write_text('{"label": [[0, 1, 1], [0, 1, 1]], "seed": 3}\n')  # as docs/serve.md shows
    if any("my_grid.yaml" in c for c in cmds):  # the grid file docs/sweep.md shows
        block = next(b for b in re.findall(r"```yaml\n(.*?)```", (REPO / "docs" / "sweep.md").read_text(), re.S)
                     if "axes:" in b)
        (tmp / "my_grid.yaml").write_text(block)
    if any("src/semsynth/assets" in c for c in cmds):
        # a copy, never a link: an example writes into it (`semsynth export --out src/semsynth/assets/...`)
        shutil.copytree(REPO / "src" / "semsynth" / "assets", tmp / "src" / "semsynth" / "assets")
    if SHARED_COCO.is_dir():
        (tmp / "datasets").mkdir()
        os.symlink(SHARED_COCO, tmp / "datasets" / "coco_stuff")


def _model_placeholder(words: list[str], tmp: Path) -> list[str]:
    """``MODEL`` in the docs stands for any exported model: the run of an earlier example, or the bundled one."""
    run = tmp / "runs" / "00000-scgan-synthetic-faces" / "model"
    model = run if run.is_dir() else REPO / "src" / "semsynth" / "assets" / "scgan-synthetic-faces"
    return [str(model) if w == "MODEL" else w for w in words]


@pytest.fixture
def bundled_assets_unchanged():
    """The examples run in copies: the package's own files are never written."""
    assets = REPO / "src" / "semsynth" / "assets"
    before = {p: p.stat().st_mtime_ns for p in assets.rglob("*") if p.is_file()}
    yield
    after = {p: p.stat().st_mtime_ns for p in assets.rglob("*") if p.is_file()}
    assert after == before, "an example wrote into src/semsynth/assets"


class DocServer:
    """The ``semsynth serve`` of a document's examples (its first one), and its ``curl`` examples."""

    def __init__(self) -> None:
        self.server = None

    def start(self, argv: list[str], cwd: Path) -> None:
        from tests.serve.live import start_server

        self.server = start_server(argv[1:], cwd / "serve.log", cwd=cwd)

    def curl(self, cmd: str, cwd: Path, doc: str) -> bool:
        """Run a curl example against the started server; False where curl is not installed."""
        if shutil.which("curl") is None:
            return False
        assert self.server is not None, f"{doc}: {cmd!r} needs a `semsynth serve` example before it"
        words = shlex.split(cmd)
        for local in LOCAL_SERVER:
            words = [w.replace(local, self.server.url) for w in words]
        r = subprocess.run(words, cwd=cwd, capture_output=True, timeout=120, check=False)
        assert r.returncode == 0, f"{doc}: {cmd!r} exited {r.returncode}: {r.stderr[-2000:]!r}"
        if "-o" in words:
            out = (cwd / words[words.index("-o") + 1]).read_bytes()
            assert out.startswith(b"\x89PNG\r\n\x1a\n"), f"{doc}: {cmd!r} wrote no PNG but {out[:300]!r}"
        else:
            import json

            json.loads(r.stdout)  # every other answer of the API is JSON
        return True


@pytest.fixture
def doc_server():
    holder = DocServer()
    yield holder
    if holder.server is not None:
        from tests.serve.live import stop_server

        stop_server(holder.server.proc)


ALL = [(doc, cmd) for doc in DOCS for cmd in fenced_commands(doc)]


def test_commands_are_in_bash_blocks():
    """A command in an unlabelled block would escape this test: commands go in ```bash, output in ```text."""
    from semsynth.cli import COMMANDS

    for doc in DOCS:
        for block in re.findall(r"```\n(.*?)```", doc.read_text(encoding="utf-8"), re.S):
            for line in block.splitlines():
                words = line.split()
                if len(words) > 2 and words[0] == "semsynth" and words[1] in COMMANDS and words[2].startswith("-") \
                        or (len(words) > 1 and words[0] == "python" and words[1].endswith(".py")):
                    raise AssertionError(f"{doc.name}: a command in an unlabelled block: {line!r}; use ```bash")


def python_blocks(path: Path) -> list[str]:
    return re.findall(r"```python\n(.*?)```", path.read_text(encoding="utf-8"), re.S)


# the README's example is run by tests/test_readme.py; sizes of the docs' snippets shrunk to seconds
PY_TINY = [(r'"num_samples": 4000', '"num_samples": 16'), (r"epochs=30", "epochs=1"),
           (r'"split": "train"}\)', '"split": "train", "crop_size": 64, "load_size": 64})'),
           (r'resolution=256\)', 'resolution=64)'), (r"\(1, 256, 256\)", "(1, 64, 64)")]


@pytest.mark.parametrize("doc", [d for d in DOCS if d.name != "README.md" and python_blocks(d)],
                         ids=lambda d: d.name)
def test_python_examples_of_the_docs_run(doc: Path, tmp_path, monkeypatch, tiny_run, bundled_assets_unchanged):
    _workspace(tmp_path, [], tiny_run)
    monkeypatch.chdir(tmp_path)
    for code in python_blocks(doc):
        if "datasets/coco_stuff" in code and not SHARED_COCO.is_dir():
            continue  # the COCO-Stuff sample lives in ../shared (absent beside this clone)
        for pattern, repl in PY_TINY:
            code = re.sub(pattern, repl, code)
        exec(compile(code, f"{doc.name} example", "exec"), {"__name__": "docs_example"})


def test_the_docs_have_examples_and_each_is_classified():
    assert len(ALL) > 40
    kinds = {cmd: classify(cmd) for _, cmd in ALL}
    assert sum(k == "run" for k in kinds.values()) >= 25, kinds


@pytest.mark.parametrize("doc", DOCS, ids=[d.name for d in DOCS])
def test_every_example_of_a_document(doc: Path, tmp_path, monkeypatch, tiny_run, bundled_assets_unchanged,
                                     doc_server):
    cmds = fenced_commands(doc)
    if not cmds:
        pytest.skip(f"{doc.name} has no commands")
    _workspace(tmp_path, cmds, tiny_run)
    monkeypatch.chdir(tmp_path)
    import semsynth.demo

    monkeypatch.setitem(semsynth.demo.SIZES, "eval_layouts", 8)
    monkeypatch.setitem(semsynth.demo.SIZES, "vector_layouts", 4)
    monkeypatch.setitem(semsynth.demo.SIZES, "tsne_points", 60)
    cmds = sorted(cmds, key=lambda c: not _producer(c))  # stable: producers first, then in the docs' order
    parser = build_parser()
    ran = 0
    for cmd in cmds:
        kind = classify(cmd)
        words = shlex.split(cmd)
        if kind == "make":
            target = words[1]
            assert re.search(rf"^{re.escape(target)}:", (REPO / "Makefile").read_text(), re.M), cmd
            continue
        if kind == "shell":
            continue
        if kind == "curl":
            doc_server.curl(cmd, tmp_path, doc.name)
            continue
        if kind == "gpu-check":
            _run_gpu_check(words, tmp_path)
            continue
        if kind == "benchmark":
            script = REPO / words[1]
            assert script.is_file(), cmd
            helptext = subprocess.run([sys.executable, str(script), "--help"], capture_output=True, text=True,
                                      timeout=120, cwd=REPO).stdout
            for flag in [w for w in words[2:] if w.startswith("--")]:
                assert flag in helptext, f"{cmd}: {flag} is not an option of {words[1]}"
            continue
        if kind == "torchrun":
            words = ["semsynth", *words[words.index("semsynth") + 1 :]]
        elided = "..." in words  # an example that shows only the start of a command
        words = [w for w in words if w != "..."]
        argv = _model_placeholder(words[1:], tmp_path)
        try:
            parsed = parser.parse_args(argv)
        except SystemExit as e:
            raise AssertionError(f"{doc.name}: the CLI does not accept {cmd!r}") from e
        if kind == "serve":
            if doc_server.server is None and any(classify(c) == "curl" for c in cmds):
                doc_server.start(argv, tmp_path)
            else:
                from semsynth.serve.engine import model_specs
                from semsynth.serve.server import check_options

                check_options(parsed.port, parsed.workers, parsed.queue, parsed.timeout, parsed.threads)
                model_specs(parsed.model)
            continue
        if kind == "sweep":
            rc, text = run_main(argv if "--dry-run" in argv else [*argv, "--dry-run"])
            assert rc == 0, f"{doc.name}: {cmd!r} --dry-run failed:\n{text[-2000:]}"
            continue
        if kind in ("torchrun", "data") or elided:
            if argv[0] == "train" and "--resume" not in argv and not elided:
                rc, text = run_main([*argv, "--dry-run"] if "--dry-run" not in argv else argv)
                assert rc == 0, f"{doc.name}: {cmd!r} --dry-run failed:\n{text[-2000:]}"
            continue
        if argv[:2] == ["data", "check"] and not SHARED_COCO.is_dir():
            continue  # the COCO-Stuff sample lives in ../shared (absent beside this clone)
        rc, text = run_main(tiny(["semsynth", *argv])[1:])
        assert rc == 0, f"{doc.name}: {cmd!r} (run as {tiny(['semsynth', *argv])[1:]}) exited {rc}:\n{text[-3000:]}"
        ran += 1
    runnable = [c for c in cmds if classify(c) == "run"]
    assert ran >= len(runnable) - sum("data check" in c for c in runnable), f"not every example of {doc.name} ran"

"""Portable exports (``semsynth export --format onnx|torchscript``, ``semsynth.portable``).

Every registered generator, built tiny with random weights, is exported to ONNX and TorchScript; onnxruntime (CPU)
and ``torch.jit.load`` must reproduce the eager PyTorch output within 1e-4 on random label maps (a few seeds, two
batch sizes, and a second size where height/width are dynamic). The bundled SC-GAN is run from its exported files
in a Python process that cannot import semsynth, on a label PNG.
"""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx
import onnxruntime
import pytest
import torch
from PIL import Image

from semsynth.cli import main
from semsynth.data import DatasetInfo
from semsynth.layers import instance_edges, one_hot_label
from semsynth.layers.routing import channel_pool
from semsynth.layers.scc import SpatiallyConditionalConv2d, _MixCandidates, mix_candidates_plain
from semsynth.models import GENERATORS, build_generator
from semsynth.portable import (
    PortableGenerator,
    export_portable,
    instance_edges_graph,
    one_hot_graph,
    prepare_generator,
    run_file,
)
from semsynth.training.checkpoint import export_model

# tracing turns the models' Python shape checks into TracerWarnings (expected: they are not part of the graph)
# (and TorchScript's own deprecation notices)
pytestmark = [pytest.mark.filterwarnings("ignore::torch.jit.TracerWarning"),
              pytest.mark.filterwarnings("ignore:`torch.jit.*` is deprecated:FutureWarning")]

REPO = Path(__file__).resolve().parents[1]
BUNDLED = REPO / "src" / "semsynth" / "assets" / "scgan-synthetic-faces"
TOL = 1e-4

# Tiny options of every registered generator: a list of variants (options, use_instance), the first the plainest.
# A new generator adds its row here; what is dynamic (height/width) is what the export probes, listed in
# DYNAMIC_SIZE for the variants below so that a change is noticed (docs/export.md lists it per generator).
TINY: dict[str, list[tuple[dict, bool]]] = {
    "scgan": [
        ({"srg_width": 2, "fc_width": 2, "svg_width": 4, "conv_candidates": 2, "norm_candidates": 3,
          "spade_hidden": 4}, False),
        ({"srg_width": 2, "fc_width": 2, "svg_width": 4, "conv_candidates": 3, "norm_candidates": 3,
          "spade_hidden": 4, "input_mode": "noise", "z_dim": 8, "param_free_norm": "instance"}, True),
    ],
    "spade": [
        ({"ngf": 2, "spade_hidden": 4}, False),
        ({"ngf": 2, "spade_hidden": 4, "use_vae": True, "z_dim": 8, "param_free_norm": "instance"}, True),
    ],
    "pix2pixhd": [
        ({"ngf": 2, "n_downsample": 2, "n_blocks": 1}, False),
        ({"ngf": 2, "n_downsample": 2, "n_blocks": 1, "n_local_enhancers": 1, "n_blocks_local": 1}, True),
    ],
    "ccfpse": [
        ({"ngf": 2, "hidden": 4, "spade_hidden": 4, "use_vae": False}, False),
        ({"ngf": 2, "hidden": 4, "spade_hidden": 4, "z_dim": 8}, True),
    ],
    "oasis": [
        ({"channels": 1, "num_res_blocks": 4, "spade_hidden": 4, "noise_3d": False}, False),
        ({"channels": 1, "num_res_blocks": 4, "spade_hidden": 4, "z_dim": 4, "param_free_norm": "instance"}, True),
    ],
    "crn": [
        ({"widths": [6, 6, 4, 4, 4]}, False),
        ({"widths": [6, 6, 4, 4, 4], "num_outputs": 2}, True),
    ],
    "sims": [],  # not exportable: NOT_PORTABLE
    "scgan-unpaired": [],  # not exportable (two image inputs): NOT_PORTABLE
}
# Generators that the export refuses, with their tiny options and a phrase of the reason.
NOT_PORTABLE = {
    "sims": ({"encoder_widths": [4, 4, 4, 4], "encoder_convs": [1, 1, 1, 1], "decoder_widths": [4, 4, 4, 4],
              "final_width": 4}, "sims_bank.safetensors"),
    "scgan-unpaired": ({"num_classes": 3, "srg_width": 2, "fc_width": 2, "svg_width": 4, "conv_candidates": 2,
                        "norm_candidates": 2, "spade_hidden": 4}, "reference image"),
}
# (generator, variant index) -> whether height and width are dynamic in the exported graph
DYNAMIC_SIZE = {("scgan", 0): True, ("scgan", 1): False, ("spade", 0): True, ("spade", 1): False,
                ("pix2pixhd", 0): True, ("pix2pixhd", 1): True, ("ccfpse", 0): True, ("ccfpse", 1): False,
                ("oasis", 0): True, ("oasis", 1): True, ("crn", 0): False, ("crn", 1): False}
NUM_CLASSES = 6
RESOLUTION = 64


@pytest.fixture(autouse=True)
def _one_thread():
    """Tracing and tiny convolutions: one thread is several times faster on a shared 2-core machine."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def tiny_row(name: str) -> list[tuple[dict, bool]]:
    if name not in TINY:
        pytest.fail(f"generator {name!r} is registered but has no row in TINY of tests/test_portable.py: add its "
                    f"tiny options (widths of 2-8 channels, and one variant with use_instance=True where the model "
                    f"takes an instance map) so that its ONNX/TorchScript export is tested")
    return TINY[name]


def test_every_registered_generator_has_a_tiny_row():
    missing = sorted(set(GENERATORS.names()) - set(TINY))
    assert not missing, (f"generators without a row in TINY of tests/test_portable.py: {missing}; add their tiny "
                         f"options so that their portable export is tested")


def randomise(G: torch.nn.Module, seed: int) -> torch.nn.Module:
    """Random, non-default weights and batch-norm statistics (outputs of order 1), spectral-norm vectors
    converged to the new weights by training-mode forwards with batch norm kept in eval."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in G.parameters():
            fan_in = p[0].numel() if p.dim() > 1 else 1
            scale = 1.5 / math.sqrt(fan_in) if p.dim() > 1 else 0.2
            p.copy_(torch.randn(p.shape, generator=g) * scale)
        for name, b in G.named_buffers():
            if name.endswith("running_mean"):
                b.copy_(torch.randn(b.shape, generator=g) * 0.2)
            elif name.endswith("running_var"):
                b.copy_(torch.rand(b.shape, generator=g) + 0.5)
        G.train()
        for m in G.modules():
            if isinstance(m, torch.nn.modules.batchnorm._BatchNorm):
                m.eval()
        c = G.config["num_classes"] + int(G.config.get("use_instance", False))
        z = torch.randn(1, G.latent_dim) if getattr(G, "latent_dim", 0) else None
        for _ in range(4):
            G(torch.rand(1, c, RESOLUTION, RESOLUTION), z)
    return G.eval()


def tiny_model_dir(tmp: Path, name: str, variant: int, seed: int = 0) -> tuple[Path, torch.nn.Module]:
    options, use_instance = tiny_row(name)[variant]
    G = build_generator({"name": name, **options}, num_classes=NUM_CLASSES, resolution=RESOLUTION,
                        use_instance=use_instance)
    randomise(G, seed)
    info = DatasetInfo("portable-test", NUM_CLASSES, [f"class{i}" for i in range(NUM_CLASSES)],
                       has_instance=use_instance, resolution=(RESOLUTION, RESOLUTION))
    d = export_model(tmp / f"{name}-{variant}", G, info, extra={"label_values": {str(10 * i): i
                                                                                for i in range(NUM_CLASSES)}})
    return d, G


def random_inputs(model: PortableGenerator, batch: int, size: tuple[int, int], seed: int):
    g = torch.Generator().manual_seed(seed)
    out = []
    for name in model.input_names:
        if name == "label":
            out.append(torch.randint(0, NUM_CLASSES, (batch, *size), generator=g))
        elif name == "instance":
            out.append(torch.randint(0, 3, (batch, *size), generator=g))
        elif name == "semantic":
            sem = one_hot_label(torch.randint(0, NUM_CLASSES, (batch, *size), generator=g), NUM_CLASSES)
            if model.use_instance:
                sem = torch.cat([sem, instance_edges(torch.randint(0, 3, (batch, *size), generator=g))], 1)
            out.append(sem)
        else:
            out.append(torch.randn(batch, model.latent_dim, generator=g))
    return out


def eager(G, model: PortableGenerator, inputs) -> torch.Tensor:
    x = dict(zip(model.input_names, inputs))
    if "semantic" in x:
        sem = x["semantic"]
    else:
        sem = one_hot_label(x["label"], NUM_CLASSES)
        if model.use_instance:
            sem = torch.cat([sem, instance_edges(x["instance"])], 1)
    with torch.no_grad():
        return G(sem, x.get("z"))


VARIANTS = [(name, i) for name in GENERATORS.names() for i in range(len(TINY.get(name, [None])))]


@pytest.mark.parametrize("name", sorted(NOT_PORTABLE))
def test_generators_that_cannot_be_portable_are_refused_with_the_reason(name, tmp_path):
    from semsynth.portable import ExportError

    if name not in GENERATORS.names():
        pytest.skip(f"{name} is not registered")
    options, phrase = NOT_PORTABLE[name]
    G = build_generator({"name": name, **options}, num_classes=NUM_CLASSES, resolution=RESOLUTION)
    with pytest.raises(ExportError, match="cannot be exported as ONNX or TorchScript") as e:
        prepare_generator(G)
    assert phrase in str(e.value) and "--format safetensors" in str(e.value)


@pytest.mark.parametrize("name,variant", VARIANTS, ids=[f"{n}-{i}" for n, i in VARIANTS])
def test_onnx_and_torchscript_reproduce_the_eager_generator(name, variant, tmp_path):
    d, G = tiny_model_dir(tmp_path, name, variant)
    res = export_portable(d, ["onnx", "torchscript"])
    desc = json.loads((d / "portable.json").read_text())
    assert desc["files"] == {"onnx": "generator.onnx", "torchscript": "generator.pt"}
    dynamic = desc["dynamic"]["height_width"]
    assert dynamic == DYNAMIC_SIZE.get((name, variant), dynamic), f"{name} variant {variant}: dynamic size {dynamic}"
    model = PortableGenerator(G, NUM_CLASSES, G.config.get("use_instance", False))
    assert [i["name"] for i in desc["inputs"]] == model.input_names
    assert ("z" in model.input_names) == (G.latent_dim > 0)
    assert desc["latent_dim"] == G.latent_dim
    sizes = [(RESOLUTION, RESOLUTION)]
    if dynamic:
        m = desc["dynamic"]["size_multiple"]
        sizes.append((m, 3 * m))
    cases = [(1, sizes[0], 0), (3, sizes[0], 1)] + [(2, size, 2) for size in sizes[1:]]
    for batch, size, seed in cases:
        inputs = random_inputs(model, batch, size, seed)
        ref = eager(G, model, inputs)
        assert (ref.abs() < 0.99).float().mean() > 0.2, "weights too large: the output saturates"
        assert ref.std() > 0.05, "weights too small: the comparison would be trivial"
        for fmt in ("onnx", "torchscript"):
            assert res.checks[fmt]["max_abs_diff"] <= TOL
            out = run_file(fmt, d / FILES_OF[fmt], model.input_names, inputs)
            assert out.shape == (batch, 3, *size)
            diff = (out - ref).abs().max().item()
            assert diff <= TOL, f"{name} {fmt} batch {batch} at {size}: max |diff| {diff:.3g}"


FILES_OF = {"onnx": "generator.onnx", "torchscript": "generator.pt"}


def test_onehot_input_and_instance_map(tmp_path):
    """--input onehot takes the float map itself; the instance model's graph computes the edges itself."""
    d, G = tiny_model_dir(tmp_path, "scgan", 1)
    export_portable(d, ["onnx"], input="onehot")
    desc = json.loads((d / "portable.json").read_text())
    assert [(i["name"], i["dtype"], i["shape"]) for i in desc["inputs"]] == [
        ("semantic", "float32", ["batch", NUM_CLASSES + 1, RESOLUTION, RESOLUTION]), ("z", "float32", ["batch", 8])]
    model = PortableGenerator(G, NUM_CLASSES, True, input="onehot")
    for batch in (1, 2):
        inputs = random_inputs(model, batch, (RESOLUTION, RESOLUTION), batch)
        out = run_file("onnx", d / "generator.onnx", model.input_names, inputs)
        assert (out - eager(G, model, inputs)).abs().max().item() <= TOL
    # the label-input graph of the same model: the instance map changes the output only through its edges
    export_portable(d, ["onnx"])
    model = PortableGenerator(G, NUM_CLASSES, True)
    label, inst, z = random_inputs(model, 2, (RESOLUTION, RESOLUTION), 5)
    a = run_file("onnx", d / "generator.onnx", model.input_names, [label, inst, z])
    b = run_file("onnx", d / "generator.onnx", model.input_names, [label, inst + 7, z])  # same edges
    c = run_file("onnx", d / "generator.onnx", model.input_names, [label, torch.zeros_like(inst), z])
    assert torch.equal(a, b)
    assert (a - c).abs().max() > 1e-3


# -- the export-friendly eval paths of the layers -------------------------------------------------------------


def test_scc_mix_export_path_is_numerically_the_same():
    g = torch.Generator().manual_seed(0)
    stacked, coeff = torch.randn(2, 3, 5, 8, 8, generator=g), torch.rand(2, 3, 8, 8, generator=g)
    fast = _MixCandidates.apply(stacked, coeff)
    plain = mix_candidates_plain(stacked, coeff)
    assert (fast - plain).abs().max().item() <= 1e-6
    reference = (stacked * coeff.unsqueeze(2)).sum(1)
    assert (plain - reference).abs().max().item() <= 1e-5
    # the whole layer: traced (export path, spectral norm folded) against eager with the custom function
    layer = SpatiallyConditionalConv2d(4, 5, 3, spectral=True).eval()
    x, routing = torch.randn(2, 4, 8, 8, generator=g), torch.rand(2, 3, 8, 8, generator=g)
    with torch.no_grad():
        before = layer(x, routing)
        folded = SpatiallyConditionalConv2d(4, 5, 3, spectral=True).eval()
        folded.load_state_dict(layer.state_dict())
        folded.fold_spectral_norm_()
        assert folded.sn is None and set(folded.state_dict()) == {"weight"}
        traced = torch.jit.trace(folded, (x, routing), check_trace=False)
        graph = str(traced.graph)
    assert "MixCandidates" not in graph and "PythonOp" not in graph
    with torch.no_grad():
        assert (traced(x, routing) - before).abs().max().item() <= 1e-5
        assert (folded(x, routing) - before).abs().max().item() <= 1e-5
    assert set(layer.state_dict()) == {"weight", "sn.u", "sn.v"}, "folding a copy must not touch the original"


@pytest.mark.parametrize("channels,bins", [(8, 4), (6, 4), (5, 3), (4, 4)])
def test_channel_pool_export_path_is_numerically_the_same(channels, bins):
    x = torch.randn(2, channels, 6, 10, generator=torch.Generator().manual_seed(channels))
    eager_pool = channel_pool(x, bins)
    traced = torch.jit.trace(lambda f: channel_pool(f, bins), (x,), check_trace=False)
    assert "adaptive" not in str(traced.graph)
    y = torch.randn(3, channels, 4, 12)
    assert (traced(x) - eager_pool).abs().max().item() <= 1e-6
    assert (traced(y) - channel_pool(y, bins)).abs().max().item() <= 1e-6  # other batch and size


def test_graph_encoding_equals_semsynths():
    g = torch.Generator().manual_seed(0)
    label = torch.randint(0, 7, (3, 9, 11), generator=g)
    inst = torch.randint(0, 3, (3, 9, 11), generator=g)
    ids = torch.arange(7).view(1, 7, 1, 1)
    assert torch.equal(one_hot_graph(label, ids), one_hot_label(label, 7))
    assert torch.equal(instance_edges_graph(inst), instance_edges(inst))
    assert torch.equal(instance_edges_graph(torch.zeros(1, 4, 4, dtype=torch.long)), torch.zeros(1, 1, 4, 4))


def test_prepare_generator_folds_spectral_and_batch_norm_and_leaves_g_alone(tmp_path):
    d, G = tiny_model_dir(tmp_path, "scgan", 0)
    keys = set(G.state_dict())
    sem = one_hot_label(torch.randint(0, NUM_CLASSES, (2, 64, 64)), NUM_CLASSES)
    with torch.no_grad():
        before = G(sem)
    P = prepare_generator(G)
    names = [type(m).__name__ for m in P.modules()]
    assert "StackedSpectralNorm" not in names and "SpectralNorm" not in names and "BatchNorm2d" not in names
    assert not any("parametrizations" in k or k.endswith(("_u", "_v", "sn.u", "sn.v")) for k in P.state_dict())
    assert any("parametrizations" in k for k in keys) and any(k.endswith("sn.u") for k in keys)
    assert set(G.state_dict()) == keys
    with torch.no_grad():
        assert torch.equal(G(sem), before), "preparing a copy changed G"
        assert (P(sem) - before).abs().max().item() <= 1e-5
    export_portable(d, ["onnx"])
    proto = onnx.load(str(d / "generator.onnx"))
    ops = {n.op_type for n in proto.graph.node}
    assert "BatchNormalization" not in ops and "ReduceL2" not in ops and "LpNormalization" not in ops
    assert not [i.name for i in proto.graph.initializer if "parametrizations" in i.name or ".sn." in i.name]
    meta = {p.key: p.value for p in proto.metadata_props}
    assert json.loads(meta["semsynth.portable"])["num_classes"] == NUM_CLASSES


def test_fold_spectral_norm_divides_in_place_with_the_eval_values():
    """No second copy of any weight, even for a moment (prepared inference's peak memory), and bit for bit the
    W / sigma an eval forward computes."""
    from torch import nn

    from semsynth.layers import SpatiallyConditionalConv2d, spectral_norm
    from semsynth.portable import fold_spectral_norm

    torch.manual_seed(0)
    net = nn.ModuleDict({"conv": spectral_norm(nn.Conv2d(3, 4, 3, padding=1)),
                         "scc": SpatiallyConditionalConv2d(3, 4, 2, 3, spectral=True)}).eval()
    with torch.no_grad():
        expected = {"conv": net["conv"].weight.clone(), "scc": net["scc"].candidate_weights().clone()}
    storages = {"conv": net["conv"].parametrizations.weight.original.data_ptr(),
                "scc": net["scc"].weight.data_ptr()}
    assert fold_spectral_norm(net) == 2
    for k in ("conv", "scc"):
        assert net[k].weight.data_ptr() == storages[k], k  # the stored weight itself, divided
        assert torch.equal(net[k].weight, expected[k]), k


# -- the bundled SC-GAN, run without semsynth ---------------------------------------------------------------

NO_SEMSYNTH = r"""
import json, sys
sys.path[:0] = PATHS
try:
    import semsynth
except ImportError:
    pass
else:
    raise SystemExit("semsynth is importable: the test would prove nothing")
import numpy as np
import onnxruntime as ort
from PIL import Image

folder = sys.argv[1]
desc = json.load(open(folder + "/portable.json"))
raw = np.asarray(Image.open(sys.argv[2]))
table = desc["label_values"]
if table:
    lut = np.full(max(int(k) for k in table) + 1, -1, np.int64)
    for k, v in table.items():
        lut[int(k)] = v
    label = lut[raw]
else:
    label = raw.astype(np.int64)
assert label.min() >= 0, "a raw value the model does not know"
z = np.load(sys.argv[3])
feed = {"label": np.stack([label, label]), "z": z}
options = ort.SessionOptions()
options.intra_op_num_threads = 1
session = ort.InferenceSession(folder + "/" + desc["files"]["onnx"], options, providers=["CPUExecutionProvider"])
assert [i.name for i in session.get_inputs()] == [i["name"] for i in desc["inputs"]] == ["label", "z"]
image = session.run(["image"], feed)[0]
np.save(sys.argv[4] + "/onnx.npy", image)
if "torchscript" in desc["files"]:
    import torch
    torch.set_num_threads(1)
    module = torch.jit.load(folder + "/" + desc["files"]["torchscript"])
    with torch.no_grad():
        np.save(sys.argv[4] + "/torchscript.npy", module(torch.from_numpy(feed["label"]), torch.from_numpy(z)).numpy())
rgb = np.clip(np.round((image[0].transpose(1, 2, 0) + 1) * 127.5), 0, 255).astype(np.uint8)
Image.fromarray(rgb).save(sys.argv[4] + "/image.png")
print("ran without semsynth")
"""


@pytest.fixture(scope="module")
def bundled_export(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("portable") / "faces"
    threads = torch.get_num_threads()
    try:
        rc = main(["export", "--model", str(BUNDLED), "--format", "onnx,torchscript", "--out", str(out),
                   "--threads", "1"])
    finally:
        torch.set_num_threads(threads)
    assert rc == 0
    return out


def test_bundled_export_folder(bundled_export):
    names = sorted(p.name for p in bundled_export.iterdir())
    assert names == ["config.json", "encoder.safetensors", "generator.onnx", "generator.pt", "model.safetensors",
                     "portable.json"]
    assert (bundled_export / "model.safetensors").read_bytes() == (BUNDLED / "model.safetensors").read_bytes()
    desc = json.loads((bundled_export / "portable.json").read_text())
    cfg = json.loads((BUNDLED / "config.json").read_text())
    assert desc["dynamic"] == {"batch": True, "height_width": False, "size_multiple": None}  # noise input: fixed size
    assert [(i["name"], i["dtype"], i["shape"]) for i in desc["inputs"]] == [
        ("label", "int64", ["batch", 64, 64]), ("z", "float32", ["batch", 64])]
    assert desc["outputs"][0]["shape"] == ["batch", 3, 64, 64]
    assert [c["name"] for c in desc["classes"]] == cfg["dataset"]["class_names"]
    assert [c["colour"] for c in desc["classes"]] == cfg["dataset"]["palette"]
    assert desc["label_values"] == cfg.get("label_values")
    assert desc["resolution"] == [64, 64] and desc["latent_dim"] == 64
    for fmt in ("onnx", "torchscript"):
        assert desc["checks"][fmt]["max_abs_diff"] <= TOL


def test_bundled_scgan_runs_without_semsynth(bundled_export, tmp_path):
    from semsynth.data.synthetic_faces import write_synthetic_faces
    from semsynth.inference import Synthesizer, seed_noise

    faces = write_synthetic_faces(tmp_path / "faces", 1, size=64, seed=11, split="val", progress=False)
    png = sorted((faces / "labels").iterdir())[0]
    z = torch.stack([seed_noise(3, 64), seed_noise(4, 64)])
    np.save(tmp_path / "z.npy", z.numpy())
    syn = Synthesizer.from_pretrained(BUNDLED, device="cpu")
    label = syn.read_label(png)
    expected = syn.generate(torch.stack([label, label]), z=z)
    paths = sorted({str(Path(m.__file__).resolve().parents[1]) for m in (np, onnxruntime, torch, Image)})
    script = NO_SEMSYNTH.replace("PATHS", repr(paths))
    r = subprocess.run([sys.executable, "-I", "-S", "-c", script, str(bundled_export), str(png), str(tmp_path / "z.npy"),
                        str(tmp_path)], capture_output=True, text=True, timeout=300, cwd=tmp_path, check=False,
                       env={"PATH": "/usr/bin:/bin", "OMP_NUM_THREADS": "1"})
    assert r.returncode == 0, r.stdout + r.stderr
    assert "ran without semsynth" in r.stdout
    for fmt in ("onnx", "torchscript"):
        out = torch.from_numpy(np.load(tmp_path / f"{fmt}.npy"))
        diff = (out - expected).abs().max().item()
        assert diff <= TOL, f"{fmt}: max |diff| {diff:.3g} to semsynth generate"
    img = np.asarray(Image.open(tmp_path / "image.png"))
    assert img.shape == (64, 64, 3) and img.std() > 5


# -- the command ------------------------------------------------------------------------------------------


def test_cli_export_of_a_deterministic_model_says_what_is_dynamic(tmp_path, capsys):
    d, _ = tiny_model_dir(tmp_path, "scgan", 0)
    out = tmp_path / "portable"
    assert main(["export", "--model", str(d), "--format", "torchscript", "--out", str(out)]) == 0
    text = capsys.readouterr().out
    assert "inputs: label int64 ['batch', 'height', 'width']" in text
    assert f"wrote {out / 'generator.pt'}" in text
    desc = json.loads((out / "portable.json").read_text())
    assert desc["dynamic"] == {"batch": True, "height_width": True, "size_multiple": 32}
    assert desc["label_values"] == {str(10 * i): i for i in range(NUM_CLASSES)}
    # a second export of the other format keeps the first one's entry (same weights)
    assert main(["export", "--model", str(out), "--format", "onnx", "--out", str(out)]) == 0
    desc = json.loads((out / "portable.json").read_text())
    assert desc["files"] == {"onnx": "generator.onnx", "torchscript": "generator.pt"}
    assert set(desc["checks"]) == {"onnx", "torchscript"}


def test_cli_export_model_to_fp16_safetensors(tmp_path, capsys):
    d, _ = tiny_model_dir(tmp_path, "scgan", 0)
    out = tmp_path / "half"
    assert main(["export", "--model", str(d), "--out", str(out), "--dtype", "fp16"]) == 0
    from safetensors.torch import load_file

    state = load_file(str(out / "model.safetensors"))
    assert {v.dtype for v in state.values() if v.is_floating_point()} == {torch.float16}
    cfg = json.loads((out / "config.json").read_text())
    assert cfg["label_values"] == {str(10 * i): i for i in range(NUM_CLASSES)}
    assert not (out / "portable.json").exists()

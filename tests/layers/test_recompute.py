"""train.recompute: residual blocks recomputed in backward give the same gradients and buffers, keep less."""

import contextlib
import copy

import pytest
import torch

from semsynth.config import resolve_config
from semsynth.errors import ConfigError
from semsynth.layers.recompute import enable_recompute, recompute_units
from semsynth.models import build_generator
from semsynth.training import load_training_state, train
from tests.helpers import TINY_RAW

SPECS = {
    # spectral norm (power iteration state) and sync-batch norm (running statistics) inside the blocks
    "scgan": {"name": "scgan", "srg_width": 4, "fc_width": 4, "svg_width": 8, "conv_candidates": 2,
              "norm_candidates": 3, "spade_hidden": 8, "param_free_norm": "batch"},
    "spade": {"name": "spade", "ngf": 4, "resolution": 32},
    "oasis": {"name": "oasis", "channels": 4, "resolution": 32},
    "ccfpse": {"name": "ccfpse", "ngf": 4, "resolution": 32},
    "pix2pixhd": {"name": "pix2pixhd", "ngf": 4, "n_blocks": 2, "resolution": 32},
    "crn": {"name": "crn", "widths": [8, 8, 8, 8], "resolution": 32},
}


def _build(spec):
    try:
        return build_generator(spec, num_classes=5)
    except (TypeError, ValueError, KeyError) as e:  # a spec key of this test out of date: say which
        pytest.fail(f"{spec['name']}: {e}")


def _semantic(seed=0):
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(0, 5, (2, 8, 8), generator=g).repeat_interleave(4, 1).repeat_interleave(4, 2)  # 32x32
    return torch.nn.functional.one_hot(ids, 5).permute(0, 3, 1, 2).float()


def _step(G, sem):
    torch.manual_seed(1)  # the same noise (OASIS z, dropout-free nets) in both runs
    saved = []

    def pack(t):
        saved.append(t.numel() * t.element_size())
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        out = G(sem)
    out = out.image if hasattr(out, "image") else out
    (out * torch.linspace(-1, 1, out.numel()).view_as(out)).sum().backward()
    return out.detach(), sum(saved)


@pytest.mark.parametrize("name", sorted(SPECS))
def test_recomputed_blocks_give_the_same_output_gradients_and_buffers(name):
    torch.manual_seed(0)
    G = _build(SPECS[name]).train()
    H = copy.deepcopy(G)
    assert enable_recompute(H) == len(recompute_units(H)) > 0
    sem = _semantic()
    out_g, saved_g = _step(G, sem)
    out_h, saved_h = _step(H, sem)
    torch.testing.assert_close(out_h, out_g, rtol=0, atol=0)
    for (k, p), q in zip(G.named_parameters(), H.parameters()):
        assert (p.grad is None) == (q.grad is None), k
        if p.grad is not None:
            torch.testing.assert_close(q.grad, p.grad, rtol=1e-6, atol=1e-7, msg=k)
    # running statistics and power-iteration vectors advanced once, as without recomputation
    for (k, a), b in zip(G.named_buffers(), H.buffers()):
        torch.testing.assert_close(b, a, rtol=0, atol=0, msg=k)
    # and the forward kept less for backward (the blocks' inputs only)
    assert saved_h < {"pix2pixhd": 0.8}.get(name, 0.6) * saved_g, (name, saved_h, saved_g)


def test_scgan_units_are_its_residual_blocks_and_svg_stages():
    """SC-GAN recomputes its SC residual blocks and the refining stages of its SVG (every stage but the first,
    which reads only the coarsest label map): their full-resolution concatenation is the largest activation."""
    from semsynth.models.generators.scgan import SCResBlock, SVGStage

    G = _build(SPECS["scgan"])
    units = recompute_units(G)
    stages = [u for u in units if isinstance(u, SVGStage)]
    assert len(stages) == G.svg.num_stages - 1 and all(s is G.svg.stages[k + 1] for k, s in enumerate(stages))
    assert len(units) - len(stages) == sum(isinstance(m, SCResBlock) for m in G.modules())
    # the stage keeps a plain Sequential's state-dict keys (official checkpoints convert onto them)
    assert {"svg.stages.1.1.bias", "svg.stages.1.3.bias", "svg.stages.1.1.parametrizations.weight.original"} \
        <= set(G.state_dict())


def test_recompute_is_off_in_eval_and_without_gradients():
    torch.manual_seed(0)
    G = _build(SPECS["scgan"])
    enable_recompute(G)
    sem = _semantic()
    G.eval()
    with torch.no_grad():
        a = G(sem)
    calls = []
    orig = torch.utils.checkpoint.checkpoint
    try:
        torch.utils.checkpoint.checkpoint = lambda *a, **k: calls.append(1) or orig(*a, **k)
        import semsynth.layers.recompute as rc

        rc.checkpoint = torch.utils.checkpoint.checkpoint
        with torch.no_grad():
            b = G(sem)
        G.train()
        with torch.no_grad():
            G(sem)
        assert calls == []
        G(sem)
        assert len(calls) == len(recompute_units(G))
    finally:
        torch.utils.checkpoint.checkpoint = orig
        rc.checkpoint = orig
    torch.testing.assert_close(a, b, rtol=0, atol=0)
    assert set(G.state_dict()) == set(_build(SPECS["scgan"]).state_dict())  # nothing added to the state


def test_a_training_run_with_recompute_equals_one_without(tmp_path):
    torch.use_deterministic_algorithms(True)
    try:
        raw = {**TINY_RAW, "train": {**TINY_RAW["train"], "images": 4, "checkpoint_every": 4, "log_every": 4,
                                     "sample_every": 4}}
        plain = train(resolve_config(raw, name="plain"), outdir=tmp_path)
        raw_r = {**raw, "train": {**raw["train"], "recompute": True}}
        rec = train(resolve_config(raw_r, name="rec"), outdir=tmp_path)
        a = load_training_state(sorted((plain / "checkpoints").glob("*.pt"))[-1])
        b = load_training_state(sorted((rec / "checkpoints").glob("*.pt"))[-1])
        for k in a["G"]:
            torch.testing.assert_close(b["G"][k], a["G"][k], rtol=1e-5, atol=1e-7, msg=k)
        assert "recompute: true" in (rec / "config.yaml").read_text()
    finally:
        torch.use_deterministic_algorithms(False)


def test_recompute_on_a_generator_without_blocks_is_a_clear_error():
    raw = {**TINY_RAW, "generator": {"name": "sims"}, "encoder": None, "discriminator": None, "loss": {"name": "crn", "features": "none"}, "train": {**TINY_RAW["train"], "recompute": True}}
    from semsynth.config import check_models

    plain = {**raw, "train": {**raw["train"], "recompute": False}}
    check_models(resolve_config(plain, name="x"))  # the same networks checked once without recompute (memoised)
    with pytest.raises(ConfigError, match=r"train.recompute = true: generator 'sims' has no residual blocks.*"
                                          r"train.recompute=false"):
        check_models(resolve_config(raw, name="x"))


def test_saved_as_keeps_the_source_and_rebuilds_it_exactly():
    import torch.nn.functional as F
    from torch.multiprocessing.reductions import StorageWeakRef

    from semsynth.layers.recompute import saved_as

    def up(t):
        return F.interpolate(t, scale_factor=2.0, mode="nearest")

    g = torch.Generator().manual_seed(0)
    small = torch.randn(1, 3, 4, 5, generator=g, dtype=torch.float64, requires_grad=True)
    w = torch.randn(1, 3, 8, 10, generator=g, dtype=torch.float64, requires_grad=True)
    grads = []
    for rebuilt in (True, False):
        big = up(small)
        ref = StorageWeakRef(big.untyped_storage())
        rebuilds = []
        with saved_as(big, small, lambda s: rebuilds.append(1) or up(s)) if rebuilt else contextlib.nullcontext():
            y = (big * w).sin().sum()  # the product keeps big (for w's gradient)
        del big
        # with saved_as nothing keeps the up-sampled map alive until backward; without it the product does
        assert ref.expired() == rebuilt
        grads.append(torch.autograd.grad(y, (small, w)))
        assert len(rebuilds) == (1 if rebuilt else 0)
    for a, b in zip(*grads):
        assert torch.equal(a, b)


def test_saved_as_is_inactive_without_gradients():
    from semsynth.layers.recompute import saved_as

    x = torch.randn(2, 3)
    with torch.no_grad(), saved_as(x, x[:1], lambda s: 1 / 0):
        y = x * 2
    assert y.grad_fn is None


def test_scgan_training_keeps_no_up_sampled_block_input(monkeypatch):
    from torch.multiprocessing.reductions import StorageWeakRef

    import semsynth.models.generators.scgan as scgan

    G = _build(SPECS["scgan"]).train()
    G2 = copy.deepcopy(G)
    made = []
    orig = scgan._up2

    def up(x):
        y = orig(x)
        made.append(StorageWeakRef(y.untyped_storage()))
        return y

    monkeypatch.setattr(scgan, "_up2", up)
    out = G(_semantic())
    assert len(made) == 5 and all(r.expired() for r in made)  # five up-sampled inputs, none kept for backward
    out.square().mean().backward()
    assert len(made) > 5  # backward up-sampled the kept quarter-size maps again
    n = len(made)
    monkeypatch.setattr(scgan, "saved_as", lambda *a: contextlib.nullcontext())  # the up-sampled maps kept
    out2 = G2(_semantic())
    assert len(made) == n + 5 and not any(r.expired() for r in made[n:])
    out2.square().mean().backward()
    for (name, p), p2 in zip(G.named_parameters(), G2.parameters()):
        assert (p.grad is None) == (p2.grad is None) and (p.grad is None or torch.equal(p.grad, p2.grad)), name


def test_saved_as_blocks_nest():
    import torch.nn.functional as F
    from torch.multiprocessing.reductions import StorageWeakRef

    from semsynth.layers.recompute import saved_as

    def up(t):
        return F.interpolate(t, scale_factor=2.0, mode="nearest")

    small = torch.randn(1, 2, 3, 3, dtype=torch.float64, requires_grad=True)
    other = torch.randn(1, 2, 3, 3, dtype=torch.float64, requires_grad=True)
    a, b = up(small), up(other)
    refs = [StorageWeakRef(a.untyped_storage()), StorageWeakRef(b.untyped_storage())]
    with saved_as(a, small, up), saved_as(b, other, up):
        y = (a * b).sum()  # the product keeps both: the outer block's tensor as well as the inner one's
    del a, b
    assert all(r.expired() for r in refs)
    ga = torch.autograd.grad(y, (small, other))
    a, b = up(small), up(other)
    gb = torch.autograd.grad((a * b).sum(), (small, other))
    assert all(torch.equal(p, q) for p, q in zip(ga, gb))


@pytest.mark.parametrize("how", ["saved_as", "rebuildable"])
def test_a_rebuild_runs_under_the_autocast_state_of_the_forward(how):
    """Backward runs outside the forward's autocast block (on CUDA in another thread). A rebuild made there without
    it gave another dtype: on CUDA the up-sampled bf16 map that autocast had made float32 came back bf16, and
    cuDNN's batch-norm backward stopped ("Expected grad_output to have type BFloat16 but got Float"). Here the
    rebuilt map is a conv's output, which CPU autocast makes bfloat16 from float32 inputs."""
    import torch.nn.functional as F

    from semsynth.layers.recompute import rebuild_scope, rebuildable, saved_as

    g = torch.Generator().manual_seed(0)
    k = torch.randn(4, 3, 3, 3, generator=g)
    a = torch.randn(1, 3, 8, 8, generator=g, requires_grad=True)
    w = torch.randn(1, 4, 1, 1, generator=g, requires_grad=True)
    made: list = []

    def conv(t):
        y = F.conv2d(t, k, padding=1)
        made.append(y.dtype)
        return y

    def run(rebuilt: bool):
        with torch.autocast("cpu", dtype=torch.bfloat16):
            x = conv(a)
            if rebuilt and how == "rebuildable":
                with rebuild_scope():
                    y = (rebuildable(x, (a,), conv) * w).sum()  # the product keeps x (for w's gradient)
            elif rebuilt:
                with saved_as(x, a, conv):
                    y = (x * w).sum()
            else:
                y = (x * w).sum()
        return torch.autograd.grad(y, (a, w))

    reference = run(False)
    made.clear()
    rebuilt = run(True)
    assert made == [torch.bfloat16, torch.bfloat16]  # the forward's conv, then the rebuild: both bf16
    for r, b in zip(reference, rebuilt):
        assert r.dtype == b.dtype and torch.equal(r, b)

"""Recomputation of residual blocks in backward (gradient checkpointing), ``train.recompute``.

A training forward keeps every activation that backward needs: in SC-GAN's generator, the SCC stacked outputs
(``n * Cout * H * W`` per convolution), the modulation maps and the SPADE hidden maps of every block. With
recomputation on, a block keeps only its inputs; backward runs the block's forward again and differentiates that.
Less memory, one more forward of the blocks per step (docs/benchmarks.md has both figures).

Exactness. A second forward must compute what the first one did, but a block's forward in training mode changes
its buffers: batch norm updates its running statistics, spectral norm advances its power iteration (whose ``u``,
``v`` give sigma, hence the weights). The recomputation therefore runs on a copy of the buffers as they were
before the first forward (snapshots of a few vectors per layer) and puts the post-forward values back afterwards:
gradients, running statistics and power-iteration state equal those of a run without recomputation (tested).
Random operations (dropout, noise) replay the same draws (``preserve_rng_state``).

:func:`saved_as` is the cheap case of the same idea for one tensor: where a block's input is the 2x nearest
up-sampling of a smaller map, the operators that keep it for backward keep the smaller map instead, and backward
up-samples it again (a copy: exact, no arithmetic). SC-GAN's generator does this for every up-sampled block input
(23 MiB of a training step at the ADE20K preset).

Blocks opt in with the class attribute ``recompute_unit = True`` (SC-GAN's ``SCResBlock`` and the refining
stages of its SVG, ``SVGStage``, whose full-resolution concatenation is the largest activation of a step; SPADE's
``SPADEResBlock`` used by SPADE and OASIS, CC-FPSE's ``CondConvBlock``, pix2pixHD's ``ResnetBlock``, CRN's
``RefinementModule``); :func:`enable_recompute` switches every such block of a network on. Nothing changes in
the state dict, in eval mode or without gradients (sampling, the D step's fakes, the EMA copy).
"""

from __future__ import annotations

import contextlib
import functools
import threading
import weakref
from collections.abc import Iterator

import torch
from torch import nn
from torch.utils.checkpoint import checkpoint


def recompute_units(module: nn.Module) -> list[nn.Module]:
    """The outermost modules of ``module`` (itself included) whose class sets ``recompute_unit``."""
    found: list[nn.Module] = []

    def visit(m: nn.Module) -> None:
        if getattr(type(m), "recompute_unit", False):
            found.append(m)
            return  # a unit inside a unit is recomputed with its parent
        for child in m.children():
            visit(child)

    visit(module)
    return found


def enable_recompute(module: nn.Module, enabled: bool = True) -> int:
    """Switch recomputation on (or off) for every recompute unit of ``module``; returns how many there are.
    A network without any (a discriminator, an encoder) is left as it is and 0 is returned."""
    units = recompute_units(module)
    for m in units:
        m.recompute = enabled
    return len(units)


class _BufferReplay:
    """Snapshots of a module's buffers before its first forward, swapped in while the forward is recomputed."""

    def __init__(self, module: nn.Module) -> None:
        self.buffers = [b for b in module.buffers() if b is not None]
        self.before = [b.detach().clone() for b in self.buffers]

    @contextlib.contextmanager
    def replay(self) -> Iterator[None]:
        after = [b.detach().clone() for b in self.buffers]
        with torch.no_grad():
            for b, v in zip(self.buffers, self.before):
                b.copy_(v)
        try:
            yield
        finally:
            with torch.no_grad():
                for b, v in zip(self.buffers, after):
                    b.copy_(v)


_inside = threading.local()


def in_recompute_unit() -> bool:
    """Whether a recompute unit with recomputation on is running (its forward, or its recomputation in backward):
    layers inside it need not save memory themselves (``SpatiallyConditionalConv2d.recompute_min_pixels``)."""
    return getattr(_inside, "depth", 0) > 0


def saved_tensors_reusable() -> bool:
    """Called in an autograd function's backward: whether the tensors it saved may be overwritten there (reused as
    the buffer of a gradient of the same shape). True only when the graph is freed after this backward (no
    ``retain_graph`` or ``create_graph``: nothing reads them again), in eager mode (not compiling). Where the
    private query PyTorch offers is missing, False (allocate, as autograd would)."""
    if torch.compiler.is_compiling() or torch._C._current_graph_task_id() == -1:
        return False
    try:
        return not torch._C._autograd._get_current_graph_task_keep_graph()
    except (AttributeError, RuntimeError):
        return False


def _run_inside(call, *args, **kwargs):
    _inside.depth = getattr(_inside, "depth", 0) + 1
    try:
        return call(*args, **kwargs)
    finally:
        _inside.depth -= 1


_RECOMPUTE_CONTEXTS: list = []  # functions returning a context that restores, in backward, a state of the forward


def restore_on_recompute(capture):
    """Register ``capture``: called at a recomputed block's forward, it returns a context manager that the block's
    recomputation in backward runs inside (a thread-local state of the forward, such as
    :func:`semsynth.layers.onehot_conv.label_ids`, open again). Returns ``capture``."""
    _RECOMPUTE_CONTEXTS.append(capture)
    return capture


@contextlib.contextmanager
def _all_of(*contexts):
    with contextlib.ExitStack() as stack:
        for c in contexts:
            stack.enter_context(c)
        yield


class RecomputeMixin:
    """Mixed into a block class (before ``nn.Module``): when ``self.recompute`` is on, the block is in training
    mode and gradients are recorded, its call is checkpointed with exact buffer replay (module docstring), the
    states registered with :func:`restore_on_recompute` open again for the recomputation."""

    recompute_unit = True
    recompute = False

    def __call__(self, *args, **kwargs):
        if not (self.recompute and self.training and torch.is_grad_enabled()):
            return super().__call__(*args, **kwargs)
        replay = _BufferReplay(self)
        call = functools.partial(_run_inside, super().__call__)
        states = [capture() for capture in _RECOMPUTE_CONTEXTS]
        return checkpoint(call, *args, use_reentrant=False, preserve_rng_state=True,
                          context_fn=lambda: (contextlib.nullcontext(), _all_of(replay.replay(), *states)), **kwargs)


class _Rebuilt:
    """What :func:`saved_as` and :func:`rebuildable` store in place of a saved tensor: its source, how to rebuild
    it and, for a view of the registered tensor, the view (size, stride, storage offset)."""

    __slots__ = ("source", "rebuild", "view")

    def __init__(self, source, rebuild, view: tuple | None = None) -> None:
        self.source, self.rebuild, self.view = source, rebuild, view


def _view_key(t: torch.Tensor) -> tuple:
    return t.untyped_storage().data_ptr(), t.storage_offset(), tuple(t.shape), t.stride(), t.dtype


_saved_as = threading.local()  # the (key, source, rebuild) of the saved_as blocks open in this thread


def _pack(t: torch.Tensor):
    entries = getattr(_saved_as, "entries", None)
    if entries:
        key = _view_key(t)
        for k, source, rebuild in reversed(entries):
            if k == key:
                return _Rebuilt(source, rebuild)
    table = getattr(_saved_as, "table", None)
    if table and t.layout == torch.strided and not t.is_meta:
        entry = table.get(t.untyped_storage().data_ptr())
        base = None if entry is None else entry[0]()
        # the registered tensor still alive (so is its memory: t is a view of it) and unchanged since
        if base is not None and t._version == entry[1] and t.dtype == base.dtype:
            same = t.shape == base.shape and t.stride() == base.stride() and t.storage_offset() == 0
            view = (t.shape, t.stride(), t.storage_offset(), base.shape, base.stride())
            return _Rebuilt(entry[2], entry[3], None if same else view)
    return t


def _unpack(p):
    if not isinstance(p, _Rebuilt):
        return p
    t = p.rebuild(p.source)
    if p.view is None:
        return t
    size, stride, offset, base_size, base_stride = p.view
    if t.stride() != base_stride:  # laid out as the registered tensor was, which the view's strides refer to
        t = torch.empty_strided(base_size, base_stride, dtype=t.dtype, device=t.device).copy_(t)
    return t.as_strided(size, stride, offset)


def _owns_dense(t: torch.Tensor) -> bool:
    """Whether ``t`` covers exactly its own memory: a permutation of a contiguous layout, from offset 0, over a
    storage of its size."""
    expected = 1
    for size, stride in sorted(((n, s) for n, s in zip(t.shape, t.stride()) if n != 1), key=lambda d: d[1]):
        if stride != expected:
            return False
        expected *= size
    return t.storage_offset() == 0 and t.untyped_storage().nbytes() == t.numel() * t.element_size()


def _foreign_hooks() -> bool:
    """Whether saved-tensor hooks other than these are open (the caller's ``torch.autograd.graph.save_on_cpu``, a
    checkpoint's): they stay in charge (hooks do not nest: the innermost pair alone applies)."""
    try:
        top = torch._C._autograd._top_saved_tensors_default_hooks(False)
    except (AttributeError, RuntimeError, TypeError):  # the private query missing: nothing can be told
        return False
    return top is not None and top[0] is not _pack


def _as_made(rebuild, tensor: torch.Tensor):
    """``rebuild``, run under the autocast of this thread for ``tensor``'s device when one is on at the time of the
    call (the forward that made ``tensor``), so that it gives ``tensor``'s dtype and values again: backward runs
    outside the forward's autocast block, and on CUDA in another thread. Under CUDA autocast, for instance, the 2x
    nearest up-sampling of a bfloat16 map returns float32; rebuilt without autocast it came back bfloat16. Without
    autocast ``rebuild`` itself (backward is run outside autocast, as PyTorch asks)."""
    kind = tensor.device.type
    try:
        on = torch.amp.is_autocast_available(kind) and torch.is_autocast_enabled(kind)
    except (AttributeError, RuntimeError):  # no such query, or no such device type
        return rebuild
    return functools.partial(_rebuild_in_autocast, rebuild, kind, torch.get_autocast_dtype(kind)) if on else rebuild


def _rebuild_in_autocast(rebuild, kind: str, dtype: torch.dtype, *args):
    with torch.autocast(kind, dtype=dtype):
        return rebuild(*args)


def _unpack_all(rebuild, sources: tuple):
    """``rebuild`` called with the sources of a :func:`rebuildable` tensor, each unpacked."""
    with torch.no_grad():
        return rebuild(*(_unpack(s) for s in sources))


@contextlib.contextmanager
def rebuild_scope() -> Iterator[None]:
    """A training forward (a model's ``forward``) inside which the operators that keep a tensor announced with
    :func:`rebuildable` for backward keep the recipe that rebuilds it instead. Scopes nest; inactive (nothing
    changes) without gradients, while tracing or compiling, inside a recompute unit and inside saved-tensor hooks
    of the caller's (``torch.autograd.graph.save_on_cpu``, say), which stay in charge."""
    if not torch.is_grad_enabled() or torch.jit.is_tracing() or torch.compiler.is_compiling() \
            or in_recompute_unit() or _foreign_hooks():
        yield
        return
    outermost = getattr(_saved_as, "table", None) is None
    if outermost:
        _saved_as.table = {}
    try:
        with torch.autograd.graph.saved_tensors_hooks(_pack, _unpack):
            yield
    finally:
        if outermost:
            _saved_as.table = None


def rebuildable(tensor: torch.Tensor, sources: tuple, rebuild) -> torch.Tensor:
    """Announce that ``rebuild(*sources)`` (without gradients) returns ``tensor``'s values exactly, and return
    ``tensor``. Inside a :func:`rebuild_scope`, an operator that keeps ``tensor`` or a view of it for backward keeps
    ``sources`` instead (themselves as the open scopes keep them: the quarter-size source of an up-sampled map,
    say) and backward calls ``rebuild`` again: a spectrally normalised weight kept as the weight and sigma, a
    normalisation's output as its input and the few values it is made of. For a dense ``tensor`` (any order of its
    dimensions) that owns its memory (anything else, or no open scope: nothing changes); it must not be modified in
    place afterwards (an operator that keeps it after such a change keeps it as it is)."""
    table = getattr(_saved_as, "table", None)
    if table is None or not torch.is_grad_enabled() or in_recompute_unit() or tensor.layout != torch.strided \
            or tensor.numel() == 0 or not _owns_dense(tensor):
        return tensor
    packed = tuple(_pack(s) if isinstance(s, torch.Tensor) else s for s in sources)
    key = tensor.untyped_storage().data_ptr()

    def forget(ref) -> None:  # the tensor is gone: its sources need not wait for the end of the scope
        if table.get(key, (None,))[0] is ref:
            del table[key]

    table[key] = (weakref.ref(tensor, forget), tensor._version, packed,
                  functools.partial(_unpack_all, _as_made(rebuild, tensor)))
    return tensor


@contextlib.contextmanager
def saved_as(tensor: torch.Tensor, source, rebuild) -> Iterator[None]:
    """Within this block, an operator that keeps ``tensor`` for backward keeps ``source`` instead, and backward
    uses ``rebuild(source)`` (which must return ``tensor``'s values exactly, e.g. an up-sampling of ``source``).

    For a ``tensor`` larger than its ``source``. Blocks nest (an inner one also applies the outer ones' tensors).
    Inactive (nothing changes) without gradients, when ``tensor`` does not require them, while tracing or
    compiling, inside a recompute unit (whose own hooks must see every saved tensor) and inside saved-tensor hooks
    of the caller's. ``source`` must not be modified in place afterwards."""
    if not (torch.is_grad_enabled() and tensor.requires_grad) or torch.jit.is_tracing() \
            or torch.compiler.is_compiling() or in_recompute_unit() or _foreign_hooks():
        yield
        return
    # the entry holds the view's key (valid while the block runs, when ``tensor`` is alive), not ``tensor`` itself,
    # which the saved entries would keep alive until backward
    entries = getattr(_saved_as, "entries", None)
    if entries is None:
        entries = _saved_as.entries = []
    entries.append((_view_key(tensor), source, _as_made(rebuild, tensor)))
    try:
        with torch.autograd.graph.saved_tensors_hooks(_pack, _unpack):
            yield
    finally:
        entries.pop()

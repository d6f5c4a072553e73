"""Peak memory of the tensors a computation creates, counted exactly, independent of the allocator.

The peak resident set size (``VmHWM``) of a process is what the operating system sees, but on CPU it depends on
the allocator: glibc keeps freed chunks in its heap, fragments it, returns large blocks with ``munmap``, and two
identical runs of one forward can differ by 100 MiB. :class:`TensorPeak` counts instead the bytes of the tensor
storages that operators create while it is active, alive at the same time (a storage is counted once, however many
views share it; it stops counting when its last tensor is gone), and remembers the largest sum and what was alive
then. Storages that existed before (weights, inputs) are never counted, even when an operator returns a view of
them. Operator-internal scratch memory (e.g. oneDNN workspaces) is not a tensor and is not seen.

    with TensorPeak() as tp:
        model(x)
    tp.peak_bytes, tp.peak_tensors  # the peak and the largest tensors alive at it (op, shape, module)

It is a ``TorchDispatchMode``: every operator goes through Python, so it is slow; use it to measure, not to run.
Autograd's backward runs under the same mode (the mode is part of the thread-local state the engine restores).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch.multiprocessing.reductions import StorageWeakRef
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_flatten


@dataclass(frozen=True)
class LiveTensor:
    """A storage counted by :class:`TensorPeak`: its bytes, the operator that made it, the tensor's shape."""

    nbytes: int
    op: str
    shape: tuple[int, ...]
    module: str


class TensorPeak(TorchDispatchMode):
    """Counts the peak bytes of live tensor storages created inside the ``with`` block (see the module docstring).

    Args:
        modules: an optional ``nn.Module`` whose submodule names (the module itself: its class name) are recorded
            with each tensor (forward hooks, removed on exit), to say where the tensors alive at the peak were made.
        top: how many of the largest tensors alive at the peak to keep in :attr:`peak_tensors`.
    """

    def __init__(self, modules: torch.nn.Module | None = None, top: int = 12) -> None:
        super().__init__()
        self._live: dict[int, tuple[StorageWeakRef, LiveTensor]] = {}
        self._known: dict[int, StorageWeakRef] = {}  # storages from before the block (by address)
        self._stack: list[str] = []
        self._hooks: list = []
        self._modules = modules
        self._top = top
        self.current_bytes = 0
        self.peak_bytes = 0
        self.peak_op = ""
        self.peak_tensors: list[LiveTensor] = []

    def __enter__(self):
        if self._modules is not None:
            for name, m in self._modules.named_modules():
                self._hooks.append(m.register_forward_pre_hook(  # the root by its class name
                    lambda mod, args, name=name or type(m).__name__: self._stack.append(name)))
                self._hooks.append(m.register_forward_hook(lambda mod, args, out: self._pop()))
        return super().__enter__()

    def __exit__(self, *exc):
        for h in self._hooks:
            h.remove()
        self._hooks.clear()
        return super().__exit__(*exc)

    def _pop(self) -> None:
        if self._stack:
            self._stack.pop()

    def _collect(self) -> None:
        # a freed storage's address can be reused by a new one: forget dead ones before looking new ones up
        dead = [k for k, (ref, _) in self._live.items() if ref.expired()]
        for k in dead:
            self.current_bytes -= self._live.pop(k)[1].nbytes
        for k in [k for k, ref in self._known.items() if ref.expired()]:
            del self._known[k]

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        # storages the operator reads that are not ours existed before the block: never count them
        for t in tree_flatten((args, kwargs))[0]:
            if isinstance(t, torch.Tensor) and not t.is_meta and t.layout == torch.strided:  # not oneDNN's packed
                k = t.untyped_storage()._cdata
                if k not in self._live and k not in self._known:
                    self._known[k] = StorageWeakRef(t.untyped_storage())
        out = func(*args, **kwargs)
        self._collect()
        for t in tree_flatten(out)[0]:
            if not isinstance(t, torch.Tensor) or t.is_meta or t.layout != torch.strided:
                continue
            s = t.untyped_storage()
            k = s._cdata
            if k in self._live or k in self._known or s.nbytes() == 0:
                continue
            info = LiveTensor(s.nbytes(), func.overloadpacket.__name__, tuple(t.shape), self._stack[-1] if self._stack else "")
            self._live[k] = (StorageWeakRef(s), info)
            self.current_bytes += info.nbytes
        if self.current_bytes > self.peak_bytes:
            self.peak_bytes = self.current_bytes
            self.peak_op = f"{func.overloadpacket.__name__} in {self._stack[-1] if self._stack else '(top level)'}"
            self.peak_tensors = sorted((i for _, i in self._live.values()), key=lambda i: -i.nbytes)[: self._top]
        return out

    @property
    def peak_mib(self) -> float:
        return self.peak_bytes / 2**20

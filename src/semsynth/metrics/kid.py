"""Kernel Inception Distance (Binkowski et al. 2018), as torch-fidelity and clean-fid compute it.

KID is the squared MMD between the two feature distributions under the cubic polynomial kernel
``k(x, y) = (x.y / d + 1)^3`` (``d`` = feature size), estimated without bias on ``num_subsets`` random
subsets of ``m`` features from each set and averaged:

    MMD^2_u = [sum_{i!=j} k(x_i, x_j) + sum_{i!=j} k(y_i, y_j)] / (m (m - 1)) - 2 sum_{i,j} k(x_i, y_j) / m^2

Subsets are drawn without replacement with ``np.random.RandomState(seed)``, first from set A then from set B,
subset by subset (torch-fidelity's order: with its default seed 2020 and the same features, the numbers are
torch-fidelity's). The value is unbiased, so it can be slightly negative for two samples of one distribution.
Usually reported x 1000 (or x 100); this module returns the raw value.
"""

from __future__ import annotations

import numpy as np
import torch

from .fid import _as_float64

# Above this many float64 entries (N_a + N_b)^2, kernel blocks are computed per subset instead of once.
_MAX_GRAM_ENTRIES = 64 * 1024 * 1024  # 512 MB


def polynomial_kernel(x: np.ndarray, y: np.ndarray, degree: int = 3, coef0: float = 1.0) -> np.ndarray:
    """``(x y^T / d + coef0) ** degree`` for ``x`` ``[N, d]``, ``y`` ``[M, d]``."""
    return (x @ y.T / x.shape[1] + coef0) ** degree


def _mmd2_unbiased(k_xx: np.ndarray, k_yy: np.ndarray, k_xy: np.ndarray) -> float:
    m = k_xx.shape[0]
    sum_xx = k_xx.sum() - np.trace(k_xx)
    sum_yy = k_yy.sum() - np.trace(k_yy)
    return float((sum_xx + sum_yy) / (m * (m - 1)) - 2 * k_xy.sum() / (m * m))


def kid_from_features(feats_a: np.ndarray | torch.Tensor, feats_b: np.ndarray | torch.Tensor,
                      num_subsets: int = 100, subset_size: int = 1000, seed: int = 0) -> tuple[float, float]:
    """KID between feature sets ``[N, D]`` and ``[M, D]``: (mean, std) of the unbiased MMD^2 over subsets.

    ``subset_size`` is clipped to ``min(N, M)`` (clean-fid's rule; torch-fidelity raises instead). With
    ``subset_size == N == M`` every subset is a permutation of the whole sets, so all subsets agree and
    std = 0. The std is ``np.std`` (ddof 0) over subsets, as torch-fidelity.
    """
    a, b = _as_float64(feats_a), _as_float64(feats_b)
    if a.shape[1] != b.shape[1]:
        raise ValueError(f"feature sizes differ: {a.shape[1]} vs {b.shape[1]}")
    if num_subsets < 1:
        raise ValueError(f"num_subsets must be >= 1; got {num_subsets}")
    m = min(subset_size, a.shape[0], b.shape[0])
    if m < 2:
        raise ValueError(f"KID needs at least 2 images in each set; got {a.shape[0]} and {b.shape[0]}")
    rng = np.random.RandomState(seed)
    subsets = [(rng.choice(a.shape[0], m, replace=False), rng.choice(b.shape[0], m, replace=False))
               for _ in range(num_subsets)]
    mmds = np.empty(num_subsets)
    if (a.shape[0] + b.shape[0]) ** 2 <= _MAX_GRAM_ENTRIES:
        # Whole Gram matrices once, then index them: far cheaper than num_subsets products of m x D x m.
        k_aa, k_bb, k_ab = polynomial_kernel(a, a), polynomial_kernel(b, b), polynomial_kernel(a, b)
        for s, (ia, ib) in enumerate(subsets):
            mmds[s] = _mmd2_unbiased(k_aa[np.ix_(ia, ia)], k_bb[np.ix_(ib, ib)], k_ab[np.ix_(ia, ib)])
    else:
        for s, (ia, ib) in enumerate(subsets):
            x, y = a[ia], b[ib]
            k_xx, k_yy, k_xy = polynomial_kernel(x, x), polynomial_kernel(y, y), polynomial_kernel(x, y)
            mmds[s] = _mmd2_unbiased(k_xx, k_yy, k_xy)
    return float(mmds.mean()), float(mmds.std())

"""KID against a reference written with plain loops over the formula."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from semsynth.metrics import kid as kid_module
from semsynth.metrics import kid_from_features


def _k(x: np.ndarray, y: np.ndarray) -> float:
    return (float(np.dot(x, y)) / len(x) + 1.0) ** 3


def _reference_kid(a, b, num_subsets, subset_size, seed):  # noqa: ANN001, ANN202
    """Binkowski et al.'s unbiased MMD^2 with k(x, y) = (x.y/d + 1)^3, torch-fidelity's subset sampling."""
    m = min(subset_size, len(a), len(b))
    rng = np.random.RandomState(seed)
    values = []
    for _ in range(num_subsets):
        x = a[rng.choice(len(a), m, replace=False)]
        y = b[rng.choice(len(b), m, replace=False)]
        xx = sum(_k(x[i], x[j]) for i, j in itertools.permutations(range(m), 2))
        yy = sum(_k(y[i], y[j]) for i, j in itertools.permutations(range(m), 2))
        xy = sum(_k(x[i], y[j]) for i in range(m) for j in range(m))
        values.append((xx + yy) / (m * (m - 1)) - 2 * xy / (m * m))
    return float(np.mean(values)), float(np.std(values))


@pytest.fixture
def features():
    rng = np.random.default_rng(0)
    return rng.normal(size=(14, 5)), rng.normal(loc=0.4, scale=1.3, size=(11, 5))


def test_kid_matches_the_formula(features):
    a, b = features
    mean, std = kid_from_features(a, b, num_subsets=4, subset_size=7, seed=3)
    ref_mean, ref_std = _reference_kid(a, b, 4, 7, 3)
    assert mean == pytest.approx(ref_mean, rel=1e-10, abs=1e-12)
    assert std == pytest.approx(ref_std, rel=1e-8, abs=1e-12)
    assert std > 0


def test_kid_clips_the_subset_size_to_the_smaller_set(features):
    a, b = features
    mean, _ = kid_from_features(a, b, num_subsets=3, subset_size=1000, seed=0)
    assert mean == pytest.approx(_reference_kid(a, b, 3, 11, 0)[0], rel=1e-10)


def test_kid_per_subset_path_equals_gram_path(features, monkeypatch):
    a, b = features
    fast = kid_from_features(a, b, num_subsets=5, subset_size=6, seed=1)
    monkeypatch.setattr(kid_module, "_MAX_GRAM_ENTRIES", 0)
    slow = kid_from_features(a, b, num_subsets=5, subset_size=6, seed=1)
    assert fast == pytest.approx(slow, rel=1e-10)


def test_kid_separates_distributions():
    rng = np.random.default_rng(1)
    a, a2 = rng.normal(size=(300, 8)), rng.normal(size=(300, 8))
    b = rng.normal(loc=1.0, size=(300, 8))
    same, _ = kid_from_features(a, a2, num_subsets=20, subset_size=100)
    diff, _ = kid_from_features(a, b, num_subsets=20, subset_size=100)
    assert abs(same) < 0.1 * diff
    with pytest.raises(ValueError):
        kid_from_features(a[:1], b)

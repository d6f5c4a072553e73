"""Semantic-vector analysis of a trained SC-GAN (paper Fig. 3): per-class mean semantic vectors at one scale,
their cosine-similarity matrix, and a 2-D t-SNE embedding of sampled vectors.

Two vector spaces are offered: ``features``, the SVG stage's output (the vectors the routing is pooled from;
``svg_width``-to-``16 * svg_width`` dimensions), and ``routing``, the n-dimensional routing weights after the
mapping g. With the official tau = 0.05 the softmax is very flat, so routing vectors of all classes are close to
(1/n, ..., 1/n) and their raw cosines are all near 1: the ``centered`` matrix (vectors minus their mean over all
pixels) is the informative one there.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from .errors import SemsynthError


@torch.no_grad()
def collect_semantic_vectors(G: torch.nn.Module, labels: torch.Tensor, num_classes: int, *, scale: int = -1,
                             space: str = "features", use_instance: bool = False, batch_size: int = 8,
                             max_points: int = 2000, point_fraction: float = 0.05, seed: int = 0,
                             device: torch.device | str = "cpu") -> dict[str, Any]:
    """Per-class sums/counts of semantic vectors over ``labels`` ``[N, H, W]`` (channel ids), and a random,
    class-balanced sample of (vector, class) points for an embedding. ``scale``: 1 (coarsest) .. number of
    stages, or negative from the finest (-1)."""
    from .layers import semantic_input

    if space not in ("features", "routing"):
        raise SemsynthError(f"space {space!r}: choose features or routing")
    if not hasattr(G, "svg"):
        raise SemsynthError("semantic-vector analysis needs an SC-GAN generator (it has an SVG)")
    stages = G.num_stages
    k = scale - 1 if scale > 0 else stages + scale  # scales count from 1 (coarsest); -1 = finest
    if scale == 0 or not 0 <= k < stages:
        raise SemsynthError(f"--scale {scale}: this generator has scales 1..{stages} (or -1 for the finest)")
    rng = np.random.default_rng(seed)
    sums, counts = None, torch.zeros(num_classes, dtype=torch.float64)
    sq_sums = None
    points, point_labels = [], []
    G = G.to(device).eval()
    for a in range(0, labels.shape[0], batch_size):
        lab = labels[a : a + batch_size].to(device)
        inst = torch.zeros_like(lab) if use_instance else None
        feats, _ = G.svg(semantic_input(lab, num_classes, inst), rgb=False)
        v = feats[k]
        if space == "routing":
            conv_r, _ = G.routing([v])
            v = conv_r[0]
        v = v.double()
        d = v.shape[1]
        lab_k = F.interpolate(lab[:, None].float(), size=v.shape[-2:], mode="nearest")[:, 0].long()
        flat_v = v.permute(0, 2, 3, 1).reshape(-1, d).cpu()
        flat_l = lab_k.reshape(-1).cpu()
        if sums is None:
            sums = torch.zeros(num_classes, d, dtype=torch.float64)
            sq_sums = torch.zeros(d, dtype=torch.float64)
        sums.index_add_(0, flat_l, flat_v)
        counts += torch.bincount(flat_l, minlength=num_classes).double()
        sq_sums += flat_v.sum(0)
        take = rng.random(flat_l.shape[0]) < point_fraction
        points.append(flat_v[torch.from_numpy(take)].float().numpy())
        point_labels.append(flat_l[torch.from_numpy(take)].numpy())
    pts = np.concatenate(points)
    pl = np.concatenate(point_labels)
    # class-balanced subsample: small parts (eyes, lips) stay visible next to the background
    present = np.unique(pl)
    per_class = max(1, max_points // max(len(present), 1))
    keep = np.concatenate([rng.permutation(np.flatnonzero(pl == c))[:per_class] for c in present]) \
        if len(pl) else np.zeros(0, dtype=np.int64)
    pts, pl = pts[keep], pl[keep]
    return {"sums": sums, "counts": counts, "global_mean": sq_sums / counts.sum(), "points": pts,
            "point_labels": pl, "scale": k + 1, "space": space, "dims": int(sums.shape[1])}


def cosine_matrix(vectors: np.ndarray) -> np.ndarray:
    n = np.linalg.norm(vectors, axis=1, keepdims=True)
    u = vectors / np.maximum(n, 1e-12)
    return np.clip(u @ u.T, -1.0, 1.0)


def tsne(x: np.ndarray, perplexity: float = 30.0, iterations: int = 750, seed: int = 0) -> np.ndarray:
    """2-D t-SNE embedding of ``x`` ``[N, D]`` with scikit-learn's ``TSNE`` (Barnes-Hut, PCA initialisation),
    deterministic for a given ``seed``. It runs on one thread: the same result whatever the core count, and on
    a busy shared CPU scikit-learn's OpenMP threads wait for each other (1,500 points: ~3.5 s on one thread,
    10-30 s on two). ``perplexity`` is lowered to ``(N - 1) / 3`` for small samples;
    ``iterations`` is at least 250 (scikit-learn's early-exaggeration phase). Fewer than 5 points: zeros."""
    from sklearn.manifold import TSNE
    from threadpoolctl import threadpool_limits

    x = np.asarray(x, dtype=np.float64)
    n = x.shape[0]
    if n < 5:
        return np.zeros((n, 2))
    model = TSNE(n_components=2, perplexity=min(perplexity, (n - 1) / 3), max_iter=max(int(iterations), 250),
                 init="pca", learning_rate="auto", random_state=seed, n_jobs=1)
    with threadpool_limits(limits=1):  # also the Barnes-Hut gradient, which ignores n_jobs
        return model.fit_transform(x).astype(np.float64)


def _plot_heatmap(cos: np.ndarray, names: list[str], path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    k = len(names)
    fig, ax = plt.subplots(figsize=(max(5, 0.45 * k + 2), max(4.5, 0.45 * k + 1.5)), dpi=110)
    im = ax.imshow(cos, cmap="viridis", vmin=min(0.0, float(cos.min())), vmax=1.0)
    ax.set_xticks(range(k), names, rotation=60, ha="right", fontsize=8)
    ax.set_yticks(range(k), names, fontsize=8)
    if k <= 24:
        for i in range(k):
            for j in range(k):
                ax.text(j, i, f"{cos[i, j]:.2f}", ha="center", va="center", fontsize=6,
                        color="white" if cos[i, j] < 0.6 else "black")
    ax.set_title(title, fontsize=10)
    fig.colorbar(im, ax=ax, fraction=0.046, pad=0.04)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def _plot_scatter(y: np.ndarray, lab: np.ndarray, names: list[str], palette: list, path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 6), dpi=110)
    for c in np.unique(lab):
        m = lab == c
        col = np.asarray(palette[c]) / 255.0 if c < len(palette) else None
        ax.scatter(y[m, 0], y[m, 1], s=6, color=col, label=names[c], alpha=0.8, edgecolors="none")
    ax.legend(fontsize=7, markerscale=2, loc="center left", bbox_to_anchor=(1.0, 0.5))
    ax.set_xticks([])
    ax.set_yticks([])
    ax.set_title(title, fontsize=10)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def analyze_semantic_vectors(model: str | os.PathLike, dataset_spec: dict[str, Any] | None, out: str | os.PathLike, *,
                             num_images: int = 100, scale: int = -1, space: str = "features",
                             batch_size: int = 8, device: str = "auto", seed: int = 0,
                             max_points: int = 1500, tsne_iterations: int = 750) -> dict[str, Any]:
    """``semsynth analyze semantic-vectors``: writes ``semantic_vectors.json``, ``cosine_heatmap.png`` and
    ``tsne.png`` into ``out``; returns the JSON content. ``dataset_spec`` None: the model's training data
    (as recorded in its config.json), validation split."""
    from .data import build_dataset
    from .inference import Synthesizer

    for flag, value in (("--num", num_images), ("--points", max_points), ("--batch-size", batch_size)):
        if not isinstance(value, int) or value < 1:
            raise SemsynthError(f"{flag} {value}: must be >= 1")
    syn = Synthesizer.from_pretrained(model, device)
    spec = dict(dataset_spec or syn.config.get("data") or {"name": syn.info.name})
    spec["split"] = spec.get("split") if dataset_spec and "split" in dataset_spec else "val"
    ds = build_dataset(spec)
    info = syn.info
    if ds.info.num_classes != info.num_classes:
        raise SemsynthError(f"the dataset has {ds.info.num_classes} classes, the model {info.num_classes}; analyse "
                            f"the model on the dataset it was trained on ({info.name})")
    if num_images < 1:
        raise SemsynthError(f"--num {num_images}: must be >= 1")
    n = min(num_images, len(ds))
    labels = torch.stack([ds[i]["label"] for i in range(n)])
    h, w = syn.resolution
    if tuple(labels.shape[-2:]) != (h, w):
        labels = F.interpolate(labels[:, None].float(), size=(h, w), mode="nearest")[:, 0].long()
    stats = collect_semantic_vectors(syn.G, labels, info.num_classes, scale=scale, space=space,
                                     use_instance=info.has_instance, batch_size=batch_size, max_points=max_points,
                                     seed=seed, device=syn.device)
    present = [c for c in range(info.num_classes) if stats["counts"][c] > 0]
    means = (stats["sums"][present] / stats["counts"][present, None]).numpy()
    names = [info.class_names[c] for c in present]
    cos = cosine_matrix(means)
    cos_c = cosine_matrix(means - stats["global_mean"].numpy()[None])
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    matrix, label = (cos_c, "centered ") if space == "routing" else (cos, "")
    _plot_heatmap(matrix, names, out / "cosine_heatmap.png",
                  f"{label}cosine similarity of mean semantic vectors (scale {stats['scale']}, {space}, "
                  f"{stats['dims']}-d, {n} images)")
    y = tsne(stats["points"].astype(np.float64), iterations=tsne_iterations, seed=seed)
    _plot_scatter(y, stats["point_labels"], info.class_names, info.palette, out / "tsne.png",
                  f"t-SNE of {len(y)} sampled semantic vectors (scale {stats['scale']}, {space})")
    result = {
        "model": str(model), "dataset": info.name, "images": n, "scale": stats["scale"], "space": space,
        "dims": stats["dims"], "classes": names, "pixels": [int(stats["counts"][c]) for c in present],
        "cosine": np.round(cos, 5).tolist(), "cosine_centered": np.round(cos_c, 5).tolist(),
        "mean_vectors": np.round(means, 6).tolist(),
        "pairs": {f"{a}/{b}": {"cosine": round(float(cos[names.index(a), names.index(b)]), 5),
                               "cosine_centered": round(float(cos_c[names.index(a), names.index(b)]), 5)}
                  for a, b in _interesting_pairs(names)},
        "files": {"heatmap": "cosine_heatmap.png", "tsne": "tsne.png"},
    }
    (out / "semantic_vectors.json").write_text(json.dumps(result, indent=1), encoding="utf-8")
    return result


def _interesting_pairs(names: list[str]) -> list[tuple[str, str]]:
    """Left/right and upper/lower twins, and the pairs the paper discusses, when present."""
    pairs = [("l_eye", "r_eye"), ("u_lip", "l_lip"), ("skin", "nose"), ("l_brow", "r_brow"), ("l_ear", "r_ear"),
             ("hair", "l_brow"), ("skin", "hair")]
    return [(a, b) for a, b in pairs if a in names and b in names]

"""`inspector visualize`: the paper's Fig. 5, a t-SNE of feature-difference vectors, on a user's product.

For every token position ``u`` of a test image the model gives the difference vector
``d(:, u) = f(:, u) - f_hat(:, u)`` (``C`` values: the backbone's channels, or 768 for the pixel target).
Labelling rule:

- every token of a *good* test image is **normal**;
- a token of a *defective* image is an **anomaly** when the ground-truth mask covers at least
  ``min_overlap`` (default 50 %) of its footprint (16 x 16 input pixels);
- other tokens of defective images (partly covered, outside the mask, or images without a mask) are left
  out: their label is ambiguous, and the paper's normal positions come from good parts.

A seeded sample (default 600 vectors, 1:1) is reduced to its first 50 principal components (the reference
t-SNE implementations' default step; ``pca_dims=0`` skips it), embedded with sklearn's t-SNE and drawn as
in Fig. 5:
circles normal, triangles anomalies, colour = the predicted anomaly score of the token (the mean of the
anomaly map, as ``inspector evaluate`` scores it, over the token's footprint). Two figures check the
separation without looking: the silhouette of normal vs anomaly in the 2-D embedding ([-1, 1]) and the
AUROC of the vector norm ``||d(:, u)||`` (the paper's anomaly score before upsampling and smoothing).
"""

from __future__ import annotations

import csv
import json
import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from inspector.bundle import build_model, load_checkpoint, model_path
from inspector.data.dataset import Sample, load_dataset, read_mask
from inspector.data.tensors import batches, load_inputs
from inspector.device import resolve_device, set_threads
from inspector.errors import ConfigError, DataError
from inspector.evaluate.metrics import auroc
from inspector.model.adtr import ADTR
from inspector.model.backbone import GRID_STRIDE
from inspector.model.preprocess import Preprocess
from inspector.model.scoring import AnomalyScorer

log = logging.getLogger(__name__)

NORMAL, ANOMALY, EXCLUDED = 0, 1, -1
# Principal components kept before the t-SNE, as in the reference implementations: van der Maaten's
# tsne.py and bhtsne reduce to 50 by default (sklearn's TSNE documentation suggests the same when the
# number of features is very high).
PCA_DIMS = 50


@dataclass(frozen=True)
class Tokens:
    """Token-level data of a set of images: ``vectors (N, C)`` float32, ``labels (N,)`` 0/1, ``scores (N,)``."""

    vectors: np.ndarray
    labels: np.ndarray
    scores: np.ndarray


def token_labels(mask: np.ndarray | None, grid: tuple[int, int], min_overlap: float) -> np.ndarray:
    """Labels ``grid`` = (rows, cols) int8 of one image's tokens from its mask ``bool (H, W)``, H = rows * 16.

    ``mask=None`` means a good image (all NORMAL). Otherwise ANOMALY where the mask covers at least
    ``min_overlap`` of the token's footprint, EXCLUDED elsewhere.
    """
    gh, gw = grid
    if mask is None:
        return np.full((gh, gw), NORMAL, dtype=np.int8)
    if mask.shape[0] % gh or mask.shape[1] % gw:
        raise DataError(f"mask of shape {mask.shape} does not tile into a {gh}x{gw} token grid")
    k0, k1 = mask.shape[0] // gh, mask.shape[1] // gw
    coverage = mask.reshape(gh, k0, gw, k1).mean(axis=(1, 3))
    return np.where(coverage >= min_overlap, ANOMALY, EXCLUDED).astype(np.int8)


@torch.no_grad()
def collect_tokens(model: ADTR, preprocess: Preprocess, samples: tuple[Sample, ...] | list[Sample],
                   device: torch.device, min_overlap: float = 0.5, batch: int = 16) -> Tokens:
    """Difference vectors, labels and map scores of every labelled token of ``samples``."""
    if model.cfg.tile_hw is not None:
        raise ConfigError("the t-SNE labels tokens by the mask over one model input; a tiled product "
                          "(model.tile_size) has many per image and is not supported")
    model = model.to(device).eval()
    scorer = AnomalyScorer.for_model(model).to(device)
    size, grid = model.cfg.size_hw, model.cfg.grid_hw
    # A defective image without a mask cannot say which of its tokens are anomalous.
    usable = [s for s in samples if s.label == 0 or s.mask_path is not None]
    vecs, labs, scores = [], [], []
    for sl in batches(len(usable), batch):
        chunk = usable[sl]
        target, recon = model(load_inputs((s.path for s in chunk), preprocess).to(device))
        # d in the backbone's own feature units, as in the paper: when the model standardises its
        # targets, scale the difference back by each channel's std (an identity otherwise).
        d = ((target - recon) * model.target_std).float()  # (B, C, rows, cols)
        _, amap = scorer(target, recon)  # (B, H, W)
        tok_score = F.avg_pool2d(amap[:, None], kernel_size=GRID_STRIDE)[:, 0]  # (B, rows, cols)
        for i, s in enumerate(chunk):
            mask = read_mask(s.mask_path, size) if s.label == 1 else None
            lab = token_labels(mask, grid, min_overlap).reshape(-1)
            keep = lab != EXCLUDED
            vecs.append(d[i].flatten(1).T.cpu().numpy()[keep])
            labs.append(lab[keep])
            scores.append(tok_score[i].flatten().cpu().numpy()[keep])
    if not vecs:
        raise DataError("no test images with labels usable for the t-SNE (good images or defective ones with masks)")
    return Tokens(np.concatenate(vecs).astype(np.float32), np.concatenate(labs).astype(np.int64),
                  np.concatenate(scores).astype(np.float32))


def sample_balanced(labels: np.ndarray, n: int, anomaly_share: float, seed: int) -> np.ndarray:
    """Indices of a seeded sample of ``n`` tokens with ``round(n * anomaly_share)`` anomalies.

    Raises DataError, naming what is available, when either class has too few tokens.
    """
    if n < 4:
        raise ConfigError(f"--n {n}: at least 4 vectors are needed for a t-SNE")
    if not 0.0 < anomaly_share < 1.0:
        raise ConfigError(f"anomaly share {anomaly_share} must be strictly between 0 and 1")
    n_anom = int(round(n * anomaly_share))
    n_norm = n - n_anom
    normal, anomal = np.flatnonzero(labels == NORMAL), np.flatnonzero(labels == ANOMALY)
    if len(normal) < n_norm or len(anomal) < n_anom:
        raise DataError(
            f"asked for {n_norm} normal + {n_anom} anomalous tokens but the test set has {len(normal)} normal "
            f"and {len(anomal)} anomalous ones; pass a smaller --n (at most "
            f"{int(min(len(normal) / (1 - anomaly_share), len(anomal) / anomaly_share))})"
        )
    rng = np.random.default_rng(seed)
    pick = np.concatenate([rng.choice(normal, n_norm, replace=False), rng.choice(anomal, n_anom, replace=False)])
    return np.sort(pick)


def _check_pca_dims(dims: int) -> None:
    if dims < 0:
        raise ConfigError(f"--pca-dims {dims} must be >= 0 (0: no PCA step)")


def reduce_pca(vectors: np.ndarray, dims: int) -> tuple[np.ndarray, float]:
    """The first ``dims`` principal components of ``vectors (n, C)``, and the share of variance they keep.

    Deterministic (a full SVD). ``dims == 0`` or ``dims >= min(n, C)`` returns the vectors unchanged (share
    1.0); ``dims < 0`` raises ConfigError. Vectors without variance keep share 1.0.
    """
    _check_pca_dims(dims)
    if dims == 0 or dims >= min(vectors.shape):
        return vectors, 1.0
    if not np.any(vectors.var(axis=0) > 0):  # identical vectors: every component is zero
        return np.zeros((len(vectors), dims)), 1.0
    from sklearn.decomposition import PCA

    pca = PCA(n_components=dims, svd_solver="full")
    reduced = pca.fit_transform(vectors.astype(np.float64))
    return reduced, min(float(np.sum(pca.explained_variance_ratio_)), 1.0)


def embed(vectors: np.ndarray, seed: int, perplexity: float = 30.0) -> np.ndarray:
    """t-SNE of ``vectors (n, C)`` to ``(n, 2)`` (sklearn, PCA init, seeded)."""
    from sklearn.manifold import TSNE

    perplexity = min(perplexity, (len(vectors) - 1) / 3)
    tsne = TSNE(n_components=2, perplexity=perplexity, init="pca", learning_rate="auto", random_state=seed)
    return tsne.fit_transform(vectors.astype(np.float64)).astype(np.float32)


def separation(embedding: np.ndarray, vectors: np.ndarray, labels: np.ndarray) -> dict[str, float]:
    """Silhouette of normal vs anomaly in the embedding, and the AUROC of the vector norm."""
    from sklearn.metrics import silhouette_score

    return {
        "silhouette": float(silhouette_score(embedding, labels)),
        "norm_auroc": auroc(labels, np.linalg.norm(vectors, axis=1)),
    }


def plot(embedding: np.ndarray, labels: np.ndarray, scores: np.ndarray, path: Path, title: str) -> None:
    """Fig. 5: circles normal, triangles anomalies, colour = predicted anomaly score, with a colour bar."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.colors import Normalize
    from matplotlib.lines import Line2D

    norm = Normalize(vmin=float(scores.min()), vmax=float(scores.max()))
    fig, ax = plt.subplots(figsize=(6.4, 5.4), dpi=120)
    for lab, marker in ((NORMAL, "o"), (ANOMALY, "^")):
        sel = labels == lab
        sc = ax.scatter(embedding[sel, 0], embedding[sel, 1], c=scores[sel], cmap="jet", norm=norm, marker=marker,
                        s=22, edgecolors="k", linewidths=0.25)
    fig.colorbar(sc, ax=ax, label="predicted anomaly score (token's map value)")
    # Grey legend markers: the scatter's own would take the colour of an arbitrary point.
    handles = [Line2D([], [], marker=m, linestyle="", color="0.6", markeredgecolor="k", markeredgewidth=0.3,
                      label=f"{name} ({int((labels == lab).sum())})")
               for lab, m, name in ((NORMAL, "o", "normal"), (ANOMALY, "^", "anomaly"))]
    ax.legend(handles=handles, loc="best", fontsize=8)
    ax.set_title(title, fontsize=9, wrap=True)
    ax.set_xticks([])
    ax.set_yticks([])
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)


def visualize(product: str, data: str | Path, home: str | Path | None = None, n: int = 600,
              out: str | Path = "tsne.png", seed: int = 0, min_overlap: float = 0.5, anomaly_share: float = 0.5,
              device: str = "auto", threads: int = 0, pca_dims: int = PCA_DIMS) -> dict[str, Any]:
    """Write ``out`` (PNG), and beside it ``.csv`` (x, y, label, score) and ``.json``; returns the JSON content.

    ``pca_dims``: principal components the vectors are reduced to before the t-SNE (0: none).
    """
    if not 0.0 < min_overlap <= 1.0:
        raise ConfigError(f"--min-overlap {min_overlap} must be in (0, 1]")
    _check_pca_dims(pca_dims)  # before the slow part
    set_threads(threads)
    t0 = time.perf_counter()
    ckpt = load_checkpoint(model_path(home, product))
    model = build_model(ckpt)
    mean, std = ckpt.mean_std
    ds = load_dataset(data)
    tokens = collect_tokens(model, Preprocess(model.cfg.size_hw, mean, std), ds.test, resolve_device(device),
                            min_overlap)
    pick = sample_balanced(tokens.labels, n, anomaly_share, seed)
    vectors, labels, scores = tokens.vectors[pick], tokens.labels[pick], tokens.scores[pick]
    t1 = time.perf_counter()
    reduced, kept = reduce_pca(vectors, pca_dims)
    emb = embed(reduced, seed)
    t_tsne = time.perf_counter() - t1
    sep = separation(emb, vectors, labels)
    out = Path(out)
    plot(emb, labels, scores, out, f"{product}: t-SNE of {len(pick)} feature-difference vectors d = f - f_hat"
         f"{f' (first {reduced.shape[1]} PCs)' if reduced.shape[1] < vectors.shape[1] else ''}\n"
         f"silhouette {sep['silhouette']:.3f}, vector-norm AUROC {sep['norm_auroc']:.4f}")
    with open(out.with_suffix(".csv"), "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["x", "y", "label", "score"])
        w.writerows((f"{x:.5f}", f"{y:.5f}", int(lab), f"{s:.6g}") for (x, y), lab, s in zip(emb, labels, scores, strict=True))
    result = {
        "n": int(len(pick)),
        "n_normal": int((labels == NORMAL).sum()),
        "n_anomaly": int((labels == ANOMALY).sum()),
        **sep,
        "score_auroc": auroc(labels, scores),
        "available": {"normal": int((tokens.labels == NORMAL).sum()), "anomaly": int((tokens.labels == ANOMALY).sum())},
        "rule": f"anomaly: token footprint covered >= {min_overlap:.0%} by the mask; normal: tokens of good images",
        "vector_dim": int(vectors.shape[1]),
        "tsne_input_dim": int(reduced.shape[1]),
        "pca_explained_variance": kept,
        "product": product,
        "checkpoint_sha256": ckpt.sha256,
        "data": str(Path(data).resolve()),
        "seed": seed,
        "seconds": time.perf_counter() - t0,
        "tsne_seconds": t_tsne,
        "png": str(out),
    }
    out.with_suffix(".json").write_text(json.dumps(result, indent=2) + "\n")
    return result

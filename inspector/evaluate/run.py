"""`inspector evaluate`: image AUROC, pixel AUROC and pixel AUPRO on a labelled test split.

Pixel metrics are computed at each mask's own resolution: the anomaly map is resized (bilinear) to the
mask, never the mask to the map, so a model whose input squashes or shrinks the part cannot be flattered
by a coarser ground truth. A good image without a mask counts at its own image size. Metrics come from
``metrics.py`` (sklearn ROC).
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import torch

from inspector.bundle import build_model, load_checkpoint, model_path
from inspector.data.dataset import Sample, load_dataset, read_image, read_mask
from inspector.data.tensors import batches
from inspector.device import resolve_device, set_threads
from inspector.errors import DataError
from inspector.evaluate.metrics import aupro, auroc, pixel_auroc
from inspector.evaluate.overlay import draw_mask_outline, overlay
from inspector.model.adtr import ADTR
from inspector.model.graph import InspectionModel
from inspector.model.preprocess import Preprocess
from inspector.model.scoring import AnomalyScorer
from inspector.model.tiling import Stitch

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Predictions:
    """Scores ``(N,)``, one anomaly map per image (at the model's input size; with tiling at the image's
    own size), and each image's own (H, W)."""

    samples: tuple[Sample, ...]
    scores: np.ndarray
    maps: Sequence[np.ndarray]
    seconds: float
    sizes: tuple[tuple[int, int], ...] = ()


@torch.no_grad()
def predict(model: ADTR, preprocess: Preprocess, samples: list[Sample] | tuple[Sample, ...],
            device: torch.device, batch: int = 16) -> Predictions:
    """Score every sample (read, preprocess, backbone, ADTR, scoring, stitching of tiles) through the
    served graph's own modules; consecutive images of one size share a batch. Timing covers all of it."""
    model = model.to(device).eval()
    stitch = Stitch(preprocess.roi, preprocess.tile, preprocess.overlap, None) if preprocess.tile else None
    graph = InspectionModel(preprocess, model, AnomalyScorer.for_model(model), stitch).to(device).eval()
    scores, maps, sizes = [], [], []
    t0 = time.perf_counter()
    for s in batches(len(samples), batch):
        frames = [read_image(p.path) for p in samples[s]]
        sizes += [tuple(f.shape[:2]) for f in frames]
        for group in _same_size_runs(frames):
            score, amap = graph(torch.from_numpy(np.stack(group)).to(device))
            scores.append(score.float().cpu())
            maps += list(amap.float().cpu().numpy())
    seconds = time.perf_counter() - t0
    if not scores:
        raise DataError("no images to score")
    return Predictions(tuple(samples), torch.cat(scores).numpy(), maps, seconds, tuple(sizes))


def _same_size_runs(frames: list[np.ndarray]) -> list[list[np.ndarray]]:
    runs: list[list[np.ndarray]] = []
    for f in frames:
        if runs and runs[-1][0].shape == f.shape:
            runs[-1].append(f)
        else:
            runs.append([f])
    return runs


def resize_map(amap: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """An anomaly map ``(h, w)`` resized bilinearly (pixel centres aligned, as the scorer does) to ``size``."""
    if amap.shape == tuple(size):
        return amap
    return cv2.resize(amap.astype(np.float32), (size[1], size[0]), interpolation=cv2.INTER_LINEAR)


def masks_and_maps(pred: Predictions) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """Every sample's mask at its own resolution and its map resized to it (images without a size
    recorded count at the map's size)."""
    masks, maps = [], []
    for i, s in enumerate(pred.samples):
        own = pred.sizes[i] if pred.sizes else pred.maps[i].shape
        m = read_mask(s.mask_path, None if s.mask_path is not None else own)
        masks.append(m)
        maps.append(resize_map(pred.maps[i], m.shape))
    return masks, maps


def compute_metrics(pred: Predictions) -> dict[str, Any]:
    """Overall and per-defect-type metrics of predictions on a labelled split, pixels at mask resolution."""
    labels = np.array([s.label for s in pred.samples])
    masks, maps = masks_and_maps(pred)
    has_mask = np.array([s.label == 0 or s.mask_path is not None for s in pred.samples])
    types = np.array([s.defect_type for s in pred.samples])

    def block(sel: np.ndarray) -> dict[str, Any]:
        pix = np.flatnonzero(sel & has_mask)
        pm, pa = [masks[i] for i in pix], [maps[i] for i in pix]
        return {
            "image_auroc": auroc(labels[sel], pred.scores[sel]),
            "pixel_auroc": pixel_auroc(pm, pa) if len(pix) else float("nan"),
            "pixel_aupro": aupro(pm, pa) if len(pix) else float("nan"),
            "n_good": int((labels[sel] == 0).sum()),
            "n_defective": int((labels[sel] == 1).sum()),
        }

    out = block(np.ones(len(labels), bool))
    good = labels == 0
    out["per_type"] = {str(t): block(good | (types == t)) for t in sorted(set(types[labels == 1]))}
    return out


def evaluate(product: str, data: str | Path, home: str | Path | None = None, device: str = "auto",
             json_out: str | Path | None = None, images_dir: str | Path | None = None, threads: int = 0,
             n_images: int = 12) -> dict[str, Any]:
    """Evaluate the product's trained model on the test split of ``data``; returns the metrics dict."""
    set_threads(threads)
    ckpt = load_checkpoint(model_path(home, product))
    ds = load_dataset(data)
    log.info("%s", ds.summary())
    if not ds.test or all(s.label == 0 for s in ds.test) or all(s.label == 1 for s in ds.test):
        raise DataError(f"{data}: evaluation needs test images of both kinds, good and defective; found {ds.summary()}")
    model = build_model(ckpt)
    mean, std = ckpt.mean_std
    dev = resolve_device(device)
    cfg = model.cfg
    pred = predict(model, Preprocess(cfg.size_hw, mean, std, tile=cfg.tile_hw, overlap=cfg.tile_overlap), ds.test, dev)
    result = compute_metrics(pred)
    result.update({
        "product": product,
        "checkpoint_sha256": ckpt.sha256,
        "data": str(Path(data).resolve()),
        "device": str(dev),
        "ms_per_image": 1000 * pred.seconds / len(pred.samples),
    })
    if json_out:
        Path(json_out).parent.mkdir(parents=True, exist_ok=True)
        Path(json_out).write_text(json.dumps(_jsonable(result), indent=2) + "\n")
    if images_dir:
        write_overlays(pred, Path(images_dir), n_images)
    return result


def write_overlays(pred: Predictions, out: Path, n: int = 12) -> list[Path]:
    """Heat-map overlays of a sample of good and defective images, named with their scores."""
    out.mkdir(parents=True, exist_ok=True)
    values = np.concatenate([m.ravel() for m in pred.maps])
    vmin, vmax = float(np.percentile(values, 1)), float(np.percentile(values, 99.9))
    good = [i for i, s in enumerate(pred.samples) if s.label == 0]
    bad = [i for i, s in enumerate(pred.samples) if s.label == 1]
    rng = np.random.default_rng(0)
    pick = list(rng.permutation(good)[: n // 3]) + list(rng.permutation(bad)[: n - n // 3])
    paths = []
    for i in pick:
        s = pred.samples[i]
        h, w = pred.maps[i].shape
        img = cv2.resize(read_image(s.path), (w, h), interpolation=cv2.INTER_AREA)
        vis = overlay(img, pred.maps[i], vmin, vmax, label=f"{s.defect_type} score={pred.scores[i]:.3f}")
        if s.mask_path is not None:
            vis = draw_mask_outline(vis, read_mask(s.mask_path, (h, w)))
        p = out / f"{pred.scores[i]:08.4f}_{s.defect_type}_{s.path.stem}.png"
        cv2.imwrite(str(p), vis)
        paths.append(p)
    return paths


def _jsonable(x: Any) -> Any:
    if isinstance(x, dict):
        return {k: _jsonable(v) for k, v in x.items()}
    if isinstance(x, float) and np.isnan(x):
        return None
    if isinstance(x, np.floating | np.integer):
        return x.item()
    return x

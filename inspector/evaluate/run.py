"""`inspector evaluate`: image AUROC, pixel AUROC and pixel AUPRO on a labelled test split.

Maps are compared with the ground truth at the model's input size (masks are resized with nearest
neighbour). Metrics come from ``metrics.py`` (sklearn ROC).
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import torch

from inspector.bundle import build_model, load_checkpoint, model_path
from inspector.data.dataset import Sample, load_dataset, read_image, read_mask
from inspector.data.tensors import batches, load_inputs
from inspector.device import resolve_device, set_threads
from inspector.errors import DataError
from inspector.evaluate.metrics import aupro, auroc, pixel_auroc
from inspector.evaluate.overlay import draw_mask_outline, overlay
from inspector.model.adtr import ADTR
from inspector.model.preprocess import Preprocess
from inspector.model.scoring import AnomalyScorer

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Predictions:
    """Scores ``(N,)`` and anomaly maps ``(N, S, S)`` of a list of samples, in order."""

    samples: tuple[Sample, ...]
    scores: np.ndarray
    maps: np.ndarray
    seconds: float


@torch.no_grad()
def predict(model: ADTR, preprocess: Preprocess, samples: list[Sample] | tuple[Sample, ...],
            device: torch.device, batch: int = 16) -> Predictions:
    """Score every sample (read, preprocess, backbone, ADTR, scoring). Timing covers all of it."""
    model = model.to(device).eval()
    scorer = AnomalyScorer.for_config(model.cfg).to(device)
    scores, maps = [], []
    t0 = time.perf_counter()
    for s in batches(len(samples), batch):
        x = load_inputs((p.path for p in samples[s]), preprocess).to(device)
        score, amap = scorer(*model(x))
        scores.append(score.float().cpu())
        maps.append(amap.float().cpu())
    seconds = time.perf_counter() - t0
    if not scores:
        raise DataError("no images to score")
    return Predictions(tuple(samples), torch.cat(scores).numpy(), torch.cat(maps).numpy(), seconds)


def compute_metrics(pred: Predictions) -> dict[str, Any]:
    """Overall and per-defect-type metrics of predictions on a labelled split."""
    size = pred.maps.shape[1:]
    labels = np.array([s.label for s in pred.samples])
    masks = np.stack([read_mask(s.mask_path, size) for s in pred.samples])
    has_mask = np.array([s.label == 0 or s.mask_path is not None for s in pred.samples])
    types = np.array([s.defect_type for s in pred.samples])

    def block(sel: np.ndarray) -> dict[str, Any]:
        pix = sel & has_mask
        return {
            "image_auroc": auroc(labels[sel], pred.scores[sel]),
            "pixel_auroc": pixel_auroc(masks[pix], pred.maps[pix]) if pix.any() else float("nan"),
            "pixel_aupro": aupro(masks[pix], pred.maps[pix]) if pix.any() else float("nan"),
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
    pred = predict(model, Preprocess(model.cfg.input_size, mean, std), ds.test, dev)
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
    size = pred.maps.shape[1]
    vmin, vmax = float(np.percentile(pred.maps, 1)), float(np.percentile(pred.maps, 99.9))
    good = [i for i, s in enumerate(pred.samples) if s.label == 0]
    bad = [i for i, s in enumerate(pred.samples) if s.label == 1]
    rng = np.random.default_rng(0)
    pick = list(rng.permutation(good)[: n // 3]) + list(rng.permutation(bad)[: n - n // 3])
    paths = []
    for i in pick:
        s = pred.samples[i]
        img = cv2.resize(read_image(s.path), (size, size), interpolation=cv2.INTER_AREA)
        vis = overlay(img, pred.maps[i], vmin, vmax, label=f"{s.defect_type} score={pred.scores[i]:.3f}")
        if s.mask_path is not None:
            vis = draw_mask_outline(vis, read_mask(s.mask_path, (size, size)))
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

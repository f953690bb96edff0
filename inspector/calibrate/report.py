"""The calibration report a quality engineer reads and signs: ``calibration/<product>.report.png``.

Top row: histograms of good and defective image scores with the threshold; the ROC (sklearn) with the
operating point; the record's promises in words. Bottom row: heat-map overlays of the images whose
scores lie closest to the threshold, where a wrong decision is most likely. Drawn with matplotlib's
Agg backend (no display needed).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import cv2
import numpy as np

from inspector.calibrate import rule
from inspector.calibrate.record import CalibrationRecord
from inspector.data.dataset import read_image
from inspector.evaluate.overlay import draw_mask_outline, overlay

if TYPE_CHECKING:
    from inspector.calibrate.images import Scored

N_OVERLAYS = 4


def _rate_line(name: str, r) -> str:
    if r is None:
        return f"{name}: no promise (no defective images were given)"
    return f"{name}: {r.estimate:.3f}  95% CI [{r.lower:.3f}, {r.upper:.3f}]  ({r.count}/{r.n})"


def _histogram(ax, record: CalibrationRecord, good: np.ndarray, bad: np.ndarray) -> None:
    both = np.concatenate([good, bad, [record.image_threshold]])
    bins = np.linspace(both.min(), both.max(), 40)
    ax.hist(good, bins=bins, alpha=0.6, color="tab:green", label=f"good (n={good.size})")
    if bad.size:
        ax.hist(bad, bins=bins, alpha=0.6, color="tab:red", label=f"defective (n={bad.size})")
    ax.axvline(record.image_threshold, color="k", ls="--", label=f"threshold {record.image_threshold:.4g}")
    ax.set_xlabel("image anomaly score")
    ax.set_ylabel("images")
    ax.set_title(f"scores ({record.policy} policy)")
    ax.legend(fontsize=8)


def _roc(ax, record: CalibrationRecord, good: np.ndarray, bad: np.ndarray) -> None:
    ax.set_title("ROC")
    if not bad.size:
        ax.text(0.5, 0.5, "no defective images:\nthe ROC needs both classes", ha="center", va="center")
        ax.set_axis_off()
        return
    from sklearn.metrics import roc_auc_score, roc_curve

    y = np.r_[np.zeros(good.size), np.ones(bad.size)]
    s = np.r_[good, bad].astype(np.float64)
    fpr, tpr, _ = roc_curve(y, s)
    ax.plot(fpr, tpr, color="tab:blue", label=f"AUROC {roc_auc_score(y, s):.3f}")
    op_fpr = float(rule.fails(good, record.image_threshold).mean())
    op_tpr = float(rule.fails(bad, record.image_threshold).mean())
    ax.plot([op_fpr], [op_tpr], "ko", label=f"operating point\nFRR {op_fpr:.3f}, escape {1 - op_tpr:.3f}")
    ax.plot([0, 1], [0, 1], color="0.7", lw=0.8)
    ax.set_xlabel("false-reject rate (good images failed)")
    ax.set_ylabel("detection rate (defective images failed)")
    ax.legend(fontsize=8, loc="lower right")


def _summary(ax, record: CalibrationRecord) -> None:
    ax.set_axis_off()
    lines = [
        f"product {record.product}   calibration {record.id}",
        f"model sha256 {record.model_sha256[:16]}...",
        f"policy {record.policy}: {', '.join(f'{k}={v}' for k, v in record.parameters.items() if v is not None)}",
        f"image threshold {record.image_threshold:.6g}",
        f"pixel threshold {record.pixel_threshold:.6g} ({record.pixel_policy}), "
        f"min region {record.min_region_area} px at {record.mask_size[1]}x{record.mask_size[0]}",
        f"n good {record.n_good}, n defective {record.n_defective}",
        _rate_line("expected FRR", record.expected_frr),
        _rate_line("expected escape rate", record.expected_escape),
        f"backend {record.backend.get('backend', '?')}",
    ]
    ax.text(0.0, 1.0, "\n".join(lines), va="top", ha="left", family="monospace", fontsize=7.5)


def near_threshold(scores: np.ndarray, threshold: float, k: int = N_OVERLAYS) -> np.ndarray:
    """Indices of the ``k`` scores closest to ``threshold``, closest first."""
    return np.argsort(np.abs(np.asarray(scores, dtype=np.float64) - threshold), kind="stable")[:k]


def _as_seen(img: np.ndarray, frame: tuple[int, int], roi: list[int] | None) -> np.ndarray:
    """The part of an image the anomaly map covers: resized to the frame, cropped to the ROI."""
    if img.shape[:2] != tuple(frame):
        img = cv2.resize(img, (frame[1], frame[0]), interpolation=cv2.INTER_AREA)
    if roi:
        x, y, w, h = roi
        img = img[y : y + h, x : x + w]
    return img


def write_report(path: Path, record: CalibrationRecord, scored: Scored) -> Path:
    """Draw the report PNG at ``path`` and return it."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    labels = scored.labels
    good, bad = scored.scores[labels == 0], scored.scores[labels == 1]
    fig = plt.figure(figsize=(15, 8.5), dpi=100)
    grid = fig.add_gridspec(2, max(3, N_OVERLAYS), height_ratios=[1.0, 1.0])
    _histogram(fig.add_subplot(grid[0, 0]), record, good, bad)
    _roc(fig.add_subplot(grid[0, 1]), record, good, bad)
    _summary(fig.add_subplot(grid[0, 2:]), record)
    vmin = float(np.quantile(scored.maps, 0.01)) if scored.maps is not None else 0.0
    vmax = max(record.pixel_threshold * 1.5, vmin + 1e-6)
    for j, i in enumerate(near_threshold(scored.scores, record.image_threshold)):
        s = scored.samples[i]
        ax = fig.add_subplot(grid[1, j])
        img = _as_seen(read_image(s.path), scored.frame, scored.roi)
        over = overlay(img, scored.maps[i], vmin, vmax)
        if scored.has_mask[i] and s.label == 1:
            over = draw_mask_outline(over, scored.masks[i])
        verdict = "FAIL" if rule.fails(scored.scores[i], record.image_threshold) else "pass"
        ax.imshow(cv2.cvtColor(over, cv2.COLOR_BGR2RGB))
        ax.set_title(f"{s.defect_type} {s.path.name}\nscore {scored.scores[i]:.4g} -> {verdict}", fontsize=8)
        ax.set_axis_off()
    fig.suptitle(f"inspector calibration: {record.product}", fontsize=12)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)
    return path

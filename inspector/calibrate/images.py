"""Calibration images: which images a product's thresholds may be fitted on, and their scores by a backend.

By default the good images that training held out, found under the checkpoint's ``data.root`` by their
fingerprints; ``--data`` adds every image of another dataset; ``--reviewed`` adds the operators' reviews
(``inspector.reviews``: false rejects as good images, confirmed defects as defective ones with their
masks). Any image whose fingerprint is in the checkpoint's training set is refused by name. Images whose size differs from the backend's frame size
are resized to it (with a warning), as a camera frame would have to be; masks are aligned with the
anomaly maps (frame size, ROI crop, map size).
"""

from __future__ import annotations

import logging
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np

from inspector.bundle import Checkpoint
from inspector.data.dataset import Sample, fingerprint, load_dataset, read_image, read_mask
from inspector.errors import CalibrationError, DataError
from inspector.runtime.base import Backend

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Scored:
    """Images scored by a backend: ``scores (N,)`` float32, ``maps (N, h, w)`` float32 (or None when not
    kept), ``masks (N, h, w)`` bool with ``has_mask (N,)`` (good images count as masked, all False)."""

    samples: tuple[Sample, ...]
    fingerprints: tuple[str, ...]
    scores: np.ndarray
    maps: np.ndarray | None
    masks: np.ndarray | None
    has_mask: np.ndarray
    frame: tuple[int, int]  # (H, W) the backend accepts
    roi: tuple[int, int, int, int] | None = None  # (x, y, w, h) of the frame the maps cover (None: all of it)
    resized: dict[str, int] = field(default_factory=dict)

    @property
    def labels(self) -> np.ndarray:
        return np.array([s.label for s in self.samples], dtype=np.int64)


def _names(samples: list[Sample], limit: int = 20) -> str:
    shown = ", ".join(str(s.path) for s in samples[:limit])
    return shown + (f" ... and {len(samples) - limit} more" if len(samples) > limit else "")


def holdout_samples(root: str | Path, holdout: dict[str, str], required: bool) -> list[Sample]:
    """The held-out good images of a checkpoint (``holdout``: {sha256: name}), found by fingerprint under
    ``root``, its recorded data root."""
    root = Path(root)
    if not holdout:
        if required:
            raise CalibrationError(
                "the model was trained without a hold-out (val_fraction 0), so there are no unseen good "
                "images to calibrate on; give --data with good images the model never trained on"
            )
        return []
    try:
        ds = load_dataset(root)
    except DataError as e:
        if required:
            raise CalibrationError(f"cannot find the training hold-out: {e}; give --data instead") from e
        log.warning("the training hold-out is unavailable (%s); calibrating on --data only", e)
        return []
    found = [s for s in ds.train if fingerprint(s.path) in holdout]
    if len(found) < len(holdout):
        msg = f"only {len(found)} of the {len(holdout)} held-out images are still under {root} unchanged"
        if required and not found:
            raise CalibrationError(msg + "; give --data with good images the model never trained on")
        log.warning("%s; using those", msg)
    return found


def reviewed_samples(home: str | Path | None, product: str) -> list[Sample]:
    """The latest review of each reject as samples: false rejects good (label 0), confirmed defects defective
    (label 1, type ``reviewed_defect``, with the published mask when there was one)."""
    from inspector.reviews import DEFECT_DIR, ReviewStore

    reviews = ReviewStore(home, product).latest()
    if not reviews:
        raise CalibrationError(f"--reviewed: no reviews for product '{product}' yet; review rejects in "
                               "`inspector station` first")
    return [Sample(r.frame, 0, "good") if r.verdict == "false_reject" else Sample(r.frame, 1, DEFECT_DIR, r.mask)
            for r in reviews]


def gather(ckpt: Checkpoint, data: str | Path | None, extra: list[Sample] | None = None
           ) -> tuple[list[Sample], list[str]]:
    """Calibration images (the checkpoint's held-out ones first, then --data, then ``extra``, e.g. reviewed
    ones), de-duplicated by fingerprint, and their fingerprints.

    Raises CalibrationError naming every image that the model trained on.
    """
    samples = holdout_samples(ckpt.data.root, ckpt.fingerprints("holdout"), required=data is None and not extra)
    if data is not None:
        ds = load_dataset(data)
        log.info("--data %s", ds.summary())
        samples += list(ds.train) + list(ds.test)
    samples += list(extra or ())
    out, fps, seen = [], [], set()
    for s in samples:
        fp = fingerprint(s.path)
        if fp not in seen:
            seen.add(fp)
            out.append(s)
            fps.append(fp)
    refuse_overlap(out, fps, ckpt.fingerprints("train"), "the model was trained on them")
    return out, fps


def refuse_overlap(samples: list[Sample], fps: list[str], forbidden: dict[str, str] | set[str], why: str) -> None:
    """CalibrationError naming the samples whose fingerprint is in ``forbidden``."""
    bad = [s for s, fp in zip(samples, fps, strict=True) if fp in forbidden]
    if bad:
        raise CalibrationError(f"{len(bad)} of the {len(samples)} images cannot be used because {why}: {_names(bad)}")


def _fit_frame(img: np.ndarray, frame: tuple[int, int], resized: Counter) -> np.ndarray:
    if img.shape[:2] == frame:
        return img
    resized[f"{img.shape[1]}x{img.shape[0]}"] += 1
    h, w = frame
    interp = cv2.INTER_AREA if img.shape[0] * img.shape[1] > h * w else cv2.INTER_LINEAR
    return cv2.resize(img, (w, h), interpolation=interp)


def _mask(sample: Sample, frame: tuple[int, int], roi: tuple[int, ...] | None, size: tuple[int, int]) -> np.ndarray | None:
    """The sample's mask aligned with the anomaly map: to frame size, ROI crop, then map size."""
    if sample.label == 0:
        return np.zeros(size, dtype=bool)
    if sample.mask_path is None:
        return None
    m = read_mask(sample.mask_path, frame)
    if roi:
        x, y, w, h = roi
        m = m[y : y + h, x : x + w]
    if m.shape == size:
        return m
    return cv2.resize(m.astype(np.uint8), (size[1], size[0]), interpolation=cv2.INTER_NEAREST) > 0


def score(backend: Backend, samples: list[Sample], fps: list[str], roi: tuple[int, int, int, int] | None = None,
          keep_maps: bool = True) -> Scored:
    """Run every sample through ``backend`` in batches of its ``max_batch``; masks aligned with the maps."""
    if not samples:
        raise DataError("no images to score")
    frame = tuple(backend.frame_shape)
    resized: Counter = Counter()
    scores, maps, masks, has = [], [], [], []
    for i in range(0, len(samples), backend.max_batch):
        chunk = samples[i : i + backend.max_batch]
        frames = np.stack([_fit_frame(read_image(s.path), frame, resized) for s in chunk])
        r = backend.infer(frames)
        scores.append(np.asarray(r.score, dtype=np.float32))
        size = tuple(r.anomaly_map.shape[1:])
        if keep_maps:
            maps.append(np.asarray(r.anomaly_map, dtype=np.float32))
            for s in chunk:
                m = _mask(s, frame, roi, size)
                has.append(m is not None)
                masks.append(m if m is not None else np.zeros(size, dtype=bool))
    for size, n in resized.items():
        log.warning("%d image(s) of %s px were resized to the frame size %dx%d px", n, size, frame[1], frame[0])
    return Scored(
        tuple(samples), tuple(fps), np.concatenate(scores),
        np.concatenate(maps) if keep_maps else None,
        np.stack(masks) if keep_maps else None,
        np.array(has, dtype=bool) if keep_maps else np.zeros(len(samples), dtype=bool),
        frame, roi, dict(resized),
    )

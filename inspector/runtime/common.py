"""What every backend shares: the product's bundle and manifest, and the check of incoming frames."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from inspector.bundle import bundle_dir
from inspector.errors import BackendError, CheckpointError
from inspector.manifest import frame_shape, load_manifest, mask_shape
from inspector.runtime.base import Backend

PRECISION_CHOICES = ("auto", "fp32", "fp16", "int8")


@dataclass(frozen=True)
class Bundle:
    """A product's exported bundle: its directory and its manifest."""

    path: Path
    manifest: dict[str, Any]

    @property
    def product(self) -> str:
        return self.manifest["product"]

    @property
    def frame_shape(self) -> tuple[int, int]:
        """(H, W) of the frames the graph accepts."""
        return frame_shape(self.manifest)

    @property
    def mask_shape(self) -> tuple[int, int]:
        """(h, w) of the anomaly map."""
        return mask_shape(self.manifest)


def open_bundle(home: str | Path | None, product: str) -> Bundle:
    """The exported bundle of ``product``; BackendError naming the command to run when it is not exported."""
    path = bundle_dir(home, product)
    try:
        return Bundle(path, load_manifest(path))
    except CheckpointError as e:
        raise BackendError(str(e)) from e


def batch_limit(manifest_max: int, asked: int | None) -> int:
    """The backend's max batch: what was asked for, which may not exceed what the graph was exported for."""
    if asked is None:
        return manifest_max
    if not 1 <= asked <= manifest_max:
        raise BackendError(f"max batch {asked} is outside 1..{manifest_max}, the range the model was exported for; "
                           f"export again with --max-batch {asked} for more")
    return asked


def check_frames(frames: np.ndarray, frame_shape: tuple[int, int], max_batch: int, backend: str) -> np.ndarray:
    """``frames`` as a C-contiguous ``uint8 (B, H, W, 3)`` array, or BackendError saying what was expected."""
    if not isinstance(frames, np.ndarray):
        raise BackendError(f"{backend}: frames must be a numpy array, got {type(frames).__name__}")
    h, w = frame_shape
    if frames.dtype != np.uint8 or frames.ndim != 4 or frames.shape[1:] != (h, w, 3):
        raise BackendError(
            f"{backend}: frames must be uint8 (B, {h}, {w}, 3) BGR (the exported frame size); "
            f"got {frames.dtype} {frames.shape}"
        )
    if not 1 <= len(frames) <= max_batch:
        raise BackendError(f"{backend}: batch of {len(frames)} frames; allowed 1..{max_batch}")
    return np.ascontiguousarray(frames)


class BundledBackend(Backend):
    """A backend serving one exported bundle: the frame shape comes from its manifest, the batch is capped."""

    _bundle: Bundle
    _max_batch: int

    @property
    def max_batch(self) -> int:
        return self._max_batch

    @property
    def frame_shape(self) -> tuple[int, int]:
        return self._bundle.frame_shape

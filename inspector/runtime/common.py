"""What every backend shares: the product's bundle and manifest, and the check of incoming frames."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from inspector.bundle import bundle_dir
from inspector.errors import BackendError, CheckpointError
from inspector.manifest import Manifest, load_manifest
from inspector.runtime.base import Backend


@dataclass(frozen=True)
class Bundle:
    """A product's exported bundle: its directory and its manifest."""

    path: Path
    manifest: Manifest

    @property
    def product(self) -> str:
        return self.manifest.product

    @property
    def frame_shape(self) -> tuple[int, int]:
        """(H, W) of the frames the graph accepts."""
        return self.manifest.frame_shape

    @property
    def mask_shape(self) -> tuple[int, int]:
        """(h, w) of the anomaly map."""
        return self.manifest.mask_shape


def open_bundle(home: str | Path | None, product: str) -> Bundle:
    """The exported bundle of ``product``; BackendError naming the command to run when it is not exported."""
    path = bundle_dir(home, product)
    try:
        return Bundle(path, load_manifest(path))
    except CheckpointError as e:
        raise BackendError(str(e)) from e


def batch_limit(exported: int, asked: int | None) -> int:
    """The max batch of a backend or a TensorRT build: what was asked for (default: all), within the 1..exported
    the graph (or plan) was made for; BackendError otherwise."""
    if asked is None:
        return exported
    if not 1 <= asked <= exported:
        raise BackendError(f"max batch {asked} is outside 1..{exported}, the range the model was exported for; "
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

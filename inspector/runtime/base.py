"""The one small interface every inference backend implements.

A backend takes raw camera frames, ``uint8 (B, H, W, 3)`` BGR in host memory, and returns an
:class:`inspector.result.InferenceResult` in host memory. Pre- and post-processing (ROI crop, resize,
normalisation, anomaly map, score) happen inside the backend's graph, on its device. Thresholds do not:
they come from the product's calibration.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Any

import numpy as np

from inspector.result import InferenceResult


class Backend(ABC):
    """An inference backend for one product's exported model."""

    #: short name: "torch", "onnxruntime" or "tensorrt"
    name: str = "?"

    @property
    @abstractmethod
    def max_batch(self) -> int:
        """Largest batch one ``infer`` call accepts."""

    @property
    @abstractmethod
    def frame_shape(self) -> tuple[int, int]:
        """(H, W) of the frames this backend accepts (fixed per product)."""

    @abstractmethod
    def infer(self, frames: np.ndarray) -> InferenceResult:
        """``uint8 (B, H, W, 3)`` BGR frames -> result. Raises BackendError on a wrong shape or dtype."""

    def describe(self) -> dict[str, Any]:
        """What is running: backend, device, precision, versions. Logged and published in heartbeats."""
        return {"backend": self.name}

    def close(self) -> None:  # noqa: B027 - optional hook
        """Free device memory; the backend must not be used afterwards."""

    def __enter__(self) -> Backend:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

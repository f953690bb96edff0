"""The one result type that flows from every backend to the publisher and the audit log.

Field names are the ONNX output names and the TensorRT tensor names: ``score`` and ``anomaly_map``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from inspector.errors import BackendError

OUTPUT_NAMES = ("score", "anomaly_map")
INPUT_NAME = "frames"


@dataclass(frozen=True)
class InferenceResult:
    """Raw model output for a batch.

    score: ``(B,)`` float32, the image anomaly score (max of the average-pooled map).
    anomaly_map: ``(B, h, w)`` float32 or float16, per-pixel anomaly at the mask resolution.
    """

    score: np.ndarray
    anomaly_map: np.ndarray

    def __post_init__(self) -> None:
        if self.score.ndim != 1 or self.anomaly_map.ndim != 3 or len(self.score) != len(self.anomaly_map):
            raise BackendError(
                f"InferenceResult expects score (B,) and anomaly_map (B, h, w); got {self.score.shape} and {self.anomaly_map.shape}"
            )

    def __len__(self) -> int:
        return len(self.score)

    def item(self, i: int) -> InferenceResult:
        """The i-th element as a batch of one."""
        return InferenceResult(self.score[i : i + 1], self.anomaly_map[i : i + 1])

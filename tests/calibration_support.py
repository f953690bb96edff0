"""Helpers for the calibration tests: an export manifest on disk and a torch Backend without export.

``TorchFrames`` runs the real :class:`InspectionModel` of a checkpoint (the graph every backend serves),
so calibration is tested on real scores without needing ``inspector export`` or ONNX.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import torch

from inspector.bundle import build_model, load_checkpoint
from inspector.manifest import FileRef, Manifest, OnnxEntry, save_manifest
from inspector.model.graph import InspectionModel
from inspector.model.preprocess import Preprocess
from inspector.model.scoring import AnomalyScorer
from inspector.result import InferenceResult
from inspector.runtime.base import Backend
from tests.manifest_support import make_manifest


def write_manifest(bundle: Path, sha256: str, frame: tuple[int, int] = (64, 64), mask: tuple[int, int] = (64, 64),
                   roi: tuple[int, int, int, int] | None = None) -> Manifest:
    """An export manifest (fp32 ONNX entry with a fake hash) bound to checkpoint ``sha256``."""
    m = make_manifest(bundle.name, frame=frame, mask=mask, checkpoint=FileRef("model.pt", sha256),
                      onnx={"fp32": OnnxEntry("model.onnx", "0" * 64)}, roi=roi, opset=17)
    save_manifest(bundle, m)
    return m


def copy_home(src: Path, dst: Path, product: str = "cable") -> Path:
    """A private copy of a trained home (model.pt only), so tests can write calibrations into it."""
    (dst / "engines" / product).mkdir(parents=True)
    shutil.copy2(src / "engines" / product / "model.pt", dst / "engines" / product / "model.pt")
    return dst


class TorchFrames(Backend):
    """A Backend over a checkpoint's InspectionModel on the CPU; counts the frames it saw."""

    name = "test-torch"

    def __init__(self, model_pt: Path, frame: tuple[int, int] = (64, 64), max_batch: int = 4) -> None:
        ckpt = load_checkpoint(model_pt)
        adtr = build_model(ckpt)
        mean, std = ckpt.mean_std
        self.model = InspectionModel(Preprocess(adtr.cfg.input_size, mean, std), adtr, AnomalyScorer.for_config(adtr.cfg)).eval()
        self._frame, self._max_batch, self.frames_seen, self.closed = frame, max_batch, 0, False

    @property
    def max_batch(self) -> int:
        return self._max_batch

    @property
    def frame_shape(self) -> tuple[int, int]:
        return self._frame

    def infer(self, frames: np.ndarray) -> InferenceResult:
        if frames.dtype != np.uint8 or frames.shape[1:3] != self._frame or len(frames) > self._max_batch:
            raise ValueError(f"bad frames {frames.shape} {frames.dtype}")
        self.frames_seen += len(frames)
        with torch.no_grad():
            score, amap = self.model(torch.from_numpy(frames))
        return InferenceResult(score.numpy().astype(np.float32), amap.numpy().astype(np.float32))

    def describe(self) -> dict:
        return {"backend": self.name, "device": "cpu", "max_batch": self._max_batch}

    def close(self) -> None:
        self.closed = True

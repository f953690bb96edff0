"""Helpers for the export, runtime and bench tests: one exported copy of the tiny trained model per session.

Exporting (torch.export + ONNX translation, fp32 and fp16, each checked in ONNX Runtime) is the slow part of
these tests, so it happens once per test session and every test that does not modify the bundle shares it.
Tests that modify a bundle take ``private_copy``.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np

from inspector.data.dataset import load_dataset, read_image

_CACHE: dict[str, Path] = {}


def exported_home(trained: dict, tmp_root: Path) -> Path:
    """A home holding the tiny model of ``trained`` exported with --fp16 (max batch 4); made once per session."""
    if "home" not in _CACHE:
        from inspector.export.run import ExportOptions, export

        home = tmp_root / "exported"
        (home / "engines" / "cable").mkdir(parents=True)
        shutil.copy2(Path(trained["home"]) / "engines" / "cable" / "model.pt", home / "engines" / "cable" / "model.pt")
        export("cable", home, ExportOptions(fp16=True, max_batch=4))
        _CACHE["home"] = home
    return _CACHE["home"]


def private_copy(home: Path, dst: Path) -> Path:
    """A copy of an exported home that a test may change."""
    shutil.copytree(home, dst)
    return dst


def labelled_frames(data_root: Path) -> tuple[np.ndarray, np.ndarray]:
    """The synthetic product's test images as ``uint8 (N, H, W, 3)`` frames, and their labels ``(N,)``."""
    ds = load_dataset(data_root)
    frames = np.stack([read_image(s.path) for s in ds.test])
    return frames, np.array([s.label for s in ds.test])

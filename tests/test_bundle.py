"""The product bundle on disk: a bundle written by older code still loads and serves."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

from inspector.bundle import build_model, load_checkpoint
from inspector.runtime import open_backend
from inspector.runtime.common import open_bundle
from inspector.runtime.onnxruntime_backend import OnnxRuntimeBackend

FIXTURE = Path(__file__).resolve().parent / "fixtures" / "bundle_v1"


@pytest.fixture
def v1_home(tmp_path) -> Path:
    """A copy of the bundle written at commit 1fe5169 (tests/fixtures/bundle_v1/README.md)."""
    return Path(shutil.copytree(FIXTURE, tmp_path / "home"))


def test_v1_checkpoint_loads(v1_home):
    ckpt = load_checkpoint(v1_home / "engines" / "tiny" / "model.pt")
    assert ckpt.product == "tiny" and ckpt.epoch == 3 and ckpt.preset.model.target == "pixels"
    assert len(ckpt.fingerprints("train")) + len(ckpt.fingerprints("holdout")) == 12
    assert build_model(ckpt).cfg.hidden_dim == 16


def _backend(name: str, home: Path):
    if name == "torch":
        return open_backend("torch", home, "tiny", device="cpu", precision="fp32")
    # model.onnx is the only graph the fixture keeps: the standard one.
    return OnnxRuntimeBackend(open_bundle(home, "tiny"), device="cpu", precision="fp32", graph="standard")


@pytest.mark.parametrize("backend", ["torch", "onnxruntime"])
def test_v1_bundle_serves(v1_home, backend):
    with _backend(backend, v1_home) as b:
        frames = np.random.default_rng(0).integers(0, 256, (3, 64, 64, 3), dtype=np.uint8)
        r = b.infer(frames)
    assert r.score.shape == (3,) and r.anomaly_map.shape == (3, 64, 64)
    assert np.isfinite(r.score).all() and np.isfinite(r.anomaly_map).all()

"""Parity of the engines on the real MVTec AD bottle test images (83), with a cpu-quick model.

- ONNX fp32 (ONNX Runtime) vs torch fp32: anomaly map max |difference| <= 1e-3 x the map range, and the same
  image-score ranking;
- fp16 ONNX vs fp32: image AUROC and pixel AUROC within 0.002;
- int8 ONNX (onnxruntime CPU) vs fp32: the same 0.002;
- the same checks for TensorRT where it exists (marked ``tensorrt``).

The model: $INSPECTOR_PARITY_MODEL (a cpu-quick bottle model.pt) when it loads with this code; else a cpu-quick model trained here for 5 epochs (parity does not need a
good model; a few minutes).
Marked ``slow`` and ``bars`` (minutes of CPU: `make bars`); skipped without the data.
"""

from __future__ import annotations

import dataclasses
import importlib.util
import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest

from inspector.data.dataset import load_dataset, read_image, read_mask
from inspector.evaluate.metrics import auroc, pixel_auroc
from inspector.runtime import open_backend

pytestmark = [pytest.mark.slow, pytest.mark.bars]


@pytest.fixture(scope="module")
def bottle_home(bottle_root, tmp_path_factory) -> Path:
    """A home with a cpu-quick bottle model exported with --fp16 (frame: the 256x256 images)."""
    from inspector.export.run import ExportOptions, export

    home = tmp_path_factory.mktemp("bottle_home")
    bundle = home / "engines" / "bottle"
    bundle.mkdir(parents=True)
    source = Path(os.environ.get("INSPECTOR_PARITY_MODEL", ""))
    if _loadable(source):
        shutil.copy2(source, bundle / "model.pt")
    else:
        from inspector.preset import load_preset
        from inspector.train.run import train

        preset = load_preset("cpu-quick")
        preset = dataclasses.replace(preset, train=dataclasses.replace(preset.train, epochs=5, checkpoint_every=5))
        train("bottle", bottle_root, preset, home=home, device="cpu", progress=False)
    export("bottle", home, ExportOptions(fp16=True, max_batch=8))
    return home


def _loadable(path: Path) -> bool:
    """A checkpoint this code can build (an older format is trained again instead)."""
    from inspector.bundle import build_model, load_checkpoint
    from inspector.errors import CheckpointError

    if not path.is_file():
        return False
    try:
        build_model(load_checkpoint(path))
    except CheckpointError:
        return False
    return True


@pytest.fixture(scope="module")
def bottle_test(bottle_root):
    ds = load_dataset(bottle_root)
    frames = np.stack([read_image(s.path) for s in ds.test])
    labels = np.array([s.label for s in ds.test])
    masks = np.stack([read_mask(s.mask_path, (224, 224)) for s in ds.test])
    return frames, labels, masks


def _run(backend, frames: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    out = [backend.infer(frames[i:i + 8]) for i in range(0, len(frames), 8)]
    return np.concatenate([r.score for r in out]), np.concatenate([r.anomaly_map for r in out])


def _report(name: str, figures: dict) -> None:
    print(f"\nparity {name}: {json.dumps(figures)}")


def test_onnx_fp32_matches_torch_fp32(bottle_home, bottle_test):
    frames, labels, _ = bottle_test
    assert len(frames) == 83
    with open_backend("torch", bottle_home, "bottle", device="cpu", threads=2) as t, \
            open_backend("onnxruntime", bottle_home, "bottle", device="cpu", precision="fp32", threads=2) as o:
        st, mt = _run(t, frames)
        so, mo = _run(o, frames)
    span = float(mt.max() - mt.min())
    diff = float(np.abs(mo - mt).max())
    _report("onnx-fp32 vs torch-fp32", {"max_abs_map_diff": diff, "map_range": span, "ratio": diff / span,
                                        "max_abs_score_diff": float(np.abs(so - st).max()),
                                        "image_auroc_torch": auroc(labels, st), "image_auroc_onnx": auroc(labels, so)})
    assert diff <= 1e-3 * span
    assert np.array_equal(np.argsort(so, kind="stable"), np.argsort(st, kind="stable"))


def _auroc_vs_fp32(home, precision: str, bottle_test) -> tuple[tuple[float, float], tuple[float, float]]:
    """(image AUROC, pixel AUROC) pairs of onnxruntime fp32 and ``precision`` on the 83 test images; reported."""
    frames, labels, masks = bottle_test
    with open_backend("onnxruntime", home, "bottle", device="cpu", precision="fp32", threads=2) as o32, \
            open_backend("onnxruntime", home, "bottle", device="cpu", precision=precision, threads=2) as other:
        s32, m32 = _run(o32, frames)
        s, m = _run(other, frames)
    img = (auroc(labels, s32), auroc(labels, s))
    pix = (pixel_auroc(masks, m32), pixel_auroc(masks, m))
    _report(f"onnx-{precision} vs onnx-fp32", {"image_auroc": img, "pixel_auroc": pix,
                                                "max_abs_map_diff_rel": float(np.abs(m - m32).max() / np.ptp(m32))})
    return img, pix


def test_onnx_fp16_auroc_matches_fp32(bottle_home, bottle_test):
    img, pix = _auroc_vs_fp32(bottle_home, "fp16", bottle_test)
    assert abs(img[0] - img[1]) <= 0.002 and abs(pix[0] - pix[1]) <= 0.002


def test_onnx_int8_auroc_matches_fp32(bottle_home, bottle_test, tmp_path):
    """The int8 graph (``export --int8``) keeps image and pixel AUROC within 0.002 of float32, as fp16 must."""
    from inspector.export.run import ExportOptions, export

    home = tmp_path / "h"
    (home / "engines" / "bottle").mkdir(parents=True)
    shutil.copy2(bottle_home / "engines" / "bottle" / "model.pt", home / "engines" / "bottle" / "model.pt")
    export("bottle", home, ExportOptions(int8=True, max_batch=8))
    img, pix = _auroc_vs_fp32(home, "int8", bottle_test)
    assert abs(img[0] - img[1]) <= 0.002 and abs(pix[0] - pix[1]) <= 0.002


def _has_tensorrt_gpu() -> bool:
    if importlib.util.find_spec("tensorrt") is None:
        return False
    import torch

    return torch.cuda.is_available()


@pytest.mark.tensorrt
@pytest.mark.skipif(not _has_tensorrt_gpu(), reason="needs TensorRT and an NVIDIA GPU; never run on the CPU machine")
@pytest.mark.parametrize("precision", ["fp32", "fp16"])
def test_tensorrt_matches_onnx_fp32(bottle_home, bottle_test, precision):
    from inspector.export.tensorrt_build import build_engine

    frames, labels, masks = bottle_test
    build_engine(bottle_home, "bottle", precision=precision, max_batch=8)
    with open_backend("tensorrt", bottle_home, "bottle") as t, \
            open_backend("onnxruntime", bottle_home, "bottle", device="cpu", precision="fp32") as o:
        st, mt = _run(t, frames)
        so, mo = _run(o, frames)
    img, pix = (auroc(labels, so), auroc(labels, st)), (pixel_auroc(masks, mo), pixel_auroc(masks, mt))
    _report(f"tensorrt-{precision} vs onnx-fp32", {"image_auroc": img, "pixel_auroc": pix})
    if precision == "fp32":
        # TF32 may be on in TensorRT's fp32 convolutions and GEMMs: the ranking check, not 1e-3, applies.
        assert np.array_equal(np.argsort(st), np.argsort(so)) or abs(img[0] - img[1]) <= 0.002
    assert abs(img[0] - img[1]) <= 0.002 and abs(pix[0] - pix[1]) <= 0.002

"""TensorRT backend: the load-time checks (pure, no TensorRT needed) and, where TensorRT and a GPU exist,
parity with ONNX Runtime (marked ``tensorrt``; skipped here with the reason)."""

from __future__ import annotations

import dataclasses
import importlib.util
import sys

import numpy as np
import pytest

from inspector.errors import BackendError
from inspector.evaluate.metrics import auroc
from inspector.files import sha256_file
from inspector.runtime import open_backend
from inspector.runtime.tensorrt_backend import check_io, check_plan_file, select_engine
from tests.export_support import exported_home, labelled_frames
from tests.manifest_support import engine_entry, make_manifest
from tests.runtime import fake_tensorrt


def _has_tensorrt_gpu() -> bool:
    if importlib.util.find_spec("tensorrt") is None:
        return False
    import torch

    return torch.cuda.is_available()


needs_tensorrt = pytest.mark.skipif(not _has_tensorrt_gpu(), reason="needs TensorRT and an NVIDIA GPU")

H200 = engine_entry("NVIDIA H200", "9.0", "10.13.0", plan="p.plan", onnx_precision="fp32", onnx_sha256="a" * 64)


def test_select_engine_matches_gpu_and_version():
    m = make_manifest("cable").with_engine(H200)
    assert select_engine(m, "NVIDIA H200", "9.0", "10.13.0") == H200
    with pytest.raises(BackendError, match=r"no TensorRT plan.*TensorRT 10.14.0.*run `inspector build --product cable`"):
        select_engine(m, "NVIDIA H200", "9.0", "10.14.0")
    with pytest.raises(BackendError, match="built: NVIDIA H200 sm90 TensorRT 10.13.0;"):
        select_engine(m, "NVIDIA A100-SXM4-80GB", "8.0", "10.13.0")


def test_plan_from_another_export_is_refused():
    m = make_manifest("cable").with_engine(dataclasses.replace(H200, onnx_sha256="c" * 64))
    with pytest.raises(BackendError, match="another export.*inspector build --product cable"):
        select_engine(m, "NVIDIA H200", "9.0", "10.13.0")


def test_changed_or_missing_plan_is_refused(tmp_path):
    (tmp_path / "p.plan").write_bytes(b"PLAN")
    entry = dataclasses.replace(H200, sha256=sha256_file(tmp_path / "p.plan"))
    assert check_plan_file(tmp_path, entry, "cable") == b"PLAN"
    (tmp_path / "p.plan").write_bytes(b"PLAN2")
    with pytest.raises(BackendError, match="changed after it was built"):
        check_plan_file(tmp_path, entry, "cable")
    (tmp_path / "p.plan").unlink()
    with pytest.raises(BackendError, match="missing"):
        check_plan_file(tmp_path, entry, "cable")


def test_engine_io_must_be_the_result_type_names():
    trt = fake_tensorrt.module("10.13.0")
    good = {"frames": (True, trt.uint8), "score": (False, trt.float32), "anomaly_map": (False, trt.float16)}
    check_io(good, trt)
    with pytest.raises(BackendError, match="expected"):
        check_io({**good, "extra": (False, trt.float32)}, trt)
    with pytest.raises(BackendError, match="uint8"):
        check_io({**good, "frames": (True, trt.float32)}, trt)


def test_open_without_tensorrt_names_the_alternatives(trained, tmp_path_factory, monkeypatch):
    home = exported_home(trained, tmp_path_factory.getbasetemp())
    monkeypatch.setitem(sys.modules, "tensorrt", None)
    with pytest.raises(BackendError, match="TensorRT is not installed.*torch backend"):
        open_backend("tensorrt", home, "cable")
    with pytest.raises(BackendError, match="GPU only"):
        open_backend("tensorrt", home, "cable", device="cpu")


@pytest.mark.tensorrt
@needs_tensorrt
def test_tensorrt_matches_onnxruntime(trained, tmp_path_factory):
    """Built for this GPU, the plan agrees with the fp32 ONNX: same AUROC within 0.002, close maps."""
    from inspector.export.tensorrt_build import build_engine

    home = exported_home(trained, tmp_path_factory.getbasetemp())
    build_engine(home, "cable", workspace_mib=1024)
    frames, labels = labelled_frames(trained["data"])
    with open_backend("tensorrt", home, "cable") as t, open_backend("onnxruntime", home, "cable", device="cpu") as o:
        rt = [t.infer(frames[i:i + 4]) for i in range(0, len(frames), 4)]
        ro = [o.infer(frames[i:i + 4]) for i in range(0, len(frames), 4)]
    st, so = np.concatenate([r.score for r in rt]), np.concatenate([r.score for r in ro])
    mt, mo = np.concatenate([r.anomaly_map for r in rt]), np.concatenate([r.anomaly_map for r in ro])
    assert abs(auroc(labels, st) - auroc(labels, so)) <= 0.002
    assert np.abs(mt - mo).max() <= 0.05 * (mo.max() - mo.min())

"""open_backend and available_backends: names, the 'auto' order and the reasons it logs."""

from __future__ import annotations

import logging
import sys

import pytest
import torch

import inspector.runtime as runtime
from inspector.errors import BackendError
from inspector.runtime import available_backends, open_backend
from tests.export_support import exported_home


@pytest.fixture(scope="module")
def home(trained, tmp_path_factory):
    return exported_home(trained, tmp_path_factory.getbasetemp())


def test_available_backends_give_reasons(monkeypatch):
    monkeypatch.setattr(runtime, "_cuda_available", lambda: False)
    a = available_backends()
    assert a["torch"] is None and a["auto"] is None and a["onnxruntime"] is None
    assert a["tensorrt"] in ("the tensorrt package is not installed", "torch sees no CUDA GPU")


def test_auto_on_a_cpu_machine_takes_onnxruntime_and_says_why(home, monkeypatch, caplog):
    monkeypatch.setattr(runtime, "_cuda_available", lambda: False)
    with caplog.at_level(logging.INFO, logger="inspector.runtime"), open_backend("auto", home, "cable") as b:
        assert b.name == "onnxruntime" and b.describe()["device"] == "cpu"
    assert "chose onnxruntime on cpu" in caplog.text and "torch sees no CUDA GPU" in caplog.text


def test_auto_without_onnxruntime_falls_to_torch_cpu_loudly(home, monkeypatch, caplog):
    monkeypatch.setattr(runtime, "_cuda_available", lambda: False)
    monkeypatch.setitem(sys.modules, "onnxruntime", None)
    with caplog.at_level(logging.INFO, logger="inspector.runtime"), open_backend("auto", home, "cable") as b:
        assert b.name == "torch" and b.describe()["device"] == "cpu"
    assert any(r.levelno == logging.WARNING and "onnxruntime" in r.getMessage() for r in caplog.records)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_auto_on_a_gpu_without_tensorrt_takes_torch_cuda(home, monkeypatch, caplog):
    monkeypatch.setitem(sys.modules, "tensorrt", None)
    with caplog.at_level(logging.INFO, logger="inspector.runtime"), open_backend("auto", home, "cable") as b:
        assert b.name == "torch" and b.describe()["device"].startswith("cuda")
    assert "passing over tensorrt" in caplog.text


def test_unknown_backend_and_unexported_product(home, tmp_path):
    with pytest.raises(BackendError, match="allowed: auto, tensorrt, torch, onnxruntime"):
        open_backend("openvino", home, "cable")
    with pytest.raises(BackendError, match="run `inspector export --product other` first"):
        open_backend("onnxruntime", tmp_path, "other")


def test_int8_is_refused_where_it_does_not_exist(home):
    with pytest.raises(BackendError, match="TensorRT runs fp16 or fp32 plans"):
        open_backend("tensorrt", home, "cable", precision="int8")
    with pytest.raises(BackendError, match="run `inspector export --product cable --int8`"):
        open_backend("onnxruntime", home, "cable", device="cpu", precision="int8")

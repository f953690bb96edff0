"""The onnxruntime backend: the verified ONNX file, frame checks, provider choice, results as the result type."""

from __future__ import annotations

import numpy as np
import pytest

from inspector.errors import BackendError
from inspector.manifest import Manifest, OnnxEntry, OrtGraph
from inspector.result import InferenceResult
from inspector.runtime import open_backend
from inspector.runtime.onnxruntime_backend import choose_graph, choose_precision, choose_provider
from tests.export_support import exported_home, labelled_frames, private_copy
from tests.manifest_support import make_manifest


@pytest.fixture(scope="module")
def home(trained, tmp_path_factory):
    return exported_home(trained, tmp_path_factory.getbasetemp())


def test_infer_returns_the_result_type(home, trained):
    frames, _ = labelled_frames(trained["data"])
    with open_backend("onnxruntime", home, "cable", device="cpu", threads=1) as b:
        assert b.name == "onnxruntime" and b.frame_shape == (64, 64) and b.max_batch == 4
        r = b.infer(frames[:3])
        d = b.describe()
    assert isinstance(r, InferenceResult) and r.score.shape == (3,) and r.anomaly_map.shape == (3, 64, 64)
    assert r.score.dtype == np.float32 and r.anomaly_map.dtype == np.float32
    assert d["provider"] == "CPUExecutionProvider" and d["precision"] == "fp32" and d["threads"] == 1


def test_fp16_graph_runs_and_is_close(home, trained):
    frames, _ = labelled_frames(trained["data"])
    with open_backend("onnxruntime", home, "cable", device="cpu", precision="fp32") as b32, \
            open_backend("onnxruntime", home, "cable", device="cpu", precision="fp16") as b16:
        r32, r16 = b32.infer(frames[:4]), b16.infer(frames[:4])
        assert b16.describe()["onnx"] == "model.fp16.onnx"
    span = r32.anomaly_map.max() - r32.anomaly_map.min()
    assert r16.anomaly_map.dtype == np.float32
    assert np.abs(r16.anomaly_map - r32.anomaly_map).max() < 0.05 * span


@pytest.mark.parametrize("bad", [np.zeros((1, 64, 64, 3), np.float32), np.zeros((1, 64, 65, 3), np.uint8),
                                 np.zeros((5, 64, 64, 3), np.uint8), np.zeros((64, 64, 3), np.uint8)])
def test_wrong_frames_are_refused(home, bad):
    with open_backend("onnxruntime", home, "cable", device="cpu") as b, \
            pytest.raises(BackendError, match=r"uint8 \(B, 64, 64, 3\)|allowed 1..4"):
        b.infer(bad)


def test_max_batch_cannot_exceed_the_export(home):
    with pytest.raises(BackendError, match="export again with --max-batch 8"):
        open_backend("onnxruntime", home, "cable", device="cpu", max_batch=8)


@pytest.mark.parametrize(("name", "graph"), [("model.ort.onnx", "auto"), ("model.onnx", "standard")])
def test_changed_onnx_is_refused(home, tmp_path, name, graph):
    from inspector.runtime.common import open_bundle
    from inspector.runtime.onnxruntime_backend import OnnxRuntimeBackend

    copy = private_copy(home, tmp_path / "h")
    with open(copy / "engines" / "cable" / name, "ab") as f:
        f.write(b"\0")
    with pytest.raises(BackendError, match="run `inspector export --product cable` again"):
        OnnxRuntimeBackend(open_bundle(copy, "cable"), device="cpu", graph=graph)


def _with_onnx(*keys: str, **changes) -> Manifest:
    return make_manifest("p", onnx={k: OnnxEntry(f"{k}.onnx", "a" * 64) for k in keys}, **changes)


def test_provider_and_precision_choice():
    cpu_only = ["CPUExecutionProvider"]
    both = ["CUDAExecutionProvider", "CPUExecutionProvider"]
    assert choose_provider("auto", cpu_only) == "CPUExecutionProvider"
    assert choose_provider("auto", both) == "CUDAExecutionProvider"
    assert choose_provider("cpu", both) == "CPUExecutionProvider"
    with pytest.raises(BackendError, match="onnxruntime-gpu"):
        choose_provider("cuda", cpu_only)
    with pytest.raises(BackendError, match="unknown device"):
        choose_provider("tpu", cpu_only)
    m = _with_onnx("fp32", "fp16")
    assert choose_precision("auto", "CPUExecutionProvider", m) == "fp32"
    assert choose_precision("auto", "CUDAExecutionProvider", m) == "fp16"
    assert choose_precision("auto", "CUDAExecutionProvider", _with_onnx("fp32")) == "fp32"
    with pytest.raises(BackendError, match="allowed: auto, fp32, fp16, int8"):
        choose_precision("int4", "CPUExecutionProvider", m)
    with_int8 = _with_onnx("fp32", "fp16", "int8")
    assert choose_precision("auto", "CPUExecutionProvider", with_int8) == "int8"  # exported = opted in
    assert choose_precision("auto", "CPUExecutionProvider", with_int8, int8_ok=False) == "fp32"  # graph standard
    assert choose_precision("auto", "CUDAExecutionProvider", with_int8) == "fp16"
    assert choose_precision("int8", "CPUExecutionProvider", m) == "int8"  # its file is checked when opened
    with pytest.raises(BackendError, match="int8 graph is for the CPU"):
        choose_precision("int8", "CUDAExecutionProvider", with_int8)


def test_graph_choice():
    fused = _with_onnx("fp32", "fp32-ort", "fp16")
    plain = _with_onnx("fp32", ort_graph=OrtGraph(False, reason="no attention layers"))
    assert choose_graph("auto", "fp32", fused) == "fp32-ort"
    assert choose_graph("auto", "fp32", plain) == "fp32"
    assert choose_graph("auto", "fp16", fused) == "fp16"
    assert choose_graph("auto", "int8", fused) == "int8"
    assert choose_graph("standard", "fp32", fused) == "fp32"
    assert choose_graph("fused", "fp32", fused) == "fp32-ort"
    with pytest.raises(BackendError, match="no attention layers"):
        choose_graph("fused", "fp32", plain)
    with pytest.raises(BackendError, match="float32"):
        choose_graph("fused", "fp16", fused)
    with pytest.raises(BackendError, match="standard graph .* runs in fp32"):
        choose_graph("standard", "int8", fused)
    with pytest.raises(BackendError, match="allowed: auto, fused, standard"):
        choose_graph("fastest", "fp32", fused)


def test_spinning_can_be_turned_off_and_results_do_not_change(home, trained):
    frames, _ = labelled_frames(trained["data"])
    with open_backend("onnxruntime", home, "cable", device="cpu", threads=2) as spin, \
            open_backend("onnxruntime", home, "cable", device="cpu", threads=2, spin=False) as still:
        assert spin.describe()["spinning"] is True and still.describe()["spinning"] is False
        a, b = spin.infer(frames[:2]), still.infer(frames[:2])
    np.testing.assert_array_equal(a.anomaly_map, b.anomaly_map)

"""`inspector export`: one ONNX graph from raw uint8 BGR frames to (score, anomaly_map), dynamic batch,
fixed frame; fp16 twin with recorded decisions; manifest; ONNX Runtime agrees with torch (fast synthetic
parity here, the real-data parity is in tests/runtime/test_parity_bottle.py)."""

from __future__ import annotations

import dataclasses
import json
import shutil

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch

from inspector.bundle import build_inspection_model, load_checkpoint, save_checkpoint
from inspector.errors import ExportError
from inspector.evaluate.metrics import auroc
from inspector.export.run import ExportOptions, export
from inspector.files import sha256_file
from inspector.manifest import FrameSize, InputSpec, OnnxEntry, load_manifest, manifest_to_json
from inspector.model.graph import GraphSpec
from tests.export_support import exported_home, labelled_frames


@pytest.fixture(scope="module")
def home(trained, tmp_path_factory):
    return exported_home(trained, tmp_path_factory.getbasetemp())


@pytest.fixture(scope="module")
def bundle(home):
    return home / "engines" / "cable"


def _session(path):
    return ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])


def _dims(value_info):
    return [d.dim_param or d.dim_value for d in value_info.type.tensor_type.shape.dim]


def test_graph_interface_is_frames_in_result_out(bundle):
    m = onnx.load(str(bundle / "model.onnx"))
    assert max(o.version for o in m.opset_import if o.domain in ("", "ai.onnx")) >= 17
    (inp,) = m.graph.input
    assert inp.name == "frames" and inp.type.tensor_type.elem_type == onnx.TensorProto.UINT8
    assert _dims(inp)[1:] == [64, 64, 3] and isinstance(_dims(inp)[0], str)  # symbolic batch, fixed frame
    outs = {o.name: o for o in m.graph.output}
    assert list(outs) == ["score", "anomaly_map"]
    assert outs["score"].type.tensor_type.elem_type == onnx.TensorProto.FLOAT
    assert _dims(outs["anomaly_map"])[1:] == [64, 64] and isinstance(_dims(outs["anomaly_map"])[0], str)
    assert any(n.op_type == "LayerNormalization" for n in m.graph.node)


def test_the_only_uint8_operation_is_the_first_cast(bundle):
    # TensorRT keeps uint8 only at the network's I/O: every other op must see float (docs/engines.md).
    for name in ("model.onnx", "model.fp16.onnx"):
        g = onnx.load(str(bundle / name)).graph
        # Shape reads only the batch size (no uint8 data); everything else goes through the one Cast.
        consumers = [n for n in g.node if "frames" in n.input and n.op_type != "Shape"]
        assert [n.op_type for n in consumers] == ["Cast"], name
        assert next(a.i for a in consumers[0].attribute if a.name == "to") == onnx.TensorProto.FLOAT
        uint8_casts = [n for n in g.node if n.op_type == "Cast"
                       and any(a.name == "to" and a.i == onnx.TensorProto.UINT8 for a in n.attribute)]
        assert not uint8_casts, name


def test_manifest_records_hashes_shapes_and_versions(bundle):
    m = load_manifest(bundle)
    assert m.checkpoint.sha256 == sha256_file(bundle / "model.pt")
    for precision, name in (("fp32", "model.onnx"), ("fp16", "model.fp16.onnx")):
        assert m.onnx[precision] == OnnxEntry(name, sha256_file(bundle / name))
    assert m.input == InputSpec("frames", "uint8", ("batch", 64, 64, 3), "NHWC", "BGR")
    assert m.outputs.anomaly_map.shape == ("batch", 64, 64)
    assert m.frame == FrameSize(64, 64)  # the training images' size
    assert m.max_batch == 4 and m.opset >= 17 and m.roi is None and m.model_size == (64, 64)
    assert {"torch", "onnx", "onnxruntime"} <= set(m.versions)
    d = m.fp16_decisions
    assert d.preprocess == "fp32" and d.scorer == "fp32" and d.layernorm in ("fp16", "fp32")
    assert d.layernorm_max_sum_sq > 0 and d.layernorm_reason
    assert m.verification.checks["fp32"].max_map_diff_rel <= 1e-3
    assert "threshold" not in json.dumps(manifest_to_json(m)).lower()
    assert json.loads((bundle / "manifest.json").read_text())["model_size"] == 64  # a square as schema 1 wrote it


def test_onnx_runtime_matches_torch_on_synthetic_test_images(bundle, trained):
    frames, labels = labelled_frames(trained["data"])
    model = build_inspection_model(load_checkpoint(bundle / "model.pt"), GraphSpec((64, 64), None, (64, 64)))
    with torch.no_grad():
        ref_s, ref_m = (t.numpy() for t in model(torch.from_numpy(frames)))
    sess = _session(bundle / "model.onnx")
    outs = [sess.run(None, {"frames": frames[i:i + 4]}) for i in range(0, len(frames), 4)]
    score = np.concatenate([o[0] for o in outs])
    amap = np.concatenate([o[1] for o in outs])
    assert score.shape == (len(frames),) and amap.shape == ref_m.shape
    assert np.abs(amap - ref_m).max() <= 1e-3 * (ref_m.max() - ref_m.min())
    assert np.array_equal(np.argsort(score), np.argsort(ref_s))
    # fp16 graph: same decisions up to rounding.
    sess16 = _session(bundle / "model.fp16.onnx")
    s16 = np.concatenate([sess16.run(None, {"frames": frames[i:i + 4]})[0] for i in range(0, len(frames), 4)])
    assert abs(auroc(labels, s16) - auroc(labels, ref_s)) <= 0.05


def test_batch_axis_is_dynamic_and_rows_independent(bundle, trained):
    frames, _ = labelled_frames(trained["data"])
    sess = _session(bundle / "model.onnx")
    one = np.concatenate([sess.run(None, {"frames": frames[i:i + 1]})[0] for i in range(4)])
    four = sess.run(None, {"frames": frames[:4]})[0]
    np.testing.assert_allclose(one, four, rtol=1e-5, atol=1e-6)


def test_frame_roi_and_mask_size(trained, tmp_path):
    home = tmp_path / "h"
    (home / "engines" / "cable").mkdir(parents=True)
    shutil.copy2(trained["result"].model_path, home / "engines" / "cable" / "model.pt")
    frames, _ = labelled_frames(trained["data"])
    # A wider camera frame with the part at x=20, y=4.
    big = np.zeros((3, 72, 100, 3), np.uint8)
    big[:, 4:68, 20:84] = frames[:3]
    m = export("cable", home, ExportOptions(frame=(72, 100), roi=(20, 4, 64, 64), mask_size=(32, 48), max_batch=2))
    assert m.frame == FrameSize(72, 100) and m.roi == (20, 4, 64, 64) and m.mask_size == (32, 48)
    assert "fp16" not in m.onnx and m.fp16_decisions is None
    sess = _session(home / "engines" / "cable" / "model.onnx")
    score, amap = sess.run(None, {"frames": big[:2]})
    assert amap.shape == (2, 32, 48)
    model = build_inspection_model(load_checkpoint(home / "engines" / "cable" / "model.pt"),
                                   GraphSpec((64, 64), None, (64, 64)))
    with torch.no_grad():
        ref_score, _ = model(torch.from_numpy(frames[:2]))
    np.testing.assert_allclose(score, ref_score.numpy(), rtol=1e-4, atol=1e-5)  # the ROI is the part


def test_bad_requests_are_refused(trained, tmp_path):
    home = tmp_path / "h"
    (home / "engines" / "cable").mkdir(parents=True)
    shutil.copy2(trained["result"].model_path, home / "engines" / "cable" / "model.pt")
    with pytest.raises(ExportError, match="inside the 64x64 frame"):
        export("cable", home, ExportOptions(roi=(40, 0, 64, 64)))
    with pytest.raises(ExportError, match="opset"):
        export("cable", home, ExportOptions(opset=16))
    with pytest.raises(ExportError, match="max-batch"):
        export("cable", home, ExportOptions(max_batch=0))


def test_default_frame_needs_the_training_images(trained, tmp_path):
    ckpt = load_checkpoint(trained["result"].model_path)
    home = tmp_path / "h"
    moved = dataclasses.replace(ckpt, data=dataclasses.replace(ckpt.data, root=str(tmp_path / "gone")))
    save_checkpoint(home / "engines" / "cable" / "model.pt", moved)
    with pytest.raises(ExportError, match="--frame"):
        export("cable", home, ExportOptions())


def test_a_split_map_model_exports_and_onnx_runtime_agrees(trained, tmp_path):
    """model.map_strides: the map from the fine stages, the score from all, inside the one exported graph."""
    ckpt = load_checkpoint(trained["home"] / "engines" / "cable" / "model.pt")
    model_cfg = dataclasses.replace(ckpt.preset.model, map_strides=ckpt.preset.model.used_strides[:-1])
    split = dataclasses.replace(ckpt, preset=dataclasses.replace(ckpt.preset, model=model_cfg))
    (tmp_path / "engines" / "cable").mkdir(parents=True)
    save_checkpoint(tmp_path / "engines" / "cable" / "model.pt", split)
    export("cable", tmp_path, ExportOptions(max_batch=4, ort_graph=False))
    frames, _ = labelled_frames(trained["data"])
    spec = GraphSpec((64, 64), None, (64, 64))
    with torch.no_grad():
        ref_s, ref_m = (t.numpy() for t in build_inspection_model(load_checkpoint(tmp_path / "engines" / "cable" / "model.pt"), spec)(torch.from_numpy(frames[:4])))
        all_s, all_m = (t.numpy() for t in build_inspection_model(ckpt, spec)(torch.from_numpy(frames[:4])))
    score, amap = _session(tmp_path / "engines" / "cable" / "model.onnx").run(None, {"frames": frames[:4]})
    assert np.abs(amap - ref_m).max() <= 1e-3 * (ref_m.max() - ref_m.min())
    np.testing.assert_allclose(score, ref_s, rtol=1e-4)
    np.testing.assert_allclose(ref_s, all_s, rtol=1e-5)  # the score still comes from every stage
    assert np.abs(ref_m - all_m).max() > 1e-3 * (all_m.max() - all_m.min())  # the map does not

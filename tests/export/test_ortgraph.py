"""The onnxruntime flavour of the graph: fused attention (model.ort.onnx) and its int8 twin (model.int8.onnx).

Each test can fail: the fused operator must compute what the model's attention computes, the exported file
must really contain ORT's MultiHeadAttention (and no hand-built softmax attention), and ONNX Runtime must
give the plain graph's result from it.
"""

from __future__ import annotations

import dataclasses
import shutil

import numpy as np
import onnx
import pytest
import torch

from inspector.bundle import build_inspection_model, load_checkpoint
from inspector.export.ortgraph import FusedAttention, with_fused_attention
from inspector.export.run import ExportOptions, export
from inspector.files import sha256_file
from inspector.manifest import OnnxEntry, OrtGraph, load_manifest
from inspector.model.adtr import Attention
from inspector.model.graph import GraphSpec
from inspector.runtime import open_backend
from tests.export_support import exported_home, labelled_frames


@pytest.fixture(scope="module")
def bundle(trained, tmp_path_factory):
    return exported_home(trained, tmp_path_factory.getbasetemp()) / "engines" / "cable"


def test_fused_operator_equals_the_models_attention():
    torch.manual_seed(0)
    att = Attention(32, 4, dropout=0.0).eval()
    x, mem, pos = torch.randn(2, 9, 32), torch.randn(2, 9, 32), torch.randn(1, 9, 32)
    fused, count = with_fused_attention(att)
    assert type(fused) is FusedAttention and count == 1 and type(att) is Attention
    with torch.no_grad():
        for memory in (None, mem):
            torch.testing.assert_close(fused(x, pos, memory), att(x, pos, memory), rtol=0, atol=1e-6)


def test_with_fused_attention_copies_and_counts(trained):
    ckpt = load_checkpoint(trained["home"] / "engines" / "cable" / "model.pt")
    model = build_inspection_model(ckpt, GraphSpec(frame=(64, 64), roi=None, mask_size=(64, 64)))
    fused, count = with_fused_attention(model)
    # TINY: 1 encoder layer (self) + 1 decoder layer (self + cross)
    assert count == 3
    assert not any(type(m) is FusedAttention for m in model.modules())  # the source is untouched
    frames = torch.from_numpy(labelled_frames(trained["data"])[0][:3])
    with torch.no_grad():
        (s0, m0), (s1, m1) = model(frames), fused(frames)
    torch.testing.assert_close(m1, m0, rtol=0, atol=1e-5)
    torch.testing.assert_close(s1, s0, rtol=0, atol=1e-5)


def test_ort_graph_holds_the_fused_operator_and_matches_the_plain_graph(bundle, trained):
    g = onnx.load(str(bundle / "model.ort.onnx"))
    ops = [n.op_type for n in g.graph.node]
    mha = [n for n in g.graph.node if n.op_type == "MultiHeadAttention"]
    assert len(mha) == 3 and all(n.domain == "com.microsoft" for n in mha)
    assert "Softmax" not in ops
    plain = [n.op_type for n in onnx.load(str(bundle / "model.onnx")).graph.node]
    assert "Softmax" in plain and "MultiHeadAttention" not in plain  # TensorRT's file stays plain ONNX

    m = load_manifest(bundle)
    assert m.onnx["fp32-ort"] == OnnxEntry("model.ort.onnx", sha256_file(bundle / "model.ort.onnx"),
                                           consumers=("onnxruntime",))
    assert m.ort_graph.written and m.ort_graph.fused_attention == 3
    assert m.verification.checks["fp32-ort"].max_map_diff_rel <= 1e-3

    frames = labelled_frames(trained["data"])[0][:4]
    with open_backend("onnxruntime", bundle.parent.parent, "cable", device="cpu") as fused, \
            open_backend("onnxruntime", bundle.parent.parent, "cable", device="cpu", precision="fp32") as auto32:
        assert fused.describe()["onnx"] == "model.ort.onnx" and fused.describe()["graph"] == "fused attention"
        r_fused = fused.infer(frames)
        assert auto32.describe()["onnx"] == "model.ort.onnx"
    from inspector.runtime.common import open_bundle
    from inspector.runtime.onnxruntime_backend import OnnxRuntimeBackend

    with OnnxRuntimeBackend(open_bundle(bundle.parent.parent, "cable"), device="cpu", graph="standard") as plain_b:
        assert plain_b.describe()["onnx"] == "model.onnx"
        r_plain = plain_b.infer(frames)
    span = r_plain.anomaly_map.max() - r_plain.anomaly_map.min()
    assert np.abs(r_fused.anomaly_map - r_plain.anomaly_map).max() <= 1e-4 * span
    np.testing.assert_allclose(r_fused.score, r_plain.score, rtol=1e-4)


@pytest.fixture(scope="module")
def int8_home(trained, tmp_path_factory):
    home = tmp_path_factory.mktemp("int8")
    (home / "engines" / "cable").mkdir(parents=True)
    shutil.copy2(trained["home"] / "engines" / "cable" / "model.pt", home / "engines" / "cable" / "model.pt")
    export("cable", home, ExportOptions(max_batch=4, int8=True))
    return home


def test_int8_graph_is_quantised_verified_and_chosen_on_the_cpu(int8_home, trained):
    bundle = int8_home / "engines" / "cable"
    m = load_manifest(bundle)
    entry = m.onnx["int8"]
    assert entry.path == "model.int8.onnx" and entry.sha256 == sha256_file(bundle / "model.int8.onnx")
    assert entry.source == "model.ort.onnx" and entry.consumers == ("onnxruntime",)
    assert m.verification.checks["int8"].max_map_diff_rel <= 1e-2
    ops = {n.op_type for n in onnx.load(str(bundle / "model.int8.onnx")).graph.node}
    assert {"DynamicQuantizeLinear", "MultiHeadAttention"} <= ops and "MatMul" not in ops  # every MatMul quantised

    frames, labels = labelled_frames(trained["data"])
    with open_backend("onnxruntime", int8_home, "cable", device="cpu") as b8, \
            open_backend("onnxruntime", int8_home, "cable", device="cpu", precision="fp32") as b32:
        assert b8.describe()["precision"] == "int8" and b8.describe()["onnx"] == "model.int8.onnx"
        r8, r32 = b8.infer(frames[:4]), b32.infer(frames[:4])
    span = r32.anomaly_map.max() - r32.anomaly_map.min()
    assert np.abs(r8.anomaly_map - r32.anomaly_map).max() <= 1e-2 * span


def test_export_without_int8_removes_a_stale_int8_graph(int8_home, tmp_path):
    home = tmp_path / "h"
    shutil.copytree(int8_home, home)
    bundle = home / "engines" / "cable"
    export("cable", home, ExportOptions(max_batch=4, ort_graph=False))
    m = load_manifest(bundle)
    assert set(m.onnx) == {"fp32"} and m.ort_graph == OrtGraph(False, reason="not asked for (--no-ort-graph)")
    assert not (bundle / "model.int8.onnx").exists() and not (bundle / "model.ort.onnx").exists()
    with open_backend("onnxruntime", home, "cable", device="cpu") as b:
        assert b.describe()["onnx"] == "model.onnx" and b.describe()["precision"] == "fp32"


def test_models_without_attention_get_no_ort_graph(synthetic_root, tmp_path):
    from inspector.train.run import train
    from tests.conftest import tiny_preset

    preset = tiny_preset(mixer="mlp")
    preset = dataclasses.replace(preset, train=dataclasses.replace(preset.train, epochs=1, checkpoint_every=1))
    train("cable", synthetic_root, preset, home=tmp_path, device="cpu", progress=False)
    m = export("cable", tmp_path, ExportOptions(max_batch=2))
    assert "fp32-ort" not in m.onnx and not m.ort_graph.written
    assert "no attention layers" in m.ort_graph.reason
    assert not (tmp_path / "engines" / "cable" / "model.ort.onnx").exists()


def test_a_failing_ort_graph_export_falls_back_to_the_plain_graph(trained, tmp_path, monkeypatch, caplog):
    import inspector.export.ortgraph

    def broken() -> dict:
        raise AttributeError("module 'onnx.defs' has no attribute 'register_schema'")  # e.g. an old onnx

    monkeypatch.setattr(inspector.export.ortgraph, "translation_table", broken)
    (tmp_path / "engines" / "cable").mkdir(parents=True)
    shutil.copy2(trained["home"] / "engines" / "cable" / "model.pt", tmp_path / "engines" / "cable" / "model.pt")
    m = export("cable", tmp_path, ExportOptions(max_batch=2))
    assert set(m.onnx) == {"fp32"} and not m.ort_graph.written
    assert "register_schema" in m.ort_graph.reason and "onnxruntime will run model.onnx" in caplog.text
    with open_backend("onnxruntime", tmp_path, "cable", device="cpu") as b:
        assert b.describe()["onnx"] == "model.onnx"


def test_an_int8_graph_that_fails_its_check_leaves_no_stale_manifest(int8_home, tmp_path, monkeypatch):
    import inspector.export.ortgraph
    from inspector.errors import BackendError, ExportError

    home = tmp_path / "h"
    shutil.copytree(int8_home, home)
    monkeypatch.setattr(inspector.export.ortgraph, "INT8_TOLERANCE", 0.0)  # no quantised graph can pass this
    with pytest.raises(ExportError, match=r"model\.int8\.onnx \(quantised from model\.ort\.onnx\) was not written"):
        export("cable", home, ExportOptions(max_batch=4, int8=True))
    bundle = home / "engines" / "cable"
    assert not (bundle / "manifest.json").exists() and not (bundle / "model.int8.onnx").exists()
    with pytest.raises(BackendError, match="inspector export --product cable"):
        open_backend("onnxruntime", home, "cable", device="cpu")


def test_fused_graph_on_request_even_when_int8_exists(int8_home):
    from inspector.runtime.common import open_bundle
    from inspector.runtime.onnxruntime_backend import OnnxRuntimeBackend

    with OnnxRuntimeBackend(open_bundle(int8_home, "cable"), device="cpu", graph="fused") as b:
        assert b.describe()["onnx"] == "model.ort.onnx" and b.describe()["precision"] == "fp32"

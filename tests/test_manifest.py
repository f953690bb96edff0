"""The export manifest: atomic save, strict load, hash checks that name the command to re-run, plan entries."""

from __future__ import annotations

import json

import pytest

from inspector.errors import CheckpointError
from inspector.manifest import (
    MANIFEST,
    add_engine,
    check_checkpoint,
    find_engine,
    frame_shape,
    load_manifest,
    mask_shape,
    model_sha,
    onnx_file,
    save_manifest,
)
from inspector.model.weights import sha256_file


def _manifest(bundle, **changes) -> dict:
    (bundle / "model.pt").write_bytes(b"weights")
    (bundle / "model.onnx").write_bytes(b"graph")
    data = {
        "schema": 1, "product": bundle.name, "created": "2026-01-01T00:00:00+00:00",
        "checkpoint": {"path": "model.pt", "sha256": sha256_file(bundle / "model.pt")},
        "onnx": {"fp32": {"path": "model.onnx", "sha256": sha256_file(bundle / "model.onnx")}},
        "input": {"name": "frames", "dtype": "uint8", "shape": ["batch", 72, 80, 3], "layout": "NHWC", "color": "BGR"},
        "outputs": {"score": {"dtype": "float32", "shape": ["batch"]},
                    "anomaly_map": {"dtype": "float32", "shape": ["batch", 32, 48]}},
        "frame": {"height": 72, "width": 80}, "roi": None, "model_size": 64, "mask_size": [32, 48],
        "normalization": {"mean": [0.5] * 3, "std": [0.5] * 3}, "max_batch": 4, "opset": 18,
        "versions": {}, "engines": [], "fp16_decisions": None,
    }
    data.update(changes)
    return data


@pytest.fixture
def bundle(tmp_path):
    b = tmp_path / "engines" / "widget"
    b.mkdir(parents=True)
    return b


def test_save_load_round_trip_leaves_no_temporary(bundle):
    data = _manifest(bundle)
    save_manifest(bundle, data)
    assert load_manifest(bundle) == data
    assert sorted(p.name for p in bundle.iterdir()) == sorted([MANIFEST, "model.pt", "model.onnx"])
    assert model_sha(data) == sha256_file(bundle / "model.pt")
    assert frame_shape(data) == (72, 80) and mask_shape(data) == (32, 48)


def test_missing_manifest_says_to_export(bundle):
    with pytest.raises(CheckpointError, match="inspector export --product widget"):
        load_manifest(bundle)


@pytest.mark.parametrize("change", [{"schema": 2}, {"frame": None}, {"onnx": {}}])
def test_malformed_manifest_is_refused(bundle, change):
    data = _manifest(bundle, **change)
    if change.get("frame", 1) is None:
        del data["frame"]
    (bundle / MANIFEST).write_text(json.dumps(data))
    with pytest.raises(CheckpointError, match="export"):
        load_manifest(bundle)


def test_not_json_is_refused(bundle):
    (bundle / MANIFEST).write_text("{not json")
    with pytest.raises(CheckpointError, match="cannot read"):
        load_manifest(bundle)


def test_changed_files_are_refused_with_the_command_to_rerun(bundle):
    data = _manifest(bundle)
    assert onnx_file(bundle, data, "fp32") == bundle / "model.onnx"
    assert check_checkpoint(bundle, data) == bundle / "model.pt"
    (bundle / "model.onnx").write_bytes(b"another graph")
    with pytest.raises(CheckpointError, match=r"changed after it was made; run `inspector export --product widget`"):
        onnx_file(bundle, data, "fp32")
    (bundle / "model.pt").write_bytes(b"retrained")
    with pytest.raises(CheckpointError, match="checkpoint"):
        check_checkpoint(bundle, data)
    with pytest.raises(CheckpointError, match="--fp16"):
        onnx_file(bundle, data, "fp16")
    (bundle / "model.onnx").unlink()
    with pytest.raises(CheckpointError, match="missing"):
        onnx_file(bundle, data, "fp32")


def test_engine_entries_are_keyed_by_gpu_and_tensorrt(bundle):
    data = _manifest(bundle)
    a = {"gpu": "NVIDIA H200", "compute_capability": "9.0", "tensorrt": "10.13.0", "plan": "a.plan"}
    b = {"gpu": "Orin", "compute_capability": "8.7", "tensorrt": "10.3.0", "plan": "b.plan"}
    a2 = {**a, "plan": "a2.plan"}
    m = add_engine(add_engine(add_engine(data, a), b), a2)
    assert [e["plan"] for e in m["engines"]] == ["b.plan", "a2.plan"]
    assert data["engines"] == []  # the input is not modified
    assert find_engine(m, "NVIDIA H200", "9.0", "10.13.0")["plan"] == "a2.plan"
    assert find_engine(m, "NVIDIA H200", "9.0", "11.0.0") is None

"""The export manifest: typed, atomic save, strict load naming file and key, hash checks that name the command to
re-run, plan entries, and the schema-1 JSON of older exports read and written unchanged."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from inspector.errors import CheckpointError
from inspector.files import sha256_file
from inspector.manifest import (
    MANIFEST,
    FileRef,
    OnnxEntry,
    check_checkpoint,
    load_manifest,
    manifest_to_json,
    onnx_file,
    save_manifest,
)
from tests.manifest_support import engine_entry, make_manifest

V1 = Path(__file__).resolve().parent / "fixtures" / "bundle_v1" / "engines" / "tiny"


def _manifest(bundle, **changes):
    """A manifest whose checkpoint and fp32 ONNX files exist in ``bundle`` with their real hashes."""
    (bundle / "model.pt").write_bytes(b"weights")
    (bundle / "model.onnx").write_bytes(b"graph")
    return make_manifest(bundle.name, checkpoint=FileRef("model.pt", sha256_file(bundle / "model.pt")),
                         onnx={"fp32": OnnxEntry("model.onnx", sha256_file(bundle / "model.onnx"))}, **changes)


def _write_json(bundle, data) -> Path:
    path = bundle / MANIFEST
    path.write_text(json.dumps(data))
    return path


@pytest.fixture
def bundle(tmp_path):
    b = tmp_path / "engines" / "widget"
    b.mkdir(parents=True)
    return b


def test_save_load_round_trip_leaves_no_temporary(bundle):
    m = _manifest(bundle)
    save_manifest(bundle, m)
    assert load_manifest(bundle) == m
    assert sorted(p.name for p in bundle.iterdir()) == sorted([MANIFEST, "model.pt", "model.onnx"])
    assert m.model_sha == sha256_file(bundle / "model.pt")
    assert m.frame_shape == (72, 80) and m.mask_shape == (32, 48) and m.roi_box is None


def test_a_v1_manifest_reads_and_writes_back_unchanged():
    raw = json.loads((V1 / MANIFEST).read_text())
    m = load_manifest(V1)
    assert m.onnx["int8"].source == "model.ort.onnx" and m.engines[0].gpu == "NVIDIA H200"
    assert m.verification.frames_source == "8 training images" and m.fp16_decisions.layernorm == "fp16"
    assert json.dumps(manifest_to_json(m)) == json.dumps(raw)  # same keys, values and order


def test_missing_manifest_says_to_export(bundle):
    with pytest.raises(CheckpointError, match="inspector export --product widget"):
        load_manifest(bundle)


@pytest.mark.parametrize("change", [{"schema": 2}, {"frame": None}, {"onnx": {}}, {"max_batch": "4"}])
def test_malformed_manifest_is_refused(bundle, change):
    data = {**manifest_to_json(_manifest(bundle)), **change}
    if change.get("frame", 1) is None:
        del data["frame"]
    _write_json(bundle, data)
    with pytest.raises(CheckpointError, match="export"):
        load_manifest(bundle)


def test_a_missing_key_names_the_file_and_the_key(bundle):
    data = manifest_to_json(_manifest(bundle))
    del data["mask_size"]
    del data["onnx"]["fp32"]["sha256"]
    path = _write_json(bundle, data)
    with pytest.raises(CheckpointError, match=rf"{re.escape(str(path))}: missing key\(s\) \['mask_size'\]"):
        load_manifest(bundle)
    data["mask_size"] = [32, 48]
    _write_json(bundle, data)
    with pytest.raises(CheckpointError, match=rf"{re.escape(str(path))}: missing key\(s\) \['onnx.fp32.sha256'\]"):
        load_manifest(bundle)


def test_an_unknown_key_names_the_file_and_the_key(bundle):
    data = manifest_to_json(_manifest(bundle, engines=(engine_entry(),)))
    path = _write_json(bundle, {**data, "thresholds": {"image": 0.5}})
    with pytest.raises(CheckpointError, match=rf"{re.escape(str(path))}: unknown key\(s\) \['thresholds'\]"):
        load_manifest(bundle)
    data["engines"][0]["int4"] = True
    _write_json(bundle, data)
    with pytest.raises(CheckpointError, match=r"unknown key\(s\) \['engines\[0\].int4'\]"):
        load_manifest(bundle)
    data["engines"][0].pop("int4")
    data["onnx"]["int4"] = data["onnx"]["fp32"]
    _write_json(bundle, data)
    with pytest.raises(CheckpointError, match=r"unknown ONNX key\(s\) \['int4'\]"):
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
    a = engine_entry("NVIDIA H200", "9.0", "10.13.0", plan="a.plan")
    b = engine_entry("Orin", "8.7", "10.3.0", plan="b.plan")
    a2 = engine_entry("NVIDIA H200", "9.0", "10.13.0", plan="a2.plan")
    m = data.with_engine(a).with_engine(b).with_engine(a2)
    assert [e.plan for e in m.engines] == ["b.plan", "a2.plan"]
    assert data.engines == ()  # the input is not modified
    assert m.find_engine("NVIDIA H200", "9.0", "10.13.0").plan == "a2.plan"
    assert m.find_engine("NVIDIA H200", "9.0", "11.0.0") is None
    save_manifest(bundle, m)
    assert load_manifest(bundle).engines == m.engines

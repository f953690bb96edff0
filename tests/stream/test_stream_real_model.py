"""The daemon with a real exported model and calibration (BundleLoader: manifest, open_backend, calibration),
and the demo's helpers."""

from __future__ import annotations

import json

import cv2
import numpy as np
import pytest

from inspector.stream.config import load_daemon_config
from inspector.stream.product import BundleLoader
from inspector.tools.demo import agreement, daemon_config, write_synthetic_video

from .harness import Line, config


def test_demo_video_ground_truth_and_config(tmp_path):
    truth = write_synthetic_video(tmp_path / "v.avi", n=12, size=64, defect_share=0.5, seed=3)
    assert len(truth) == 12 and json.loads((tmp_path / "v.json").read_text()) == truth
    assert 0 < sum(t["label"] for t in truth) < 12
    assert all((t["defect"] is None) == (t["label"] == 0) for t in truth)
    cap = cv2.VideoCapture(str(tmp_path / "v.avi"))
    n = 0
    while cap.read()[0]:
        n += 1
    assert n == 12
    decisions = {t["frame"]: "FAIL" if t["label"] else "PASS" for t in truth}
    assert agreement(decisions, truth) == 1.0
    decisions[0] = "ERROR"
    assert agreement(decisions, truth) == pytest.approx(11 / 12)
    cfg = load_daemon_config(daemon_config(tmp_path / "d.yaml", tmp_path, "cable", tmp_path / "v.avi",
                                           tmp_path / "audit", "tcp://127.0.0.1:1", "tcp://127.0.0.1:2"))
    assert cfg.pipeline.start_paused and cfg.pipeline.drop_policy == "block" and cfg.line == "demo"


@pytest.fixture(scope="module")
def exported(trained):
    """The session's tiny trained model, exported to ONNX and calibrated."""
    from inspector.calibrate.run import Policy, calibrate
    from inspector.export.run import ExportOptions, export

    home, product = trained["home"], trained["product"]
    manifest = export(product, home, ExportOptions(max_batch=4, verify=False))
    n = trained["result"].n_holdout
    record = calibrate(product, home, policy=Policy(target_frr=float(np.ceil(100 / (n + 1)) / 100)),
                       backend="onnxruntime", device="cpu", write_report=False).record
    return {**trained, "manifest": manifest, "record": record}


@pytest.mark.slow
def test_daemon_with_a_real_model(exported, tmp_path):
    home, product = exported["home"], exported["product"]
    frame = exported["manifest"].frame
    truth = write_synthetic_video(tmp_path / "line.avi", n=16, size=frame.height, defect_share=0.5, seed=9)
    cfg = config(tmp_path, {"kind": "file", "uri": str(tmp_path / "line.avi"), "at_end": "loop"}, home=str(home),
                 product=product,
                 backend="onnxruntime", device="cpu", masks={"publish": "always", "resolution": "mask"})
    loader = BundleLoader(home, "onnxruntime", "cpu")
    with Line(cfg, loader=loader) as line:
        got = line.collect(line.go(), 60, until=lambda g: len(g.results) >= len(truth))
        r = line.ctl.request("switch_product", product="missing")
        assert not r["ok"] and "missing" in r["error"] and f"still inspecting {product}" in r["error"]
        assert line.stop() == 0
        line.collect(got, 20)
    assert got.eos is not None and [r.frame_id for r in got.results] == list(range(got.eos.frames))
    rec = exported["record"]
    for r in got.results:
        assert r.decision in ("PASS", "FAIL") and r.backend == "onnxruntime"
        assert r.model_sha == exported["manifest"].model_sha and r.calibration_id == rec.id
        assert r.threshold == pytest.approx(rec.image_threshold)
        assert (r.decision == "FAIL") == (r.score >= rec.image_threshold)
        png = cv2.imdecode(np.frombuffer(got.masks[r.frame_id], np.uint8), cv2.IMREAD_UNCHANGED)
        assert png.shape == (r.mask.height, r.mask.width) == tuple(rec.mask_size)

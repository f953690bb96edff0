"""The demo's helpers (tools/demo.py): the synthetic line video's ground truth, agreement, the daemon config."""

from __future__ import annotations

import json

import cv2
import pytest

from inspector.stream.config import load_daemon_config
from inspector.tools.demo import agreement, daemon_config, write_synthetic_video


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

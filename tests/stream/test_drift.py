"""Drift: the pure monitor on made-up scores, 10,000 stationary frames, and the daemon on the demo stream with
a brightness shift injected halfway (real tiny model, real calibration)."""

from __future__ import annotations

import socket
import urllib.request

import cv2
import numpy as np
import pytest

from inspector.calibrate.record import Rate, ScoreStats
from inspector.config import load_dataclass
from inspector.protocol.messages import Result
from inspector.stream.config import DriftConfig
from inspector.stream.drift import DriftMonitor, DriftTracker, Reference, wilson_lower

from .fakes import FakeCalibration, FakeLoader
from .harness import Line, config

# The demo stream: 35% defective parts (inspector.tools.demo.DEFECT_SHARE), declared to the monitor.
DEMO_DEFECTS = 0.35
# After a +50 grey-level brightness shift, drift is raised within this many frames (measured: see docs).
DETECT_WITHIN = 150


class Cal:
    """A calibration record's drift-relevant part (duck-typed like CalibrationRecord)."""

    def __init__(self, good: np.ndarray, frr_upper: float, id: str = "cal-1", threshold: float | None = None):
        self.id, self.good_scores = id, ScoreStats.of(good)
        self.expected_frr = Rate(0.01, 0.0, frr_upper, 0, len(good))
        self.image_threshold = float(good.max() * 1.0001) if threshold is None else threshold
        self.pixel_threshold, self.min_region_area = 0.6, 4


def _cfg(**kw) -> DriftConfig:
    return load_dataclass(DriftConfig, kw, "test")


def test_wilson_lower_bound():
    assert wilson_lower(0, 100, 3.0) == 0.0
    assert wilson_lower(50, 100, 1.96) == pytest.approx(0.4038, abs=1e-4)  # the textbook value
    assert wilson_lower(50, 100, 3.0) < wilson_lower(50, 100, 1.96) < 0.5
    assert wilson_lower(500, 1000, 3.0) > wilson_lower(50, 100, 3.0)  # more data, tighter bound


def test_reject_rate_raises_then_clears_after_the_hold_time():
    ref = Reference("c", frr_upper=0.05, good_median=1.0, good_std=0.1)
    mon = DriftMonitor(ref, _cfg(window=100, min_results=50, defect_rate=0.05, hold_s=5.0))
    changes = []
    t = 0.0
    for i in range(60):  # 10% rejects: within 0.05 + 0.05
        changes.append(mon.observe("FAIL" if i % 10 == 0 else "PASS", 1.0, t := t + 0.1))
    assert mon.state == "ok" and not any(changes)
    first = None
    for i in range(100):  # every part rejected
        c = mon.observe("FAIL", 3.0, t := t + 0.1)
        if c is not None:
            first = (i, c)
            break
    assert first is not None and first[1].kind == "drift" and first[1].detail["reasons"] == ["reject_rate"]
    assert mon.state == "raised" and "reject rate" in first[1].message
    raised_at = t
    cleared = None
    while cleared is None and t < raised_at + 60:
        cleared = mon.observe("PASS", 1.0, t := t + 0.1)
    assert cleared is not None and cleared.kind == "drift_cleared" and mon.state == "ok"
    assert t - raised_at >= 5.0  # held at least hold_s
    assert mon.reject_rate() <= mon.limit


@pytest.mark.parametrize("offset", [+0.25, -0.25])
def test_score_shift_of_passing_parts_either_way_and_errors_ignored(offset):
    ref = Reference("c", frr_upper=0.05, good_median=1.0, good_std=0.1)
    mon = DriftMonitor(ref, _cfg(score_window=40, min_passing=20, min_results=20))
    rng = np.random.default_rng(0)
    assert mon.observe("ERROR", None, 0.0) is None and mon.state == "warming"
    for i in range(40):
        assert mon.observe("PASS", 1.0 + 0.1 * rng.standard_normal(), float(i)) is None
    assert mon.state == "ok" and abs(mon.score_shift()) < 0.5
    change = None
    for i in range(40):
        c = mon.observe("PASS", 1.0 + offset + 0.1 * rng.standard_normal(), 40.0 + i)
        change = change or c
    assert change is not None and change.detail["reasons"] == ["score_shift"]
    assert np.sign(change.detail["score_shift"]) == np.sign(offset) and abs(change.detail["score_shift"]) >= 1.0
    for _ in range(200):
        mon.observe("ERROR", None, 100.0)  # errors are counted elsewhere, not here
    assert mon.stats()["results"] == 80


def test_a_record_without_statistics_switches_drift_off():
    tracker = DriftTracker(_cfg(), "l1", lambda: 0.0)
    r = Result("l1", "cable", 0, None, 0.0, "PASS", 0.1, 0.4, 0.25)
    assert tracker.observe(r, FakeCalibration(), 0.0) == [] and tracker.state == "off" and tracker.stats() == {}
    assert Reference.of(FakeCalibration()) is None
    assert DriftTracker(_cfg(enabled=False), "l1", lambda: 0.0).observe(r, Cal(np.ones(9), 0.1), 0.0) == []


def test_a_new_calibration_restarts_the_monitor_and_clears_a_raised_drift():
    tracker = DriftTracker(_cfg(window=20, min_results=20, hold_s=0.0), "l1", lambda: 123.0)
    cal1, cal2 = Cal(np.linspace(0.9, 1.1, 50), 0.05, "c1"), Cal(np.linspace(0.9, 1.1, 50), 0.05, "c2")
    events = []
    for i in range(40):
        events += tracker.observe(Result("l1", "cable", i, None, 0.0, "FAIL", 5.0, 5.0, 1.0), cal1, float(i))
    assert [e.kind for e in events] == ["drift"] and events[0].detail["frame_id"] >= 19
    assert events[0].ts == 123.0 and events[0].line == "l1"
    after = tracker.observe(Result("l1", "cable", 40, None, 0.0, "PASS", 1.0, 1.0, 1.0), cal2, 40.0)
    assert [e.kind for e in after] == ["drift_cleared"] and after[0].detail["reason"] == "calibration changed"
    assert tracker.state == "warming" and tracker.stats()["calibration_id"] == "c2"


def _line_scores(rng, n: int, defects: float, good, bad) -> tuple[np.ndarray, np.ndarray]:
    labels = rng.random(n) < defects
    return np.where(labels, bad(n), good(n)), labels


@pytest.mark.parametrize("dist", ["normal", "lognormal"])
@pytest.mark.parametrize("defects", [0.0, DEMO_DEFECTS])
@pytest.mark.parametrize("seed", [1, 2, 3])
def test_a_stationary_stream_never_raises_drift_over_10000_frames(dist, defects, seed):
    """Calibration is fitted, as `inspector calibrate` does, on 100 unseen good scores of the same process; the
    line then sends 10,000 parts of that process (with ``defects`` of them defective)."""
    from inspector.calibrate.run import Policy, fit_image

    rng = np.random.default_rng(seed)
    if dist == "normal":
        def good(n):
            return rng.normal(10.0, 1.0, n)
    else:
        def good(n):
            return np.exp(rng.normal(2.3, 0.15, n))

    def bad(n):
        return good(n) + rng.uniform(0.0, 8.0, n)  # some defects pass: escapes

    cal_good = good(100)
    threshold, frr, _ = fit_image(Policy(target_frr=0.01), cal_good, np.array([]))
    cal = Cal(cal_good, frr.upper, threshold=threshold)
    mon = DriftMonitor(Reference.of(cal), _cfg(defect_rate=defects if defects else 0.02))
    scores, _ = _line_scores(rng, 10_000, defects, good, bad)
    changes = [mon.observe("FAIL" if s >= threshold else "PASS", float(s), i / 15) for i, s in enumerate(scores)]
    assert not any(changes), next(c.message for c in changes if c)
    assert mon.state == "ok"


# -- the daemon ------------------------------------------------------------------------------------------------


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_daemon_publishes_drift_events_heartbeat_field_and_prometheus(tmp_path):
    """Fake backend (score = brightness / 255): 120 dark frames, then 120 brighter ones."""
    folder = tmp_path / "frames"
    folder.mkdir()
    for i in range(240):
        cv2.imwrite(str(folder / f"{i:05d}.png"), np.full((48, 64, 3), 40 if i < 120 else 60, np.uint8))
    good = np.full(100, 40 / 255) + np.linspace(-0.01, 0.01, 100)
    cal = Cal(good, 0.05, "fake-drift", threshold=0.25)
    loader = FakeLoader({"cable": ((48, 64), cal)})
    port = _port()
    cfg = config(tmp_path, {"kind": "images", "uri": str(folder)}, metrics={"port": port, "host": "127.0.0.1"},
                 drift={"score_window": 40, "min_passing": 20, "hold_s": 0.0})
    with Line(cfg, loader=loader) as line:
        got = line.collect(line.go(), 30, until=lambda g: any(e.kind == "drift" for e in g.events)
                           and any(h.drift == "raised" for h in g.heartbeats))
        metrics = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()
        assert line.stop() == 0
    drift = [e for e in got.events if e.kind == "drift"]
    assert len(drift) == 1 and 120 <= drift[0].detail["frame_id"] <= 160, drift
    assert drift[0].detail["reasons"] == ["score_shift"] and drift[0].detail["calibration_id"] == "fake-drift"
    before = [h for h in got.heartbeats if h.results < 100]
    assert before and all(h.drift in ("warming", "ok") for h in before)
    hb = next(h for h in got.heartbeats if h.drift == "raised")
    assert hb.drift_stats["score_shift"] >= hb.drift_stats["shift_limit"] == pytest.approx(1 + 2 * 1.2533 / 10, abs=1e-3)
    assert "inspector_drift 1.0" in metrics and "inspector_drift_score_shift" in metrics


@pytest.fixture(scope="module")
def product(trained, tmp_path_factory):
    from tests.product_support import calibrated_home

    return calibrated_home(trained, tmp_path_factory.mktemp("drift"))


@pytest.mark.slow
def test_demo_stream_with_a_brightness_shift_halfway_raises_drift_in_time(product, tmp_path):
    """The demo's synthetic line (35% defects) through the real tiny model and its calibration; from frame 200
    on every frame is 50 grey levels brighter. No drift before; drift within DETECT_WITHIN frames after."""
    from inspector.tools.demo import write_synthetic_video
    from tests.product_support import TorchLoader

    home, record = product
    truth = write_synthetic_video(tmp_path / "line.avi", n=400, size=64, seed=5)
    cap = cv2.VideoCapture(str(tmp_path / "line.avi"))
    folder = tmp_path / "frames"
    folder.mkdir()
    for i in range(len(truth)):
        ok, img = cap.read()
        assert ok
        if i >= 200:
            img = np.clip(img.astype(np.int16) + 50, 0, 255).astype(np.uint8)
        cv2.imwrite(str(folder / f"{i:05d}.png"), img)
    cfg = config(tmp_path, {"kind": "images", "uri": str(folder)}, home=str(home),
                 drift={"defect_rate": DEMO_DEFECTS})
    with Line(cfg, loader=TorchLoader(home)) as line:
        got = line.collect(line.go(), 120)
    assert got.eos is not None and len(got.results) == 400
    assert all(r.calibration_id == record.id for r in got.results)
    drift = [e for e in got.events if e.kind == "drift"]
    assert drift, f"no drift raised; last heartbeat {got.heartbeats[-1].drift_stats}"
    first = drift[0].detail["frame_id"]
    print(f"drift raised at frame {first} ({first - 200} frames after the shift): {drift[0].message}")
    assert 200 <= first < 200 + DETECT_WITHIN, drift[0].message

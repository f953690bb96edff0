"""The listener's pieces: result lines, overlays in both mask spaces, frame lookup, the summary."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from inspector.client.listen import FrameLookup, Summary, draw_overlay, result_line
from inspector.protocol.messages import MaskInfo, Region, Result
from inspector.stream.decide import encode_png
from tests.stream.fakes import make_frame, write_video


def _r(**kw) -> Result:
    base = dict(line="l", product="p", frame_id=3, part_id=None, capture_ts=10.0, decision="FAIL", score=0.6,
                normalized_score=1.2, threshold=0.5, regions=(Region((8, 4, 16, 8), 128, 0.9),), frame_size=(64, 48),
                publish_ts=10.05, latency_ms=50.0)
    base.update(kw)
    return Result(**base)


def test_result_line():
    assert "FAIL score 0.6000 (1.20x threshold), 1 region" in result_line(_r())
    line = result_line(_r(decision="ERROR", score=None, normalized_score=None, error="boom", part_id="X1",
                          frame_id=None))
    assert "ERROR boom" in line and "part X1" in line and "frame     -" in line
    peak = result_line(_r(regions=(Region((8, 4, 16, 8), 128, 0.4, "peak"),)))
    assert "at its peak (no region above the pixel threshold)" in peak


def test_overlay_draws_a_peak_region_in_its_own_colour():
    frame = np.full((48, 64, 3), 100, np.uint8)
    defect = draw_overlay(_r(regions=(Region((8, 4, 16, 8), 128, 0.9),)), None, frame)
    peak = draw_overlay(_r(regions=(Region((8, 4, 16, 8), 128, 0.4, "peak"),)), None, frame)
    assert tuple(defect[11, 16]) == (0, 255, 255) and tuple(peak[11, 16]) == (0, 140, 255)


@pytest.mark.parametrize("space", ["frame", "mask"])
def test_overlay_marks_the_mask_in_frame_coordinates(space):
    frame = np.full((48, 64, 3), 100, np.uint8)
    if space == "frame":
        m = np.zeros((48, 64), np.uint8)
        m[4:12, 8:24] = 255
        info = MaskInfo(64, 48, "frame")
    else:  # an 8x8 mask grid over the ROI x=8..40, y=0..48
        m = np.zeros((8, 8), np.uint8)
        m[0:2, 0:4] = 255
        info = MaskInfo(8, 8, "mask", (8, 0, 32, 48))
    out = draw_overlay(_r(mask=info), encode_png(m), frame)
    assert out.shape == frame.shape
    inside, outside = out[6, 12].astype(int), out[40, 60].astype(int)
    assert inside[2] > inside[0] + 50  # tinted red where the mask is
    assert (outside == 100).all()
    blank = draw_overlay(_r(mask=None, regions=()), None, None)
    assert blank.shape == (48, 64, 3)


def test_frame_lookup_reads_video_and_folders(tmp_path):
    write_video(tmp_path / "v.avi", 5)
    look = FrameLookup(tmp_path / "v.avi")
    assert look.get(3).shape == (48, 64, 3) and look.get(0) is not None and look.get(9) is None
    d = tmp_path / "imgs"
    d.mkdir()
    for i in range(3):
        cv2.imwrite(str(d / f"{i}.png"), make_frame(i))
    assert FrameLookup(d).get(2).shape == (48, 64, 3) and FrameLookup(d).get(5) is None


def test_summary():
    s = Summary()
    for i in range(10):
        s.add(_r(frame_id=i, decision="PASS" if i % 2 else "FAIL", capture_ts=100.0 + i, publish_ts=100.1 + i,
                 latency_ms=10.0 + i))
    assert s.frames == 10 and s.counts == {"PASS": 5, "FAIL": 5, "ERROR": 0}
    assert s.fps() == pytest.approx(10 / 9.1) and s.percentile_ms(50) == pytest.approx(14.5)


def test_image_folder_watch_mode_takes_new_files_once_complete(tmp_path):
    from inspector.stream.config import SourceConfig
    from inspector.stream.sources import ImageDirSource

    src = ImageDirSource(SourceConfig(kind="images", uri=str(tmp_path), images_mode="watch"))
    src.open()
    assert src.read().kind == "idle"
    cv2.imwrite(str(tmp_path / "a.png"), make_frame(0))
    assert src.read().kind == "idle"  # seen once: its size must hold still over two scans
    r = src.read()
    assert r.kind == "frame" and r.image.shape == (48, 64, 3)
    assert src.read().kind == "idle"  # never twice
    (tmp_path / "b.png").write_bytes(b"half a file")
    src.read()
    assert src.read().kind == "bad"  # stable but undecodable: an unusable frame, not the end


def test_demo_breakdown():
    from inspector.tools.demo import breakdown

    truth = [{"frame": 0, "label": 0, "defect": None}, {"frame": 1, "label": 1, "defect": "cut"},
             {"frame": 2, "label": 1, "defect": "cut"}]
    rows = breakdown({0: "PASS", 1: "FAIL", 2: "ERROR"}, truth)
    assert rows[0].split()[:2] == ["good", "1/1"] and rows[1].split()[:2] == ["cut", "1/2"]

"""Frame sources (stream/sources.py) through the real daemon: corrupt and truncated videos and images, the
watched folder that inspects each file once, the GStreamer check."""

from __future__ import annotations

import os

import cv2

from inspector.stream.audit import read_records
from inspector.stream.sources import gstreamer_available

from .fakes import FRAME_HW, make_frame, write_video
from .harness import Line, config, wait_for


def test_gstreamer_check_reads_build_info():
    assert not gstreamer_available("Video I/O:\n    GStreamer:                   NO\n")
    assert gstreamer_available("Video I/O:\n    GStreamer:                   YES (1.20.3)\n")


def test_corrupt_video_frames_give_error_results(tmp_path):
    video = write_video(tmp_path / "v.avi", 30)
    data = bytearray(video.read_bytes())
    data[len(data) // 2 : len(data) // 2 + 1500] = bytes(1500)  # wipe a stretch of one frame's JPEG data
    video.write_bytes(bytes(data))
    with Line(config(tmp_path, {"kind": "file", "uri": str(video)})) as line:
        got = line.collect(line.go())
    errors = [r for r in got.results if r.decision == "ERROR"]
    assert errors and all("could not be decoded" in r.error and r.score is None for r in errors)
    assert len(got.results) == got.eos.frames == got.eos.results  # still one result per captured frame
    assert [r.frame_id for r in got.results] == list(range(len(got.results)))
    assert any(r.decision == "FAIL" for r in got.results)


def test_a_truncated_video_ends_without_errors_for_frames_that_do_not_exist(tmp_path):
    whole = write_video(tmp_path / "whole.avi", 30).read_bytes()
    for cut in (0.5, 0.9):
        video = tmp_path / f"cut{cut}.avi"
        video.write_bytes(whole[: int(len(whole) * cut)])
        with Line(config(tmp_path / str(cut), {"kind": "file", "uri": str(video)})) as line:
            got = line.collect(line.go())
        assert got.eos is not None and got.eos.reason == "source_ended"
        assert got.results and all(r.decision in ("PASS", "FAIL") for r in got.results), \
            [r.error for r in got.results if r.error]
        assert len(got.results) == got.eos.frames < 30


def test_unreadable_and_wrong_size_images_give_error_results(tmp_path):
    d = tmp_path / "imgs"
    d.mkdir()
    cv2.imwrite(str(d / "0.png"), make_frame(0))
    (d / "1.png").write_bytes(b"\x89PNG\r\n\x1a\n this is not an image")
    cv2.imwrite(str(d / "2.png"), make_frame(1, (30, 30)))
    cv2.imwrite(str(d / "3.png"), make_frame(1))
    with Line(config(tmp_path, {"kind": "images", "uri": str(d)})) as line:
        got = line.collect(line.go())
    assert [r.decision for r in got.results] == ["FAIL", "ERROR", "ERROR", "PASS"]
    assert "cannot decode" in got.results[1].error
    assert "takes uint8 (48, 64, 3)" in got.results[2].error and got.results[2].frame_size == (30, 30)
    assert [r.source_file for r in got.results] == ["0.png", "1.png", "2.png", "3.png"]


def test_truncated_jpeg_and_png_files_are_error_results_with_the_reason(tmp_path):
    """A FAIL part (bright square) cut short must never be judged: cv2.imread would grey-fill the JPEG."""
    d = tmp_path / "imgs"
    d.mkdir()
    names = []
    for ext in (".jpg", ".png"):
        whole = cv2.imencode(ext, make_frame(0))[1].tobytes()
        for cut in (0.1, 0.5, 0.9):
            name = f"{ext[1:]}_{int(cut * 100):02d}{ext}"
            (d / name).write_bytes(whole[: int(len(whole) * cut)])
            names.append(name)
        (d / f"{ext[1:]}_whole{ext}").write_bytes(whole)
    with Line(config(tmp_path, {"kind": "images", "uri": str(d)})) as line:
        got = line.collect(line.go())
    by_name = {r.source_file: r for r in got.results}
    assert set(by_name) == {*names, "jpg_whole.jpg", "png_whole.png"}
    for name in names:
        r = by_name[name]
        assert r.decision == "ERROR" and "truncated" in r.error and name in r.error, (name, r.error)
    assert by_name["jpg_whole.jpg"].decision == by_name["png_whole.png"].decision == "FAIL"
    audited = {r["source_file"]: r["decision"] for r in read_records(tmp_path / "audit") if r["type"] == "result"}
    assert audited == {n: r.decision for n, r in by_name.items()}


def _watch(tmp_path, folder) -> dict:
    return {"kind": "images", "uri": str(folder), "images_mode": "watch", "watch_poll_ms": 20,
            "reconnect_initial_s": 0.05, "reconnect_max_s": 0.1}


def _add(folder, names) -> None:
    for n in names:
        cv2.imwrite(str(folder / n), make_frame(int(n[1:4])))


def test_a_watched_folder_inspects_each_file_once_across_reopen_and_restart(tmp_path):
    folder, away = tmp_path / "in", tmp_path / "away"
    folder.mkdir()
    _add(folder, [f"p{i:03d}.png" for i in range(5)])
    cfg = config(tmp_path, _watch(tmp_path, folder))
    with Line(cfg) as line:
        got = line.go()
        line.collect(got, 10, until=lambda g: len(g.results) >= 5)
        os.replace(folder, away)  # the share goes away ...
        line.collect(got, 10, until=lambda g: any(e.kind == "camera_lost" for e in g.events))
        _add(away, [f"p{i:03d}.png" for i in range(5, 8)])
        os.replace(away, folder)  # ... and comes back with three new files
        line.collect(got, 10, until=lambda g: len(g.results) >= 8)
        wait_for(lambda: line.status()["camera"] == "up")
        line.heartbeats(got, 3)
        assert line.stop() == 0
        line.collect(got, 5)
    first = [r.source_file for r in got.results]
    assert sorted(first) == [f"p{i:03d}.png" for i in range(8)], first  # each once, none re-inspected
    _add(folder, ["p008.png", "p009.png"])
    with Line(cfg) as line:  # a restart: the state beside the audit says what was taken
        got = line.go()
        line.collect(got, 10, until=lambda g: len(g.results) >= 2)
        line.heartbeats(got, 3)
        assert line.stop() == 0
        line.collect(got, 5)
    assert [r.source_file for r in got.results] == ["p008.png", "p009.png"]
    audited = [r["source_file"] for r in read_records(tmp_path / "audit") if r["type"] == "result"]
    assert sorted(audited) == [f"p{i:03d}.png" for i in range(10)]
    assert (tmp_path / "audit" / "images-seen-t1.jsonl").is_file()
    assert all(r.frame_size == (FRAME_HW[1], FRAME_HW[0]) for r in got.results)

"""The station's web application over real HTTP and WebSocket on loopback, against a real daemon (fake product):
security (tokens, headers, no secrets in the page), line commands, and that neither a stalled browser nor a
dead station touches inspection."""

from __future__ import annotations

import json
import os
import urllib.error
import urllib.request
from dataclasses import replace
from pathlib import Path

import cv2
import numpy as np
import pytest

from inspector.errors import ConfigError
from inspector.protocol.messages import Heartbeat, Preview, Region
from inspector.station.app import StationApp
from inspector.station.config import StationConfig, load_station_config, load_tokens
from inspector.station.state import StationState
from tests.stream.fakes import frame_folder
from tests.stream.harness import Line, config

from .support import TOKEN, station_on, wait_for


def _req(url: str, method: str = "GET", body: dict | bytes | None = None, token: str | None = None):
    """(status, headers, body bytes) of one request."""
    data = body if isinstance(body, bytes) or body is None else json.dumps(body).encode()
    req = urllib.request.Request(url, data=data, method=method)
    if token is not None:
        req.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(req, timeout=10) as r:
            return r.status, r.headers, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.headers, e.read()


@pytest.fixture
def frames(tmp_path):
    return frame_folder(tmp_path / "frames", 12)


@pytest.fixture
def running(tmp_path, frames):
    cfg = config(tmp_path, {"kind": "memory", "width": 64, "height": 48, "uri": str(frames), "rate_fps": 30.0},
                 pipeline={"drop_policy": "drop_oldest"})
    with Line(cfg) as line, station_on(line, tmp_path / "home") as st:
        line.go()
        wait_for(lambda: st.state.reject_index and any(e.frame_png for e in st.state.reject_index.values()),
                 what="a reject with its frame at the station")
        yield line, st


def test_the_view_is_open_and_holds_no_secret(running):
    _line, st = running
    status, headers, body = _req(st.url)
    assert status == 200 and b"<title>inspector station</title>" in body
    assert "default-src 'self'" in headers["content-security-policy"] and headers["x-frame-options"] == "DENY"
    assert headers["x-content-type-options"] == "nosniff"
    for path in ("", "static/station.js", "static/station.css", "api/state", "api/lines/t1/live.jpg"):
        status, _, body = _req(st.url + path)
        assert status == 200, path
        assert TOKEN.encode() not in body and b"Bearer " + TOKEN.encode() not in body, path
    state = json.loads(_req(st.url + "api/state")[2])
    line = state["lines"][0]
    assert line["line"] == "t1" and line["counts"]["FAIL"] > 0 and line["controllable"] and state["writable"]
    for path in ("", "static/station.js", "static/station.css"):  # nothing is loaded from elsewhere (offline)
        body = _req(st.url + path)[2].lower()
        assert b"http://" not in body and b"https://" not in body and b"cdn" not in body, path


def test_writes_need_the_token_401_without_403_wrong(running):
    _line, st = running
    rid = next(r for r, e in st.state.reject_index.items() if e.frame_png)
    review = f"{st.url}api/rejects/{rid}/review"
    body = {"verdict": "false_reject"}
    status, headers, msg = _req(review, "POST", body)
    assert status == 401 and headers["www-authenticate"] == "Bearer" and b"token" in msg
    assert _req(review, "POST", body, token="wrong-token-but-long-enough")[0] == 403
    assert _req(f"{st.url}api/lines/t1/pause", "POST", token="")[0] == 401
    assert _req(f"{st.url}api/lines/t1/product", "POST", {"product": "cable2"})[0] == 401
    assert _req(f"{st.url}api/whoami")[0] == 401
    assert json.loads(_req(f"{st.url}api/whoami", token=TOKEN)[2]) == {"operator": "ann"}
    assert not (st.cfg.home and os.path.exists(os.path.join(st.cfg.home, "reviews")))  # nothing was stored
    # Bad bodies are refused with the reason.
    assert _req(review, "POST", {"verdict": "meh"}, token=TOKEN)[0] == 400
    assert _req(review, "POST", b"not json", token=TOKEN)[0] == 400
    assert _req(review, "POST", b"{" + b" " * 20000 + b"}", token=TOKEN)[0] == 413
    assert _req(f"{st.url}api/rejects/999999/review", "POST", body, token=TOKEN)[0] == 404
    status, _, saved = _req(review, "POST", {"verdict": "confirmed_defect", "note": "wire cut"}, token=TOKEN)
    assert status == 201 and json.loads(saved)["who"] == "ann"


def test_a_station_without_tokens_is_read_only(tmp_path, frames):
    cfg = config(tmp_path, {"kind": "memory", "width": 64, "height": 48, "uri": str(frames), "rate_fps": 30.0})
    with Line(cfg) as line, station_on(line, tmp_path, tokens={}) as st:
        line.go()
        status, _, msg = _req(f"{st.url}api/lines/t1/pause", "POST", token=TOKEN)
        assert status == 403 and b"read-only" in msg
        assert json.loads(_req(st.url + "api/state")[2])["writable"] is False


def test_pause_resume_and_switch_go_to_the_daemon(running):
    line, st = running
    assert _req(f"{st.url}api/lines/t1/pause", "POST", token=TOKEN)[0] == 200
    wait_for(lambda: line.ctl.request("status")["result"]["paused"], what="the daemon to pause")
    assert _req(f"{st.url}api/lines/t1/resume", "POST", token=TOKEN)[0] == 200
    wait_for(lambda: not line.ctl.request("status")["result"]["paused"], what="the daemon to resume")
    status, _, reply = _req(f"{st.url}api/lines/t1/product", "POST", {"product": "missing"}, token=TOKEN)
    assert status == 409 and "still inspecting cable" in json.loads(reply)["error"]
    status, _, reply = _req(f"{st.url}api/lines/t1/product", "POST", {"product": "cable2"}, token=TOKEN)
    assert status == 200 and json.loads(reply)["result"]["product"] == "cable2"
    assert _req(f"{st.url}api/lines/nope/pause", "POST", token=TOKEN)[0] == 502


def test_a_stalled_browser_and_a_dead_station_do_not_touch_inspection(tmp_path):
    """A browser that never reads (tiny receive buffer, big noisy live pictures): the station's sends to it stop
    at what the sockets buffer, and it keeps serving others and receiving; then the station is stopped mid-run
    and every frame still gets its result."""
    import socket

    from websockets.sync.client import connect

    cfg = config(tmp_path, {"kind": "memory", "width": 640, "height": 480, "frames": 700, "rate_fps": 150.0},
                 product="big", preview={"rate_fps": 60.0, "rejects": False}, audit={"enabled": False})
    wmem_max = int(Path("/proc/sys/net/ipv4/tcp_wmem").read_text().split()[2])
    with Line(cfg) as line:
        with station_on(line, tmp_path) as st:
            host, port = st.url.split("//")[1].rstrip("/").split(":")
            raw = socket.socket()
            raw.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
            raw.connect((host, int(port)))
            # never read from; its client thread queues at most one message (max_queue), the rest waits in sockets
            with connect(f"ws://{host}:{port}/ws", sock=raw, max_size=None, max_queue=1, close_timeout=1):
                got = line.go()
                mark = {"bytes": -1, "at": 0}

                def blocked(g) -> bool:  # 100 results in a row without one more byte sent to that browser
                    if st.app.ws_sent_bytes != mark["bytes"]:
                        mark.update(bytes=st.app.ws_sent_bytes, at=len(g.results))
                    return len(g.results) - mark["at"] >= 100

                line.collect(got, 60, until=blocked)
                assert blocked(got), "the sends to a browser that never reads must block"
                assert st.app.ws_sent_bytes <= wmem_max + 2 * 2**20  # what the sockets buffer: nothing queues here
                seen = st.hub.received
                line.collect(got, 30, until=lambda g: st.hub.received > seen + 50)
                assert st.hub.received > seen + 50  # still receiving
                assert _req(st.url + "api/state")[0] == 200  # and serving other browsers
        assert got.eos is None  # the station is gone, stopped mid-run; the line goes on
        line.collect(got, 30)
    assert got.eos is not None and got.eos.results == got.eos.frames == 700
    assert [r.frame_id for r in got.results] == list(range(700))
    assert isinstance(got.heartbeats[-1], Heartbeat)


def test_config_defaults_to_loopback_and_tokens_are_guarded(tmp_path, monkeypatch):
    assert StationConfig().bind == "127.0.0.1:8080"
    with pytest.raises(ConfigError, match="PUB endpoint"):
        load_station_config(None)
    with pytest.raises(ConfigError, match="host:port"):
        load_station_config(None, connect=["tcp://127.0.0.1:1"], bind="8080")
    f = tmp_path / "tokens"
    f.write_text("# operators\nann: " + "a" * 24 + "\nbob:" + "b" * 24 + "\n")
    os.chmod(f, 0o644)
    cfg = load_station_config(None, connect=["tcp://127.0.0.1:1"], tokens_file=str(f))
    with pytest.raises(ConfigError, match="chmod 600"):
        load_tokens(cfg, {})
    os.chmod(f, 0o600)
    assert load_tokens(cfg, {"INSPECTOR_STATION_TOKEN": "c" * 20}) == {"a" * 24: "ann", "b" * 24: "bob",
                                                                     "c" * 20: "operator"}
    with pytest.raises(ConfigError, match="16 characters"):
        load_tokens(StationConfig(connect=("tcp://x:1",)), {"INSPECTOR_STATION_TOKEN": "short"})
    (tmp_path / "s.yaml").write_text("connect: [tcp://127.0.0.1:1]\ngalery: 3\n")
    with pytest.raises(ConfigError, match="galery"):
        load_station_config(tmp_path / "s.yaml")


def test_a_reject_that_came_only_as_a_jpeg_picture_is_shown_but_not_reviewable(tmp_path, frames):
    cfg = config(tmp_path, {"kind": "memory", "width": 64, "height": 48, "uri": str(frames), "rate_fps": 30.0},
                 preview={"reject_cpu": 0.0})
    with Line(cfg) as line, station_on(line, tmp_path) as st:
        line.go()
        entry = wait_for(lambda: next((e for e in list(st.state.reject_index.values()) if e.picture), None),
                         what="a reject picture")
        assert entry.frame_png is None
        assert _req(f"{st.url}api/rejects/{entry.rid}.jpg")[0] == 200
        status, _, msg = _req(f"{st.url}api/rejects/{entry.rid}/review", "POST", {"verdict": "false_reject"},
                              token=TOKEN)
        assert status == 409 and b"reject_cpu" in msg
        snap = json.loads(_req(st.url + "api/state")[2])["lines"][0]["rejects"]
        assert any(r["has_frame"] and not r["reviewable"] for r in snap)


def _live(app: StationApp, line: str) -> tuple[int, dict, bytes]:
    """(seq, header, JPEG) of the live message the page would get."""
    seq, data = app.live_message(line)
    n = int.from_bytes(data[:2], "big")
    return seq, json.loads(data[2 : 2 + n]), data[2 + n :]


def test_the_page_gets_the_daemons_live_jpeg_as_it_came_with_the_boxes_in_its_pixels(caplog):
    state = StationState()
    app = StationApp(StationConfig(connect=("tcp://127.0.0.1:1",)), state, None, {})
    assert app.live_message("l1") is None  # nothing yet
    # a 128x96 frame previewed at 64x48: the region's box is halved into the JPEG's pixels
    header = Preview("l1", 1.0, 7, "cable", "FAIL", 2.0, (Region((40, 20, 16, 8), 128, 0.9),), (128, 96), 64, 48,
                     "jpeg", "live", 101.0)
    jpeg = cv2.imencode(".jpg", np.full((48, 64, 3), 90, np.uint8))[1].tobytes()
    state.apply(header, jpeg, 0.0, 0.0)
    seq, head, pic = _live(app, "l1")
    assert pic == jpeg  # not decoded, not encoded again
    assert (seq, head["seq"], head["frame_id"], head["decision"]) == (1, 1, 7, "FAIL")
    assert head["boxes"] == [[20.0, 10.0, 8.0, 4.0]]
    # a live preview that is not a JPEG is not forwarded (the page keeps its last picture), and is logged once
    state.apply(replace(header, frame_id=8), b"not a jpeg", 0.0, 0.0)
    assert app.live_message("l1") is None and app.live_message("l1") is None
    assert sum("not a JPEG (frame 8)" in r.getMessage() for r in caplog.records) == 1
    # sizes of 0, or a box that is not numbers: the picture still goes, without the outlines that cannot be read
    state.apply(replace(header, frame_id=9, width=0, frame_size=(0, 0)), jpeg, 0.0, 0.0)
    assert _live(app, "l1")[1]["frame_id"] == 9
    state.apply(replace(header, frame_id=10, regions=(Region(("a", 2, 3, 4), 1, 0.5),)), jpeg, 0.0, 0.0)
    _, head, pic = _live(app, "l1")
    assert (head["frame_id"], head["boxes"], pic) == (10, [], jpeg)
    assert any("unreadable regions (frame 10)" in r.getMessage() for r in caplog.records)

"""`inspector soak` (tools/soak.py, soakfaults.py, soakreport.py): the verdicts from made-up observations, and a
short real soak of the daemon process (fake product) with every fault class injected."""

from __future__ import annotations

import contextlib
import sys
from pathlib import Path

import cv2
import pytest
import yaml

from inspector.errors import ConfigError
from inspector.protocol.messages import EndOfStream
from inspector.stream.config import load_daemon_config
from inspector.tools.soak import Observed, SoakOptions, loopback, prepare, run_soak
from inspector.tools.soakfaults import FAULTS, Injection
from inspector.tools.soakreport import report
from tests.stream.fakes import make_frame
from tests.stream.smallfs import tmpfs

REPO = Path(__file__).resolve().parents[2]


def _ports() -> tuple[int, int]:
    import socket

    out = []
    for _ in range(2):
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            out.append(s.getsockname()[1])
    return out[0], out[1]


def _config(tmp_path: Path, audit_dir: Path | None = None, **source) -> Path:
    folder = tmp_path / "parts"
    folder.mkdir(exist_ok=True)
    for i in range(12):
        cv2.imwrite(str(folder / f"p{i:02d}.png"), make_frame(i))
    pub, ctl = _ports()
    cfg = {"line": "soak", "home": str(tmp_path), "product": "cable",
           "source": {"kind": "images", "uri": str(folder), "at_end": "loop", "rate_fps": 40,
                      "reconnect_initial_s": 0.05, "reconnect_max_s": 0.2, **source},
           "zmq": {"publish": [f"tcp://127.0.0.1:{pub}"], "control": f"tcp://127.0.0.1:{ctl}", "heartbeat_ms": 200},
           "audit": {"dir": str(audit_dir or tmp_path / "audit"), "fsync": "interval", "image_reserve_mb": 0.5},
           "log": {"format": "json"}}
    path = tmp_path / "line.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


def test_the_report_finds_lost_and_duplicated_decisions(tmp_path):
    cfg = load_daemon_config(_config(tmp_path))
    opts = SoakOptions(tmp_path / "line.yaml", 1.0, ("sighup",), tmp_path / "out", warmup_s=10, min_each=1)
    obs = Observed()
    t0 = 1e9
    obs.results = [(i, t0 + 40 + i * 0.1, 20.0, "PASS") for i in range(100)] + [(5, t0 + 60, 20.0, "PASS")]
    obs.eos = EndOfStream("soak", t0 + 70, "signal", frames=103, results=102, dropped=1, trigger_errors=0)
    obs.samples = [(t0 + 1, 100 << 20, 30, 12), (t0 + 11, 100 << 20, 30, 12), (t0 + 60, 103 << 20, 31, 12)]
    obs.injections = [Injection("sighup", t0 + 20, t0 + 20)]
    obs.events = [("calibration_reloaded", t0 + 21)]
    r = report(opts, cfg, obs, 0, t0, (0, 0, 0), (0, 0, 0))
    verdict = {p["promise"]: p["ok"] for p in r["promises"]}
    assert r["decisions"]["duplicated"]["subscriber"] == 1 and r["decisions"]["lost"]["subscriber"] == 1
    assert verdict["no lost decisions"] is False and verdict["no duplicated decisions"] is False
    assert r["process"]["rss_mb"]["growth_after_warmup_pct"] == 3.0 and not verdict["RSS growth after the warm-up < 2%"]
    assert not verdict["open files and threads flat"]
    assert verdict["every fault class injected >= 1 times with its effect"] and r["faults"]["sighup"]["effect_seen"] == 1
    assert r["pass"] is False and r["lines"][-1] == "soak: FAIL"


def test_prepare_refuses_what_a_soak_cannot_measure(tmp_path):
    path = _config(tmp_path, at_end="stop")
    with pytest.raises(ConfigError, match="at_end: loop"):
        prepare(SoakOptions(path, 1.0, out=tmp_path / "o"))
    with pytest.raises(ConfigError, match="unknown fault 'fire'"):
        prepare(SoakOptions(_config(tmp_path), 1.0, ("fire",), out=tmp_path / "o"))
    daemon_cfg, ends = prepare(SoakOptions(_config(tmp_path), 1.0, out=tmp_path / "o"))
    assert load_daemon_config(daemon_cfg).pipeline.start_paused and ends["control"].startswith("tcp://127.0.0.1:")
    assert loopback("tcp://*:5555") == "tcp://127.0.0.1:5555"


@pytest.mark.slow
@pytest.mark.parametrize("small_fs", [False, True], ids=["simulated-disk", "full-tmpfs"])
def test_a_short_soak_of_the_daemon_process_keeps_every_promise(tmp_path, monkeypatch, small_fs):
    """Half a minute, every fault class once, the real daemon process with the fake product; the disk fault
    either swaps the audit directory for a file or (root) fills a real 16 MB tmpfs."""
    monkeypatch.setenv("PYTHONPATH", str(REPO))
    monkeypatch.chdir(REPO)
    with contextlib.ExitStack() as stack:
        audit = stack.enter_context(tmpfs(tmp_path / "disk", "16m")) / "audit" if small_fs else None
        opts = SoakOptions(_config(tmp_path, audit), 0.5, FAULTS, tmp_path / "out", every_s=3.5, warmup_s=3.0,
                           small_fs=small_fs, min_each=1, daemon=(sys.executable, "-m", "tests.stream.fakes"),
                           seconds=(("camera", 1.5), ("subscriber", 1.0), ("garbage", 1.5), ("disk", 1.5)))
        lines: list[str] = []
        r = run_soak(opts, say=lines.append)
    verdict = {p["promise"]: p for p in r["promises"]}
    for promise in ("no lost decisions", "no duplicated decisions", "control answered throughout",
                    "SIGTERM: end of stream and exit 0", "every fault class injected >= 1 times with its effect"):
        assert verdict[promise]["ok"], (promise, verdict[promise]["detail"], r["events"])
    assert r["results_published"] > 100 and r["decisions"]["audit_records"] == r["results_published"]
    assert r["control"]["garbage_sent"] > 0 and r["control"]["garbage_unanswered"] == 0
    assert {"quiet", "garbage", "disk", "before_garbage"} <= set(r["latency_ms"])
    assert (tmp_path / "out" / "soak.json").is_file() and lines[-1].startswith("soak: ")
    disk = next(i for i in r["injections"] if i["kind"] == "disk")
    assert disk["injected"] and ("filled" in disk["note"]) == small_fs, disk

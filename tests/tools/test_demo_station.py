"""`inspector demo --station`: reuses what `inspector demo` made, runs the line in a loop with the station, prints
the URL, and stops cleanly (here on an event instead of Ctrl-C)."""

from __future__ import annotations

import json
import threading
import urllib.request

import pytest

from inspector.tools.demo_station import run_station_demo
from tests.station.support import wait_for

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def product(trained, tmp_path_factory):
    from tests.product_support import calibrated_home

    return calibrated_home(trained, tmp_path_factory.mktemp("demo-station"))


def test_demo_station_keeps_the_line_and_the_station_running_until_stopped(product, tmp_path, monkeypatch):
    from inspector.tools.demo import write_synthetic_video

    monkeypatch.delenv("INSPECTOR_STATION_TOKEN", raising=False)
    home, record = product
    out = tmp_path / "out"
    out.mkdir()
    write_synthetic_video(out / "line.avi", n=20, size=64, seed=4)
    said, urls, rc = [], [], []
    stop = threading.Event()
    t = threading.Thread(target=lambda: rc.append(run_station_demo(
        home=home, out=out, bind="127.0.0.1:0", backend="torch", say=said.append, stop=stop, on_url=urls.append)),
        daemon=True)
    t.start()
    try:
        url = wait_for(lambda: urls and urls[0], 120, "the station's URL")

        def looped():
            lines = json.loads(urllib.request.urlopen(url + "api/state", timeout=5).read())["lines"]
            return lines and lines[0]["total"] > 30 and lines[0]

        line = wait_for(looped, 180, "more results than the video has frames (it loops)")
    finally:
        stop.set()
        t.join(60)
    assert rc == [0] and not t.is_alive()
    assert line["line"] == "demo" and line["calibration_id"] == record.id and line["state"] == "running"
    assert line["expected_frr"]["upper"] == pytest.approx(record.expected_frr.upper)
    text = "\n".join(said)
    assert "using the product 'cable'" in text and f"station: {url}" in text
    token = next(s for s in said if s.startswith("operator token")).rsplit(" ", 1)[1]
    assert len(token) >= 16
    with pytest.raises(OSError):  # the station is gone
        urllib.request.urlopen(url, timeout=2)


def test_make_demo_stays_finite_ends_with_its_summary_and_names_the_station_command(monkeypatch, tmp_path, capsys):
    """`inspector demo` (what `make demo` runs) with its slow steps stubbed: the summary line is the last line,
    and the line before the summary names `inspector demo --station`."""
    from inspector.cli import main
    from inspector.client.listen import Summary
    from inspector.tools import demo

    truth = [{"frame": 0, "label": 0, "defect": None}, {"frame": 1, "label": 1, "defect": "cut"}]

    def prepare(home, out, data, product, frames, epochs, say, step=None):
        return demo.Prepared(tmp_path, tmp_path, "cable", tmp_path / "line.avi", truth)

    summary = Summary()
    summary.counts.update(PASS=1, FAIL=1)
    monkeypatch.setattr(demo, "prepare", prepare)
    monkeypatch.setattr(demo, "_run_line", lambda *a: {"summary": summary, "decisions": {0: "PASS", 1: "FAIL"}})
    assert main(["demo", "--home", str(tmp_path), "--out", str(tmp_path)]) == 0
    lines = [line for line in capsys.readouterr().out.splitlines() if line.strip()]
    assert lines[-1].startswith("demo: frames=2 pass=1 fail=1 error=0 agreement=1.000")
    assert "`inspector demo --station" in lines[-2] and "http://127.0.0.1:8080/" in lines[-2]

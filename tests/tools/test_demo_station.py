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

"""`inspector run` (cli/run.py): --check, a bad config, a GStreamer pipeline without GStreamer, a missing bundle."""

from __future__ import annotations

import pytest

from inspector.cli import main
from tests.stream.fakes import daemon_yaml


def test_cli_run_check_and_bad_config(tmp_path, capsys):
    good = daemon_yaml(tmp_path / "ok.yaml", {"kind": "memory", "width": 64, "height": 48}, "tcp://127.0.0.1:0",
                       "", tmp_path / "audit")
    assert main(["run", "--config", str(good), "--check"]) == 0
    assert "OK" in capsys.readouterr().out
    bad = tmp_path / "bad.yaml"
    bad.write_text("product: cable\npipeline: {drop_policy: maybe}\n")
    assert main(["run", "--config", str(bad)]) == 1
    err = capsys.readouterr().err
    assert "inspector run: error:" in err and "pipeline.drop_policy" in err and "bad.yaml" in err


def test_gstreamer_pipeline_without_gstreamer_fails_at_start_with_a_hint(tmp_path, capsys):
    from inspector.stream.sources import gstreamer_available

    if gstreamer_available():
        pytest.skip("this OpenCV has GStreamer; the refusal is for builds without it (PyPI wheels)")
    cfg = daemon_yaml(tmp_path / "g.yaml", {"kind": "gstreamer", "uri": "videotestsrc ! appsink"}, "tcp://127.0.0.1:0",
                      "", tmp_path / "audit")
    assert main(["run", "--config", str(cfg)]) == 1
    err = capsys.readouterr().err
    assert "GStreamer: NO" in err and "system-site-packages" in err and "JetPack" in err
    assert "g.yaml" in err and "source.kind" in err  # found before start, naming the key and the file


def test_cli_run_refuses_a_product_without_a_bundle(tmp_path, capsys):
    cfg = daemon_yaml(tmp_path / "d.yaml", {"kind": "memory", "width": 64, "height": 48}, "tcp://127.0.0.1:0",
                      "", tmp_path / "audit")
    assert main(["run", "--config", str(cfg)]) == 1
    err = capsys.readouterr().err
    assert "inspector run: error:" in err and "cable" in err and "d.yaml" in err  # names the config it came from


def test_an_endpoint_taken_at_start_names_the_key_and_the_file(tmp_path, capsys, monkeypatch):
    import zmq

    from tests.stream.fakes import FakeLoader

    monkeypatch.setattr("inspector.stream.daemon.BundleLoader", lambda *a, **k: FakeLoader())  # the product loads
    taken = zmq.Context.instance().socket(zmq.PUB)
    port = taken.bind_to_random_port("tcp://127.0.0.1")
    try:
        cfg = daemon_yaml(tmp_path / "d.yaml", {"kind": "memory", "width": 64, "height": 48},
                          "tcp://127.0.0.1:0", f"tcp://127.0.0.1:{port}", tmp_path / "audit")
        assert main(["run", "--config", str(cfg)]) == 1
    finally:
        taken.close(0)
    err = capsys.readouterr().err
    line = next(ln for ln in err.splitlines() if ln.startswith("inspector run: error:"))
    assert "d.yaml" in line and "zmq.control" in line and str(port) in line and "Traceback" not in err

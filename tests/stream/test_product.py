"""What the inference thread runs (stream/product.py): BundleLoader with a real exported model, and with real
calibration records: a hand-edited, corrupt or unreadable one is refused and the running one stays."""

from __future__ import annotations

import dataclasses

import cv2
import numpy as np
import pytest

from inspector.calibrate import run as calibrate_run
from inspector.calibrate.record import calibration_path, load_calibration, save_calibration
from inspector.manifest import FileRef
from inspector.stream.product import BundleLoader, Product
from inspector.tools.demo import write_synthetic_video
from tests.calibrate.test_record import SHA, make_record
from tests.manifest_support import make_manifest

from .fakes import FakeLoader
from .harness import Line, config


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
        assert line.status()["calibration_signed"] is True  # `inspector calibrate` sealed it
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


class RecordLoader(FakeLoader):
    """The fake backend with real calibration records: load and reload go through BundleLoader's code."""

    def __init__(self, home) -> None:
        super().__init__()
        self.home, self.real = home, BundleLoader(home)

    def load(self, name: str) -> Product:
        p = super().load(name)
        manifest = make_manifest(name, checkpoint=FileRef("model.pt", SHA))  # a typed Manifest, as on disk
        return dataclasses.replace(p, calibration=self.real._calibration(name, manifest), manifest=manifest)

    def reload_calibration(self, product: Product) -> Product:
        return self.real.reload_calibration(product)


def test_a_hand_edited_or_unreadable_calibration_is_refused_and_the_old_one_stays(tmp_path):
    """issue 13, 4: 1e30 (everything passes), -5 (everything fails) with the same id, a binary file."""
    path = calibration_path(tmp_path, "cable")
    save_calibration(make_record(image_threshold=0.25), path)
    original = load_calibration(tmp_path, "cable")
    cfg = config(tmp_path, {"kind": "memory", "width": 64, "height": 48, "rate_fps": 100})
    with Line(cfg, loader=RecordLoader(tmp_path)) as line:
        got = line.go()
        text = path.read_text()
        for bad in (text.replace("image_threshold: 0.25", "image_threshold: 1.0e+30"),
                    text.replace("image_threshold: 0.25", "image_threshold: -5"),
                    bytes(range(256)) * 4):
            path.write_bytes(bad) if isinstance(bad, bytes) else path.write_text(bad)
            r = line.ctl.request("reload_calibration")
            assert not r["ok"] and f"still using calibration {original.id}" in r["error"], r
            assert "internal error" not in r["error"]
        line.collect(got, 5, until=lambda g: sum(e.kind == "calibration_reload_failed" for e in g.events) >= 3)
        failed = [e for e in got.events if e.kind == "calibration_reload_failed"]
        assert len(failed) == 3 and all("content hash mismatch" in e.detail["error"] for e in failed[:2])
        assert "not a UTF-8 text file" in failed[2].detail["error"]
        st = line.status()
        assert st["calibration_id"] == original.id and st["calibration_signed"] is True
        n = len(got.results)
        line.collect(got, 5, until=lambda g: len(g.results) >= n + 5)
        assert all(r.threshold == 0.25 and r.calibration_id == original.id for r in got.results)
        # The deliberate change: a new record with a new id; the old one kept, dated.
        path.write_text(text)
        rec, _, archived = calibrate_run.set_threshold("cable", 0.3, home=tmp_path)
        assert rec.id != original.id and rec.signed and rec.policy == "manual" and archived.is_file()
        assert load_calibration(tmp_path, "cable").image_threshold == 0.3
        r = line.ctl.request("reload_calibration")
        assert r["ok"] and r["result"]["calibration_id"] == rec.id and r["result"]["image_threshold"] == 0.3
        line.collect(got, 5, until=lambda g: g.results[-1].calibration_id == rec.id)
        assert got.results[-1].threshold == 0.3


def test_a_record_from_before_hashes_loads_flagged_unsigned(tmp_path):
    path = calibration_path(tmp_path, "cable")
    save_calibration(make_record(image_threshold=0.25), path)
    legacy = "\n".join(ln for ln in path.read_text().splitlines() if not ln.startswith("content_sha256"))
    path.write_text(legacy + "\n")
    cfg = config(tmp_path, {"kind": "memory", "width": 64, "height": 48, "rate_fps": 100})
    with Line(cfg, loader=RecordLoader(tmp_path)) as line:
        got = line.go()
        line.collect(got, 5, until=lambda g: any(e.kind == "calibration_unsigned" for e in g.events))
        ev = next(e for e in got.events if e.kind == "calibration_unsigned")
        assert "inspector calibrate --product cable --sign" in ev.message
        assert line.status()["calibration_signed"] is False
        line.collect(got, 5, until=lambda g: len(g.results) >= 3)
        assert got.results[-1].threshold == 0.25  # it inspects: refusing would stop the line at the upgrade

"""The calibration record: YAML round trip, archiving, strict loading, refusal of another model's record."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import yaml

from inspector.calibrate import record as cr
from inspector.calibrate.record import (
    CalibrationRecord,
    Rate,
    ScoreStats,
    calibration_path,
    load_calibration,
    report_path,
    save_calibration,
)
from inspector.errors import CalibrationError
from inspector.manifest import FileRef, Manifest
from tests.manifest_support import make_manifest

SHA = "a" * 64


def make_record(**changes) -> CalibrationRecord:
    rec = CalibrationRecord(
        id="cable-20250101T000000Z", product="cable", created="2025-01-01T00:00:00+00:00", model_sha256=SHA,
        onnx_sha256={"fp32": "b" * 64}, policy="conformal", parameters={"target_frr": 0.05},
        image_threshold=2.5, pixel_threshold=1.25, pixel_policy="conformal", min_region_area=12, mask_size=(64, 64),
        n_good=21, n_defective=0, good_scores=ScoreStats.of(np.linspace(1, 2.4, 21)), defective_scores=None,
        expected_frr=Rate(1 / 22, 0.0, 0.161, 0, 21, "conformal"), expected_escape=None,
        backend={"backend": "torch", "device": "cpu"}, versions={"inspector": "0.1.0"},
        data={"images": [{"name": "000.png", "label": 0, "sha256": "c" * 64}]},
    )
    return dataclasses.replace(rec, **changes)


def manifest(sha: str) -> Manifest:
    return make_manifest("cable", checkpoint=FileRef("model.pt", sha))


def test_round_trip_is_human_readable(tmp_path):
    rec = make_record()
    path = calibration_path(tmp_path, "cable")
    assert save_calibration(rec, path) is None
    text = path.read_text()
    assert text.startswith("# inspector calibration record") and "image_threshold: 2.5" in text
    assert load_calibration(tmp_path, "cable", manifest(SHA)) == cr.signed(rec)  # as written, sealed by its hash


def test_previous_record_is_kept_under_a_dated_name(tmp_path):
    path = calibration_path(tmp_path, "cable")
    save_calibration(make_record(), path)
    report_path(tmp_path, "cable").write_bytes(b"png")
    newer = make_record(id="cable-20250202T000000Z", created="2025-02-02T00:00:00+00:00", image_threshold=3.0)
    archived = save_calibration(newer, path)
    assert archived.name == "cable.20250101T000000Z.yaml"
    assert yaml.safe_load(archived.read_text())["image_threshold"] == 2.5
    assert (archived.parent / "cable.20250101T000000Z.report.png").read_bytes() == b"png"
    assert load_calibration(tmp_path, "cable").image_threshold == 3.0
    # a second record from the same second does not overwrite the first archive
    again = save_calibration(make_record(created="2025-02-02T00:00:00+00:00"), path)
    assert again.name == "cable.20250202T000000Z.yaml"
    save_calibration(make_record(created="2025-02-02T00:00:00+00:00"), path)
    assert (path.parent / "cable.20250202T000000Z.1.yaml").is_file()


def test_record_for_another_model_is_refused(tmp_path):
    save_calibration(make_record(), calibration_path(tmp_path, "cable"))
    with pytest.raises(CalibrationError, match=r"re-run `inspector calibrate --product cable`") as e:
        load_calibration(tmp_path, "cable", manifest("d" * 64))
    assert "aaaaaaaaaaaa" in str(e.value) and "dddddddddddd" in str(e.value)


def test_missing_and_wrong_product(tmp_path):
    with pytest.raises(CalibrationError, match="run `inspector calibrate --product cable`"):
        load_calibration(tmp_path, "cable")
    save_calibration(make_record(product="other"), calibration_path(tmp_path, "cable"))
    with pytest.raises(CalibrationError, match="product 'other'"):
        load_calibration(tmp_path, "cable")


def test_strict_loading_names_the_bad_key(tmp_path):
    path = calibration_path(tmp_path, "cable")
    save_calibration(make_record(), path)
    data = yaml.safe_load(path.read_text())
    data["image_treshold"] = 1.0
    path.write_text(yaml.safe_dump(data))
    with pytest.raises(CalibrationError, match="image_treshold"):
        load_calibration(tmp_path, "cable")
    data.pop("image_treshold")
    data["policy"] = "guess"
    path.write_text(yaml.safe_dump(data))
    with pytest.raises(CalibrationError, match="'policy'.*allowed"):
        load_calibration(tmp_path, "cable")


def test_rate_contains():
    r = Rate(0.05, 0.01, 0.2, 1, 20, "")
    assert r.contains(0.1) and not r.contains(0.25) and not r.contains(0.0)


def test_the_content_hash_seals_the_record(tmp_path):
    path = calibration_path(tmp_path, "cable")
    save_calibration(make_record(), path)
    rec = load_calibration(tmp_path, "cable")
    assert rec.signed and rec.content_sha256 == cr.content_hash(rec) and len(rec.content_sha256) == 64
    assert cr.content_hash(make_record(image_threshold=2.6)) != cr.content_hash(make_record())
    text = path.read_text()
    for edit in (("image_threshold: 2.5", "image_threshold: 1.0e+30"), ("image_threshold: 2.5", "image_threshold: -5"),
                 ("min_region_area: 12", "min_region_area: 1")):
        assert edit[0] in text
        path.write_text(text.replace(*edit))
        with pytest.raises(CalibrationError, match="content hash mismatch") as e:
            load_calibration(tmp_path, "cable")
        assert "--set-threshold" in str(e.value) and str(path) in str(e.value)


def test_a_record_without_a_hash_still_loads_unsigned(tmp_path):
    path = calibration_path(tmp_path, "cable")
    save_calibration(make_record(), path)
    path.write_text("\n".join(ln for ln in path.read_text().splitlines() if not ln.startswith("content_sha256")))
    rec = load_calibration(tmp_path, "cable", manifest(SHA))
    assert not rec.signed and rec.image_threshold == 2.5


def test_an_unreadable_record_is_a_calibration_error(tmp_path):
    path = calibration_path(tmp_path, "cable")
    path.parent.mkdir(parents=True)
    path.write_bytes(bytes(range(256)))
    with pytest.raises(CalibrationError, match="not a UTF-8 text file"):
        load_calibration(tmp_path, "cable")

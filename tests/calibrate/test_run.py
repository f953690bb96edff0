"""Calibration end to end on the tiny trained model: hold-out, --data, refusals, the report, --check, the CLI."""

from __future__ import annotations

import dataclasses
import json
import logging
import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest

from inspector.bundle import load_checkpoint, model_path
from inspector.calibrate import rule
from inspector.calibrate import thresholds as th
from inspector.calibrate.record import calibration_path, load_calibration, save_calibration
from inspector.calibrate.run import Policy, calibrate, check
from inspector.cli import main
from inspector.data.dataset import fingerprint, load_dataset
from inspector.data.synthetic import write_product
from inspector.errors import CalibrationError, CheckpointError
from inspector.files import sha256_file
from inspector.manifest import load_manifest
from tests.calibration_support import TorchFrames, copy_home, write_manifest

# 8 held-out good images (40 x 0.2): alpha must be >= 1/9
ALPHA = 0.2


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """Scoring a few 64-px images gains nothing from threads, and on a busy machine they cost a lot."""
    import torch

    old = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(old)


@pytest.fixture
def home(trained, tmp_path) -> Path:
    h = copy_home(trained["home"], tmp_path / "home")
    write_manifest(h / "engines" / "cable", sha256_file(model_path(h, "cable")))
    return h


@pytest.fixture(scope="module")
def backend(trained) -> TorchFrames:
    return TorchFrames(model_path(trained["home"], "cable"))


@pytest.fixture(scope="module")
def fresh_folder(tmp_path_factory) -> Path:
    """Images the model never saw, in the folder layout: good/, <defect>/, masks/ and one 80x80 image."""
    src = write_product(tmp_path_factory.mktemp("fresh") / "mv", n_train=10, n_test_good=4, n_test_per_defect=2,
                        size=64, defects=("cut", "spot", "missing_wire"), seed=7)
    root = tmp_path_factory.mktemp("fresh") / "folder"
    (root / "good").mkdir(parents=True)
    (root / "masks").mkdir()
    for i, p in enumerate(sorted((src / "train" / "good").glob("*.png")) + sorted((src / "test" / "good").glob("*.png"))):
        shutil.copy(p, root / "good" / f"g{i:02d}.png")
    big = cv2.resize(cv2.imread(str(root / "good" / "g00.png")), (80, 80))
    cv2.imwrite(str(root / "good" / "big.png"), big)
    for kind in ("cut", "spot", "missing_wire"):
        (root / kind).mkdir()
        for p in sorted((src / "test" / kind).glob("*.png")):
            shutil.copy(p, root / kind / f"{kind}_{p.stem}.png")
            shutil.copy(src / "ground_truth" / kind / f"{p.stem}_mask.png", root / "masks" / f"{kind}_{p.stem}_mask.png")
    return root


def test_default_calibration_uses_the_holdout(home, backend, trained):
    ckpt = load_checkpoint(model_path(home, "cable"))
    run = calibrate("cable", home, policy=Policy(target_frr=ALPHA), backend=backend)
    rec = run.record
    assert (rec.n_good, rec.n_defective, rec.policy) == (8, 0, "conformal")
    assert {i["sha256"] for i in rec.data["images"]} == set(ckpt.fingerprints("holdout"))
    # k = ceil(9 * 0.8) = 8 = n: the threshold lies just above the largest held-out score
    good = run.scored.scores
    assert rec.image_threshold > good.max() and not rule.fails(good, rec.image_threshold).any()
    assert rec.expected_frr.estimate == pytest.approx(1 / 9)
    assert (rec.expected_frr.lower, rec.expected_frr.upper) == pytest.approx(th.clopper_pearson(0, 8))
    assert rec.expected_escape is None and rec.pixel_policy == "conformal" and rec.min_region_area >= 1
    assert rec.model_sha256 == ckpt.sha256 and rec.onnx_sha256 == {"fp32": "0" * 64}
    assert rec.backend["backend"] == "test-torch" and "torch" in rec.versions
    assert load_calibration(home, "cable", load_manifest(home / "engines" / "cable")) == rec
    assert run.report.stat().st_size > 10_000 and run.archived is None
    assert not backend.closed  # a Backend passed in stays the caller's


def test_backend_scores_match_the_model_path(home, backend):
    """The Backend path (raw frames in) gives the scores `evaluate` computes from the same images."""
    import torch

    from inspector.bundle import build_model
    from inspector.evaluate.run import predict
    from inspector.model.preprocess import Preprocess

    run = calibrate("cable", home, policy=Policy(target_frr=ALPHA), backend=backend, write_report=False)
    ckpt = load_checkpoint(model_path(home, "cable"))
    model = build_model(ckpt)
    pred = predict(model, Preprocess(model.cfg.input_size, *ckpt.mean_std), run.scored.samples, torch.device("cpu"))
    np.testing.assert_allclose(run.scored.scores, pred.scores, rtol=1e-4, atol=1e-5)


def test_too_few_images_for_the_target_is_refused_before_scoring(home, backend):
    seen = backend.frames_seen
    with pytest.raises(CalibrationError) as e:
        calibrate("cable", home, policy=Policy(target_frr=0.01), backend=backend)
    msg = str(e.value)
    assert "8 held-out good images are too few" in msg and "0.1111" in msg and "91 more" in msg
    assert backend.frames_seen == seen and not calibration_path(home, "cable").exists()
    with pytest.raises(CalibrationError, match="policy f1 needs defective images"):
        calibrate("cable", home, policy=Policy(name="f1", target_frr=ALPHA), backend=backend)
    assert backend.frames_seen == seen


def test_training_images_are_refused_by_name(home, backend, trained):
    with pytest.raises(CalibrationError, match="the model was trained on them") as e:
        calibrate("cable", home, data=trained["data"], policy=Policy(target_frr=ALPHA), backend=backend)
    assert "train/good/" in str(e.value) and "32 of the" in str(e.value)
    assert not calibration_path(home, "cable").exists()


def test_manifest_of_another_model_is_refused(home, backend):
    write_manifest(home / "engines" / "cable", "f" * 64)
    with pytest.raises(CheckpointError, match="re-run `inspector export --product cable`"):
        calibrate("cable", home, policy=Policy(target_frr=ALPHA), backend=backend)


def test_f1_policy_with_defects_masks_and_a_resized_image(home, backend, fresh_folder, caplog):
    caplog.set_level(logging.WARNING)
    run = calibrate("cable", home, data=fresh_folder, policy=Policy(name="f1", target_frr=ALPHA), backend=backend)
    rec, sc = run.record, run.scored
    assert (rec.n_good, rec.n_defective) == (8 + 15, 6)  # hold-out + 14 fresh + the 80x80 one; 3 kinds x 2
    assert rec.data["resized"] == {"80x80": 1} and "resized to the frame size 64x64" in caplog.text
    good, bad = sc.scores[sc.labels == 0], sc.scores[sc.labels == 1]
    assert th.f1_threshold(good, bad).threshold == rec.image_threshold
    assert rec.pixel_policy == "f1" and sc.has_mask.all() and sc.masks[sc.labels == 1].any()
    assert rec.expected_escape is not None and rec.expected_escape.n == 6
    assert "leave-one-out" in rec.expected_frr.basis
    # a second calibration keeps the first under a dated name
    again = calibrate("cable", home, data=fresh_folder, policy=Policy(target_frr=ALPHA), backend=backend,
                      write_report=False)
    assert again.archived is not None and again.archived.is_file() and again.record.policy == "conformal"
    assert again.record.expected_escape.basis.startswith("count of defective images")
    # checking on the very images the calibration was fitted on is refused
    with pytest.raises(CalibrationError, match="was fitted on them"):
        check("cable", fresh_folder, home, backend=backend)


def test_check_on_the_test_split(home, backend, trained, tmp_path):
    rec = calibrate("cable", home, policy=Policy(target_frr=ALPHA), backend=backend, write_report=False).record
    out = check("cable", trained["data"], home, backend=backend, json_out=tmp_path / "check.json")
    test = load_dataset(trained["data"]).test
    labels = np.array([s.label for s in test])
    from inspector.calibrate.images import score

    scores = score(backend, list(test), [fingerprint(s.path) for s in test], keep_maps=False).scores
    fail = scores >= rec.image_threshold
    assert out["n_good"] == (labels == 0).sum() and out["n_defective"] == (labels == 1).sum()
    assert out["frr"] == pytest.approx(fail[labels == 0].mean())
    assert out["escape_rate"] == pytest.approx((~fail[labels == 1]).mean())
    assert out["promised_escape_rate"] is None and "escape_rate" not in out["drift"]
    assert ("frr" in out["drift"]) == (not rec.expected_frr.contains(out["frr"]))
    saved = json.loads((tmp_path / "check.json").read_text())
    assert {"frr", "escape_rate", "n_good", "n_defective"} <= set(saved) and saved["frr"] == out["frr"]


def test_check_flags_drift_and_refuses_another_models_record(home, backend, trained):
    rec = calibrate("cable", home, policy=Policy(target_frr=ALPHA), backend=backend, write_report=False).record
    save_calibration(dataclasses.replace(rec, image_threshold=-1.0), calibration_path(home, "cable"))
    out = check("cable", trained["data"], home, backend=backend)
    assert out["frr"] == 1.0 and out["drift"]["frr"] == "above"
    write_manifest(home / "engines" / "cable", "e" * 64)
    with pytest.raises(CalibrationError, match="re-run `inspector calibrate --product cable`"):
        check("cable", trained["data"], home, backend=backend)


def test_real_torch_backend_with_roi_and_mask_size(home, fresh_folder):
    """Through open_backend("torch"): the maps cover the ROI at the manifest's mask size, and so do the masks."""
    from inspector.data.dataset import read_mask

    write_manifest(home / "engines" / "cable", sha256_file(model_path(home, "cable")), mask=(32, 32), roi=(8, 8, 48, 48))
    run = calibrate("cable", home, data=fresh_folder, policy=Policy(target_frr=ALPHA), backend="torch", device="cpu")
    sc = run.scored
    assert run.record.backend["backend"] == "torch" and run.record.mask_size == (32, 32)
    assert sc.maps.shape[1:] == (32, 32) and run.report.is_file()
    i = int(np.flatnonzero(sc.labels == 1)[0])
    full = read_mask(sc.samples[i].mask_path, (64, 64))[8:56, 8:56]
    expected = cv2.resize(full.astype(np.uint8), (32, 32), interpolation=cv2.INTER_NEAREST) > 0
    assert expected.any() and np.array_equal(sc.masks[i], expected)


def test_cli(home, backend, trained, tmp_path, monkeypatch, capsys):
    import inspector.runtime

    opened = []

    def fake_open(name, home_, product, **kw):
        opened.append((name, product, kw))
        return TorchFrames(model_path(home_, product))

    monkeypatch.setattr(inspector.runtime, "open_backend", fake_open, raising=False)
    args = ["calibrate", "--product", "cable", "--home", str(home), "--target-frr", str(ALPHA), "--backend", "torch"]
    assert main(args + ["--no-report"]) == 0
    out = capsys.readouterr().out
    assert "image threshold" in out and "expected FRR" in out and opened[0][:2] == ("torch", "cable")
    rc = main(["calibrate", "--check", "--product", "cable", "--home", str(home), "--data", str(trained["data"]),
               "--json", str(tmp_path / "c.json")])
    assert rc in (0, 3) and (rc == 3) == bool(json.loads((tmp_path / "c.json").read_text())["drift"])
    assert "observed" in capsys.readouterr().out
    assert main(args + ["--policy", "f1", "--target-escape", "0.1"]) == 1
    assert "--target-escape chooses the escape policy" in capsys.readouterr().err
    assert main(args + ["--policy", "cost", "--c-escape", "5"]) == 1
    assert "needs both --c-escape and --c-reject" in capsys.readouterr().err


def test_set_threshold_and_sign_from_the_cli(tmp_path, capsys):
    """A deliberate change: a new record, a new id, the old one kept dated; signing a record from before hashes."""
    from tests.calibrate.test_record import make_record

    path = calibration_path(tmp_path, "cable")
    save_calibration(make_record(), path)
    old = load_calibration(tmp_path, "cable")
    assert main(["calibrate", "--product", "cable", "--home", str(tmp_path), "--set-threshold", "3.25"]) == 0
    out = capsys.readouterr().out
    assert "2.5 -> 3.25" in out and "--check --data" in out
    new = load_calibration(tmp_path, "cable")
    assert new.id != old.id and new.image_threshold == 3.25 and new.policy == "manual" and new.signed
    assert new.expected_frr is None and new.parameters["previous_id"] == old.id
    assert new.pixel_threshold == old.pixel_threshold and new.min_region_area == old.min_region_area
    archived = path.parent / "cable.20250101T000000Z.yaml"
    assert archived.is_file() and "image_threshold: 2.5" in archived.read_text()
    for bad in ("nan", "-1", "0"):
        assert main(["calibrate", "--product", "cable", "--home", str(tmp_path), "--set-threshold", bad]) == 1
        assert "finite number > 0" in capsys.readouterr().err
    assert main(["calibrate", "--product", "cable", "--home", str(tmp_path), "--sign"]) == 1
    assert "already signed" in capsys.readouterr().err
    path.write_text("\n".join(ln for ln in path.read_text().splitlines() if not ln.startswith("content_sha256")))
    assert not load_calibration(tmp_path, "cable").signed
    assert main(["calibrate", "--product", "cable", "--home", str(tmp_path), "--sign"]) == 0
    resigned = load_calibration(tmp_path, "cable")
    assert resigned.signed and resigned.id == new.id and resigned.image_threshold == 3.25

"""Reviews feed the model: `calibrate --reviewed` (false rejects good, confirmed defects defective), `train
--add-reviewed` (false rejects trained on, and then refused by calibration by name), and `inspector review`."""

from __future__ import annotations

import dataclasses

import cv2
import numpy as np
import pytest

from inspector.bundle import load_checkpoint, model_path
from inspector.calibrate.record import calibration_path, content_hash, load_calibration
from inspector.cli import main
from inspector.data.dataset import fingerprint
from inspector.errors import CalibrationError
from inspector.reviews import Rejected, ReviewStore

pytestmark = pytest.mark.slow


def _png(img: np.ndarray) -> bytes:
    return cv2.imencode(".png", img)[1].tobytes()


def _review(store: ReviewStore, i: int, defect: str | None, verdict: str) -> None:
    from inspector.data.synthetic import render

    img, mask = render(np.random.default_rng(100 + i), 64, defect)
    store.add(Rejected("l1", "cable", i, None, 1000.0 + i, "FAIL", 9.0, 1.3, 7.0), verdict, "ann", _png(img),
              _png(mask) if defect else None)


@pytest.fixture(scope="module")
def product(trained, tmp_path_factory):
    from tests.product_support import calibrated_home

    return calibrated_home(trained, tmp_path_factory.mktemp("reviewed"))


def _backend(home):
    from tests.calibration_support import TorchFrames

    return TorchFrames(model_path(home, "cable"))


def test_calibrate_reviewed_adds_false_rejects_as_good_and_confirmed_defects_as_defective(product, capsys):
    from inspector.calibrate.run import Policy, calibrate

    home, before = product
    with pytest.raises(CalibrationError, match="no reviews.*inspector station"):
        calibrate("cable", home, policy=Policy(target_frr=0.02), backend=_backend(home), reviewed=True)
    store = ReviewStore(home, "cable")
    for i in range(3):
        _review(store, i, None, "false_reject")
    for i, defect in enumerate(("cut", "missing_wire")):
        _review(store, 10 + i, defect, "confirmed_defect")
    _review(store, 0, "cut", "confirmed_defect")  # frame 0 looked at again: the latest verdict counts
    extra = home.parent / "extra" / "cable"
    rec = calibrate("cable", home, data=extra, policy=Policy(target_frr=0.02), backend=_backend(home),
                    reviewed=True, write_report=False).record
    assert rec.data["reviewed"] == {"dir": str(store.dir), "false_rejects": 2, "confirmed_defects": 3}
    # A reviewed calibration is sealed like any other: the daemon reads back exactly what was written, and a
    # hand edit of what the reviews added is refused.
    path = calibration_path(home, "cable")
    assert rec.signed and rec.content_sha256 == content_hash(rec)
    assert load_calibration(home, "cable") == rec
    sealed = path.read_text()
    edited = sealed.replace("false_rejects: 2", "false_rejects: 7")
    assert edited != sealed
    path.write_text(edited)
    with pytest.raises(CalibrationError, match="content hash mismatch"):
        load_calibration(home, "cable")
    path.write_text(sealed)
    assert rec.n_good == before.n_good + 2 and rec.n_defective == 3
    assert rec.expected_escape is not None and rec.expected_escape.n == 3  # now an escape-rate promise is made
    labels = {i["sha256"]: i["label"] for i in rec.data["images"]}
    for r in store.latest():
        assert labels[fingerprint(r.frame)] == (r.verdict == "confirmed_defect")

    assert main(["review", "--product", "cable", "--home", str(home), "--export", str(home.parent / "exp")]) == 0
    out = capsys.readouterr().out
    assert "5 reviews of product cable" in out and "confirmed_defect" in out and "ann" in out
    assert "2 good (false rejects), 3 defective (confirmed), 3 masks" in out
    assert main(["review", "--product", "cable", "--home", str(home), "--all"]) == 0
    assert "6 reviews" in capsys.readouterr().out
    assert main(["calibrate", "--product", "cable", "--home", str(home), "--reviewed", "--check", "--data",
                 str(extra)]) == 1
    assert "--reviewed" in capsys.readouterr().err
    assert main(["calibrate", "--product", "cable", "--home", str(home), "--reviewed", "--set-threshold", "3"]) == 1
    assert "--reviewed" in capsys.readouterr().err


def test_train_add_reviewed_trains_on_false_rejects_and_calibration_then_refuses_them(product, tmp_path, capsys):
    from inspector.calibrate.run import Policy, calibrate
    from tests.calibration_support import write_manifest
    from tests.conftest import TINY

    home, _ = product
    ckpt = load_checkpoint(model_path(home, "cable"))
    data = ckpt.data.root
    new_home = tmp_path / "home"
    (new_home / "reviews").mkdir(parents=True)
    store_src = ReviewStore(home, "cable")
    if not store_src.all():
        _review(store_src, 0, None, "false_reject")
    import shutil

    shutil.copytree(store_src.dir, new_home / "reviews" / "cable")
    good = [r.frame for r in ReviewStore(new_home, "cable").latest() if r.verdict == "false_reject"]
    from inspector.train.run import train

    preset = dataclasses.replace(TINY, train=dataclasses.replace(TINY.train, epochs=2, checkpoint_every=2))
    result = train("cable", data, preset, home=new_home, device="cpu", progress=False, extra_good=tuple(good))
    trained_fps = load_checkpoint(result.model_path).fingerprints("train")
    assert all(fingerprint(p) in trained_fps for p in good)
    assert result.n_train == len(ckpt.fingerprints("train")) + len(good)
    write_manifest(new_home / "engines" / "cable", load_checkpoint(result.model_path).sha256)
    with pytest.raises(CalibrationError, match="trained on") as e:
        calibrate("cable", new_home, policy=Policy(target_frr=0.2), backend=_backend(new_home), reviewed=True)
    assert str(good[0]) in str(e.value)  # named
    # The CLI flag reads the same store; a product without reviewed false rejects is an error, not a no-op.
    assert main(["train", "--product", "other", "--data", str(data), "--home", str(tmp_path / "h2"),
                 "--add-reviewed", "--epochs", "1"]) == 1
    assert "no reviewed false rejects" in capsys.readouterr().err

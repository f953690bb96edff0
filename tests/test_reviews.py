"""Review storage: private files, the latest verdict per reject, bad input refused, the folder-layout export."""

from __future__ import annotations

import stat
from datetime import UTC, datetime

import cv2
import numpy as np
import pytest

from inspector.data.dataset import load_dataset
from inspector.errors import DataError
from inspector.reviews import DEFECT_DIR, Rejected, ReviewStore, reviewed_products, reviews_dir


def _png(img: np.ndarray) -> bytes:
    return cv2.imencode(".png", img)[1].tobytes()


FRAME = np.random.default_rng(0).integers(0, 256, (48, 64, 3), dtype=np.uint8)
MASK = np.zeros((48, 64), np.uint8)
MASK[10:20, 10:30] = 255


def _rej(frame_id: int, **kw) -> Rejected:
    return Rejected(**{"line": "l1", "product": "cable", "frame_id": frame_id, "part_id": f"P{frame_id}",
                       "capture_ts": 1000.0 + frame_id, "decision": "FAIL", "score": 2.0, "normalized_score": 1.5,
                       "threshold": 1.33, "calibration_id": "cable-1", "model_sha": "abc", **kw})


def test_a_review_is_stored_privately_with_its_frame_and_mask(tmp_path):
    store = ReviewStore(tmp_path, "cable")
    assert store.all() == [] and reviewed_products(tmp_path) == []
    when = datetime(2026, 12, 1, 10, 0, 0, tzinfo=UTC)
    r = store.add(_rej(3), "false_reject", "ann", _png(FRAME), _png(MASK), note="glare on the sheath", now=when)
    assert (r.verdict, r.who, r.note, r.reviewed_at, r.frame_id, r.part_id) == (
        "false_reject", "ann", "glare on the sheath", "2026-12-01T10:00:00+00:00", 3, "P3")
    assert np.array_equal(cv2.imread(str(r.frame)), FRAME)  # the exact pixels
    assert np.array_equal(cv2.imread(str(r.mask), cv2.IMREAD_GRAYSCALE), MASK)
    d = reviews_dir(tmp_path, "cable")
    for path in (d, d / "frames", d / "masks"):
        assert stat.S_IMODE(path.stat().st_mode) == 0o700, path
    for path in (d / "reviews.sqlite", r.frame, r.mask):
        assert stat.S_IMODE(path.stat().st_mode) == 0o600, path
    assert reviewed_products(tmp_path) == ["cable"]
    assert ReviewStore(tmp_path, "cable").get(r.id) == r  # durable: a new store reads it back


def test_the_latest_review_of_a_reject_counts_and_every_review_is_kept(tmp_path):
    store = ReviewStore(tmp_path, "cable")
    store.add(_rej(1), "false_reject", "ann", _png(FRAME))
    store.add(_rej(2), "confirmed_defect", "bob", _png(FRAME), _png(MASK))
    store.add(_rej(1), "confirmed_defect", "cid", _png(FRAME), _png(MASK), note="looked again")
    assert len(store.all()) == 3
    latest = store.latest()
    assert [(r.frame_id, r.verdict, r.who) for r in latest] == [(2, "confirmed_defect", "bob"),
                                                                  (1, "confirmed_defect", "cid")]


@pytest.mark.parametrize("kw, frame, mask, words", [
    ({"verdict": "maybe"}, True, None, "verdict"),
    ({"who": ""}, True, None, "who"),
    ({"note": "x" * 1001}, True, None, "note"),
    ({}, False, None, "PNG"),
    ({}, True, "small", "size"),
])
def test_bad_reviews_are_refused_and_nothing_is_stored(tmp_path, kw, frame, mask, words):
    store = ReviewStore(tmp_path, "cable")
    args = {"verdict": "false_reject", "who": "ann", "note": "", **kw}
    frame_png = _png(FRAME) if frame else b"GIF89a not a png"
    mask_png = _png(np.zeros((10, 10), np.uint8)) if mask == "small" else None
    with pytest.raises(DataError, match=words):
        store.add(_rej(1), args["verdict"], args["who"], frame_png, mask_png, note=args["note"])
    assert store.all() == []
    with pytest.raises(DataError, match="another|cannot be stored"):
        store.add(_rej(1, product="other"), "false_reject", "ann", _png(FRAME))


def test_export_writes_the_folder_layout_that_datasets_read(tmp_path):
    store = ReviewStore(tmp_path / "home", "cable")
    store.add(_rej(1), "false_reject", "ann", _png(FRAME))
    store.add(_rej(2), "confirmed_defect", "ann", _png(FRAME), _png(MASK))
    store.add(_rej(3), "confirmed_defect", "ann", _png(FRAME))  # no mask published
    counts = store.export(tmp_path / "out")
    assert counts == {"good": 1, DEFECT_DIR: 2, "masks": 1}
    ds = load_dataset(tmp_path / "out")
    assert ds.layout == "folder" and len(ds.train) == 1 and len(ds.test) == 2
    assert sorted(s.mask_path is not None for s in ds.test) == [False, True]
    assert {s.defect_type for s in ds.test} == {DEFECT_DIR}


def test_reading_reviews_of_a_product_that_has_none_says_so(tmp_path):
    with pytest.raises(DataError, match="inspector station"):
        ReviewStore(tmp_path, "cable").get(1)

"""Dataset layouts, strict image reading, the hold-out split, the synthetic generator."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from inspector.data.dataset import load_dataset, read_image, read_mask, split_holdout
from inspector.data.synthetic import DEFECT_TYPES, render
from inspector.errors import DataError


def _img(path, value=128, shape=(32, 32, 3)):
    path.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(path), np.full(shape, value, np.uint8))


def test_mvtec_layout(synthetic_root):
    ds = load_dataset(synthetic_root)
    assert ds.layout == "mvtec"
    assert len(ds.train) == 40 and all(s.label == 0 for s in ds.train)
    bad = [s for s in ds.test if s.label == 1]
    assert len(bad) == 2 * len(DEFECT_TYPES) and all(s.mask_path and s.mask_path.is_file() for s in bad)
    assert "train 40 images (good=40" in ds.summary()


def test_folder_layout_with_masks_matched_by_name(tmp_path):
    _img(tmp_path / "good" / "a.png")
    _img(tmp_path / "good" / "b.jpg")
    _img(tmp_path / "scratch" / "c.png")
    _img(tmp_path / "dent" / "d.bmp")
    _img(tmp_path / "masks" / "c_mask.png", 255, (32, 32))
    ds = load_dataset(tmp_path)
    assert ds.layout == "folder"
    assert [s.path.name for s in ds.train] == ["a.png", "b.jpg"]
    by_name = {s.path.name: s for s in ds.test}
    assert by_name["c.png"].mask_path.name == "c_mask.png" and by_name["c.png"].defect_type == "scratch"
    assert by_name["d.bmp"].mask_path is None
    assert "dent=1" in ds.summary() and "1 with masks" in ds.summary()


def test_bad_paths_are_named(tmp_path):
    with pytest.raises(DataError, match="does not exist"):
        load_dataset(tmp_path / "nope")
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="unknown dataset layout"):
        load_dataset(tmp_path / "empty")
    (tmp_path / "nogood" / "good").mkdir(parents=True)
    with pytest.raises(DataError, match="no good training images"):
        load_dataset(tmp_path / "nogood")


def test_corrupt_image_is_an_error_naming_the_file(tmp_path):
    p = tmp_path / "broken.png"
    p.write_bytes(b"\x89PNG\r\n\x1a\n garbage")
    with pytest.raises(DataError, match="broken.png"):
        read_image(p)
    with pytest.raises(DataError, match="missing.png"):
        read_image(tmp_path / "missing.png")
    empty = tmp_path / "empty.jpg"
    empty.write_bytes(b"")
    with pytest.raises(DataError, match="empty.jpg"):
        read_image(empty)


def test_grayscale_16bit_and_alpha_become_bgr_uint8(tmp_path):
    cv2.imwrite(str(tmp_path / "g.png"), np.full((20, 30), 7, np.uint8))
    cv2.imwrite(str(tmp_path / "g16.png"), np.full((20, 30), 256 * 9, np.uint16))
    cv2.imwrite(str(tmp_path / "a.png"), np.full((20, 30, 4), 5, np.uint8))
    for name, v in [("g.png", 7), ("g16.png", 9), ("a.png", 5)]:
        img = read_image(tmp_path / name)
        assert img.shape == (20, 30, 3) and img.dtype == np.uint8 and (img == v).all()


def test_read_mask_resizes_and_binarises(tmp_path):
    m = np.zeros((40, 40), np.uint8)
    m[:20] = 255
    cv2.imwrite(str(tmp_path / "m.png"), m)
    out = read_mask(tmp_path / "m.png", (10, 10))
    assert out.dtype == bool and out[:5].all() and not out[5:].any()
    assert not read_mask(None, (3, 4)).any()


def test_holdout_is_deterministic_and_disjoint(synthetic_root):
    ds = load_dataset(synthetic_root)
    tr, ho = split_holdout(ds.train, 0.1, seed=3)
    tr2, ho2 = split_holdout(ds.train, 0.1, seed=3)
    assert len(ho) == 4 and ho == ho2 and tr == tr2
    assert not {s.path for s in tr} & {s.path for s in ho}
    with pytest.raises(DataError, match="cannot hold out"):
        split_holdout(ds.train[:1], 0.5, 0)


@pytest.mark.parametrize("kind", DEFECT_TYPES)
def test_every_synthetic_defect_has_a_mask_where_the_image_changed(kind):
    rng = np.random.default_rng(5)
    img, mask = render(rng, 96, kind)
    good, empty = render(np.random.default_rng(5), 96, None)
    assert img.shape == (96, 96, 3) and mask.shape == (96, 96)
    assert mask.max() == 255 and mask.mean() < 0.3 * 255
    assert not empty.any()

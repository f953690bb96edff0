"""Strict image decoding (stream/imagefile.py): a truncated JPEG or PNG is unusable with the reason, never grey."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from inspector.stream.imagefile import decode_image, read_image, structure_problem


def _part(size=(240, 320)) -> np.ndarray:
    """A smooth part with a bright defect in its lower half: what a truncation would hide."""
    rng = np.random.default_rng(0)
    img = cv2.GaussianBlur(rng.integers(0, 255, (*size, 3), np.uint8), (15, 15), 0)
    cv2.circle(img, (size[1] // 2, size[0] * 3 // 4), size[0] // 8, (255, 255, 255), -1)
    return img


@pytest.mark.parametrize("ext", [".jpg", ".png", ".bmp"])
@pytest.mark.parametrize("cut", [0.1, 0.5, 0.9])
def test_a_truncated_file_is_refused_with_the_reason(tmp_path, ext, cut):
    whole = cv2.imencode(ext, _part())[1].tobytes()
    img, why = decode_image(whole)
    assert img is not None and why == ""
    path = tmp_path / f"part{ext}"
    path.write_bytes(whole[: int(len(whole) * cut)])
    img, why = read_image(path)
    assert img is None and str(path) in why and ("truncated" in why or "cannot decode" in why), why
    if ext in (".jpg", ".png"):
        assert "truncated" in why  # found by structure, not left to a decoder that grey-fills


def test_opencv_alone_would_grey_fill_a_truncated_jpeg(tmp_path):
    """Why the structure check exists: cv2.imread returns a picture for a JPEG cut in half."""
    whole = cv2.imencode(".jpg", _part())[1].tobytes()
    path = tmp_path / "half.jpg"
    path.write_bytes(whole[: len(whole) // 2])
    assert cv2.imread(str(path)) is not None
    assert read_image(path)[0] is None


def test_whole_files_and_other_problems():
    jpg = cv2.imencode(".jpg", _part((48, 64)))[1].tobytes()
    assert structure_problem(jpg) is None and structure_problem(jpg + b"\x00" * 16) is None  # padding after EOI
    assert decode_image(b"")[1] == "the file is empty"
    assert "cannot decode" in decode_image(b"\x89PNG\r\n\x1a\n not an image IEND\xaeB`\x82")[1]
    tif = cv2.imencode(".tiff", _part((48, 64)))[1].tobytes()
    assert decode_image(tif)[0].shape == (48, 64, 3)

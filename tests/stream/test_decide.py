"""Pure decisions (stream/decide.py): PASS/FAIL, regions in frame pixels, the peak region, NaN, masks."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from inspector.errors import DecisionError
from inspector.stream.decide import decide, encode_png, mask_image

from .fakes import FakeCalibration


def test_decide_pass_fail_and_regions_in_frame_pixels():
    cal = FakeCalibration(image_threshold=0.5, pixel_threshold=0.6, min_region_area=4)
    amap = np.zeros((16, 16), np.float32)
    amap[4:8, 2:6] = 0.9  # 16 px region
    amap[12, 12] = 0.95  # a single-pixel speck: below min_region_area
    d = decide(0.7, amap, cal, frame_hw=(160, 320))
    assert d.decision == "FAIL" and d.normalized_score == pytest.approx(1.4) and d.threshold == 0.5
    assert len(d.regions) == 1
    r = d.regions[0]
    assert r.bbox == (40, 40, 80, 40) and r.area == 16 * 20 * 10 and r.peak == pytest.approx(0.9)
    assert d.mask.sum() == 16 and not d.mask[12, 12]  # the speck is not in the published mask
    assert decide(0.49, amap, cal, (160, 320)).decision == "PASS"
    assert decide(0.5, amap, cal, (160, 320)).decision == "FAIL"  # FAIL iff score >= threshold


def test_a_fail_with_no_region_above_the_pixel_threshold_shows_its_peak():
    cal = FakeCalibration(image_threshold=0.5, pixel_threshold=5.0, min_region_area=4)
    amap = np.zeros((16, 16), np.float32)
    amap[10:13, 3:7] = 1.0
    d = decide(0.7, amap, cal, frame_hw=(160, 160))
    assert d.decision == "FAIL" and len(d.regions) == 1 and d.regions[0].kind == "peak"
    assert d.regions[0].bbox == (30, 100, 40, 30) and d.mask.sum() == 12
    passed = decide(0.3, amap, cal, frame_hw=(160, 160))  # a PASS shows nothing below the pixel threshold
    assert passed.regions == () and not passed.mask.any()
    with_region = decide(0.7, amap * 10, cal, frame_hw=(160, 160))
    assert [r.kind for r in with_region.regions] == ["defect"]


@pytest.mark.parametrize("score", [float("nan"), float("inf")])
def test_a_score_that_is_not_finite_is_an_error_never_a_pass(score):
    cal = FakeCalibration(image_threshold=0.5, pixel_threshold=0.6, min_region_area=4)
    with pytest.raises(DecisionError, match="not a finite number"):
        decide(score, np.zeros((8, 8), np.float32), cal, frame_hw=(80, 80))
    amap = np.zeros((8, 8), np.float32)
    amap[2, 2] = np.nan
    with pytest.raises(DecisionError, match="NaN"):
        decide(0.1, amap, cal, frame_hw=(80, 80))


def test_decide_maps_regions_through_the_roi():
    cal = FakeCalibration(image_threshold=1.0, pixel_threshold=0.5, min_region_area=1)
    amap = np.zeros((10, 10), np.float32)
    amap[0:2, 0:5] = 1.0
    d = decide(0.1, amap, cal, frame_hw=(480, 640), roi=(100, 50, 200, 100))
    assert d.regions[0].bbox == (100, 50, 100, 20)


def test_mask_png_decodes_to_the_stated_size():
    mask = np.zeros((16, 16), bool)
    mask[4:8, 2:6] = True
    img = mask_image(mask, "frame", (48, 64), roi=(8, 0, 32, 48))
    back = cv2.imdecode(np.frombuffer(encode_png(img), np.uint8), cv2.IMREAD_UNCHANGED)
    assert back.shape == (48, 64) and back.dtype == np.uint8
    assert set(np.unique(back)) == {0, 255} and back[:, :8].max() == 0 and back[:, 40:].max() == 0
    assert mask_image(mask, "mask", (48, 64)).shape == (16, 16)

"""The decision rule, the one place it is written: FAIL iff score >= threshold, normalised score, regions."""

from __future__ import annotations

import numpy as np
import pytest

from inspector.calibrate import rule
from inspector.errors import DecisionError


def test_fail_iff_score_at_or_above_the_threshold():
    assert rule.fails(np.float32([0.49, 0.5, 0.51]), 0.5).tolist() == [False, True, True]
    assert rule.fails_one(0.5, 0.5) and not rule.fails_one(0.4999, 0.5)


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), -float("inf")])
def test_a_score_that_is_not_finite_is_no_decision(bad):
    with pytest.raises(DecisionError, match="not a finite number"):
        rule.fails_one(bad, 0.5)


def test_normalized_score_puts_the_line_at_one():
    assert rule.normalized_score(2.0, 2.0) == 1.0
    np.testing.assert_allclose(rule.normalized_score(np.float32([1.0, 3.0]), 2.0), [0.5, 1.5])
    assert rule.normalized_score(1.0, 0.0) == float("inf")


def test_components_boxes_areas_and_the_area_filter():
    m = np.zeros((10, 10), np.float32)
    m[1:3, 1:4] = 2.0  # 6 px
    m[7, 7] = 2.0  # 1 px of noise
    c = rule.components(m, 1.0, min_area=2)
    assert len(c.kept) == 1 and tuple(int(v) for v in c.stats[c.kept[0]]) == (1, 1, 3, 2, 6)
    assert c.mask().sum() == 6 and not c.mask()[7, 7]
    assert len(rule.components(m, 1.0, min_area=1).kept) == 2
    assert c.largest_area() == 6 and rule.components(m, 5.0).largest_area() == 0


def test_components_refuse_a_map_that_is_not_2d():
    with pytest.raises(DecisionError, match=r"\(h, w\)"):
        rule.components(np.zeros((2, 4, 4), np.float32), 0.5)


def test_peak_component_is_the_half_prominence_area_around_the_maximum():
    m = np.zeros((20, 20), np.float32)
    m[5:8, 10:14] = 1.0  # the peak area
    m[6, 11] = 1.5  # its maximum
    m[15, 2] = 0.4  # a lower bump elsewhere: below half-way to the peak, not part of it
    c = rule.peak_component(m)
    assert c.kept == (1,)
    assert tuple(int(v) for v in c.stats[1][:4]) == (10, 5, 4, 3)
    assert c.mask().sum() == 12 and not c.mask()[15, 2]


def test_peak_component_refuses_nan():
    m = np.zeros((4, 4), np.float32)
    m[1, 1] = np.nan
    with pytest.raises(DecisionError, match="NaN"):
        rule.peak_component(m)

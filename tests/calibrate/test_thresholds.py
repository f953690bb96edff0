"""Pure threshold functions against known values and brute force."""

from __future__ import annotations

import math

import numpy as np
import pytest

from inspector.calibrate import rule
from inspector.calibrate import thresholds as th
from inspector.errors import CalibrationError

# --- conformal ---------------------------------------------------------------------------------


def test_conformal_quantile_known_sample():
    scores = np.arange(1, 20, dtype=np.float32)[::-1].copy()  # 19 scores, unsorted
    q = th.conformal_quantile(scores, 0.1)
    assert (q.n, q.rank, q.value) == (19, 18, 18.0)  # ceil(20 * 0.9) = 18
    assert 18.0 < q.threshold < 19.0
    assert rule.fails(scores, q.threshold).sum() == 1  # only 19 fails
    assert q.expected_rate == pytest.approx(2 / 20)


def test_conformal_rank_exact_integer_edge():
    # (9 + 1)(1 - 0.1) is 9 exactly; floating point must not turn it into 10
    assert th.conformal_rank(9, 0.1) == 9
    assert th.conformal_quantile(np.arange(9.0), 0.1).value == 8.0
    assert th.conformal_rank(21, 0.05) == 21  # the bottle hold-out: ceil(22 * 0.95) = 21


def test_conformal_quantile_ties_keep_k_lowest_passing():
    scores = np.array([1, 1, 1, 2, 2, 2, 2, 2, 2, 2], dtype=np.float32)
    q = th.conformal_quantile(scores, 0.5)  # k = ceil(11 * 0.5) = 6 -> value 2
    assert q.value == 2.0
    assert rule.fails(scores, q.threshold).sum() == 0  # the threshold sits just above the tied value
    assert rule.fails(np.float32([q.threshold]), q.threshold).all()  # the float32 decision agrees with float64


def test_conformal_too_few_says_smallest_alpha_and_how_many_more():
    with pytest.raises(CalibrationError) as e:
        th.conformal_quantile(np.arange(10.0), 0.05)  # k = ceil(11 * 0.95) = 11 > 10
    msg = str(e.value)
    assert "0.09091" in msg  # smallest alpha 1/(n+1)
    assert "19 are needed" in msg and "9 more" in msg
    assert th.min_samples(0.05) == 19 and th.conformal_rank(19, 0.05) <= 19 and th.conformal_rank(18, 0.05) > 18
    assert th.min_samples(0.01) == 99


@pytest.mark.parametrize("alpha", [0.0, 1.0, -0.1])
def test_conformal_refuses_alpha_out_of_range(alpha):
    with pytest.raises(CalibrationError):
        th.conformal_quantile(np.arange(100.0), alpha)


def test_conformal_guarantee_holds_on_average():
    """Over many calibration draws a fresh good score fails with probability (n+1-k)/(n+1) <= alpha."""
    rng = np.random.default_rng(0)
    n, alpha, trials = 19, 0.1, 20000
    cal = rng.random((trials, n)).astype(np.float32)
    k = th.conformal_rank(n, alpha)
    thr = np.sort(cal, axis=1)[:, k - 1]
    new = rng.random(trials).astype(np.float32)
    observed = (new > thr).mean()
    assert observed == pytest.approx((n + 1 - k) / (n + 1), abs=0.01)
    assert observed <= alpha + 0.01


# --- Clopper-Pearson ------------------------------------------------------------------------------


def test_clopper_pearson_known_values():
    lo, hi = th.clopper_pearson(0, 10)
    assert lo == 0.0 and hi == pytest.approx(0.3085, abs=5e-5)
    assert hi == pytest.approx(1 - 0.025 ** (1 / 10))  # closed form for x = 0
    lo, hi = th.clopper_pearson(5, 10)
    assert (lo, hi) == (pytest.approx(0.1871, abs=5e-5), pytest.approx(0.8129, abs=5e-5))
    lo, hi = th.clopper_pearson(10, 10)
    assert hi == 1.0 and lo == pytest.approx(0.025 ** (1 / 10), abs=1e-12)  # mirror of x = 0
    lo, hi = th.clopper_pearson(1, 21)
    assert lo == pytest.approx(0.001205, abs=5e-6) and hi == pytest.approx(0.2382, abs=5e-4)


@pytest.mark.parametrize("x,n", [(-1, 10), (11, 10), (0, 0)])
def test_clopper_pearson_refuses_bad_counts(x, n):
    with pytest.raises(CalibrationError):
        th.clopper_pearson(x, n)


# --- F1 / cost / escape vs brute force -------------------------------------------------------------


def _brute(good: np.ndarray, bad: np.ndarray):
    """Every distinct decision rule "fail iff score >= t": t in the observed values plus +inf."""
    ts = np.unique(np.concatenate([good, bad, [np.inf]]))
    fr = np.array([(good >= t).sum() for t in ts])
    esc = np.array([(bad < t).sum() for t in ts])
    return ts, fr, esc


def _samples(seed: int):
    rng = np.random.default_rng(seed)
    # integers give plenty of ties between and within classes
    good = rng.integers(0, 30, size=rng.integers(5, 40)).astype(np.float32)
    bad = rng.integers(10, 45, size=rng.integers(3, 30)).astype(np.float32)
    return good, bad


@pytest.mark.parametrize("seed", range(12))
def test_f1_threshold_matches_brute_force(seed):
    good, bad = _samples(seed)
    _, fr, esc = _brute(good, bad)
    tp = bad.size - esc
    best = np.max(np.where(tp > 0, 2 * tp / (2 * tp + fr + esc), 0.0))
    op = th.f1_threshold(good, bad)
    assert op.f1 == pytest.approx(best, abs=1e-12)
    # the reported counts are what the decision rule really does at that threshold
    assert op.false_rejects == rule.fails(good, op.threshold).sum()
    assert op.escapes == (~rule.fails(bad, op.threshold)).sum()


@pytest.mark.parametrize("seed", range(12))
def test_cost_threshold_matches_brute_force(seed):
    good, bad = _samples(seed)
    c_escape, c_reject = [(10.0, 1.0), (1.0, 1.0), (1.0, 7.0), (0.0, 1.0)][seed % 4]
    _, fr, esc = _brute(good, bad)
    op = th.cost_threshold(good, bad, c_escape, c_reject)
    cost = c_escape * op.escapes + c_reject * op.false_rejects
    assert cost == pytest.approx(np.min(c_escape * esc + c_reject * fr))
    assert op.false_rejects == rule.fails(good, op.threshold).sum()


def test_cost_threshold_extremes():
    good, bad = np.float32([1, 2, 3]), np.float32([2.5, 4])
    assert th.cost_threshold(good, bad, 1.0, 0.0).escapes == 0  # rejects are free: catch everything
    assert th.cost_threshold(good, bad, 0.0, 1.0).false_rejects == 0  # escapes are free: pass everything
    with pytest.raises(CalibrationError):
        th.cost_threshold(good, bad, -1.0, 1.0)


@pytest.mark.parametrize("seed", range(12))
@pytest.mark.parametrize("target", [0.0, 0.05, 0.2])
def test_escape_target_matches_brute_force(seed, target):
    good, bad = _samples(seed)
    _, fr, esc = _brute(good, bad)
    feasible = esc / bad.size <= target + 1e-12
    op = th.escape_target_threshold(good, bad, target)
    assert op.escape_rate <= target + 1e-12
    assert op.false_rejects == fr[feasible].min()


def test_optimising_policies_need_both_classes():
    with pytest.raises(CalibrationError, match="both good and defective"):
        th.f1_threshold(np.float32([1, 2]), np.float32([]))


def test_leave_one_out_is_never_better_than_in_sample():
    for seed in range(6):
        good, bad = _samples(seed)
        op = th.f1_threshold(good, bad)
        fr, esc = th.leave_one_out(good, bad, lambda g, b: th.f1_threshold(g, b).threshold)
        assert fr + esc >= op.false_rejects + op.escapes
    # cleanly separated classes make no error either way
    assert th.leave_one_out(np.float32([0, 1, 2]), np.float32([10, 11]),
                            lambda g, b: th.f1_threshold(g, b).threshold) == (0, 0)


def test_candidates_split_adjacent_float32_values():
    a = np.float32(1.0)
    b = np.nextafter(a, np.float32(2))  # no float32 lies strictly between a and b
    t = th.candidates(np.array([a, b], dtype=np.float32))
    assert t.size == 3 and t[0] == a and t[1] == b and t[2] > b
    fr, esc = th.counts(np.float32([a]), np.float32([b]), t)
    assert (fr.tolist(), esc.tolist()) == ([1, 0, 0], [0, 0, 1])


# --- pixels -------------------------------------------------------------------------------------------


def _blob_map(area: int, size: int = 32) -> np.ndarray:
    """A map of zeros with one horizontal run of ``area`` pixels (<= size * size) set to 1."""
    m = np.zeros((size, size), dtype=np.float32)
    m.reshape(-1)[:area] = 1.0
    return m


def test_min_region_area_is_conformal_over_largest_noise_regions():
    maps = np.stack([_blob_map(a) for a in range(1, 20)])  # largest regions of 1..19 px
    area = th.min_region_area(maps, 0.5, alpha=0.1)  # k = 18 -> the 18-px region is noise
    assert area == 19
    assert rule.components(_blob_map(19), 0.5, area).kept and not rule.components(_blob_map(18), 0.5, area).kept
    assert th.min_region_area(np.zeros((19, 8, 8), np.float32), 0.5, 0.1) == 1  # no noise: any region counts


def test_pixel_thresholds():
    rng = np.random.default_rng(3)
    maps = rng.random((6, 16, 16)).astype(np.float32)
    masks = np.zeros_like(maps, dtype=bool)
    masks[3:, 4:8, 4:8] = True
    maps[masks] += 2.0  # defects are clearly brighter
    op = th.pixel_f1_threshold(maps, masks)
    assert op.f1 == 1.0 and op.false_rejects == 0 and op.escapes == 0
    q = th.pixel_conformal_threshold(maps[:3], 0.01)
    assert q.n == 3 * 256 and (maps[:3] >= q.threshold).mean() <= 0.01
    assert q.rank == math.ceil(769 * 0.99)
    with pytest.raises(CalibrationError, match="same shape"):
        th.pixel_f1_threshold(maps, masks[:, :8])

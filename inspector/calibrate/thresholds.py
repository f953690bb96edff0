"""Pure threshold fitting: conformal quantiles, Clopper-Pearson intervals, F1/cost/escape optima, pixels.

The decision rule these thresholds are fitted for is written once, in :mod:`inspector.calibrate.rule`
(the daemon applies the same module): an image FAILS iff ``score >= image_threshold``; a defect region is
a connected component (8-connectivity) of ``anomaly_map >= pixel_threshold`` whose area is at least
``min_region_area`` pixels at the map's resolution.

Scores are the model's raw anomaly scores (unitless, larger = more anomalous). Rates are fractions in
[0, 1]: the false-reject rate (FRR) is the share of good images that fail, the escape rate the share
of defective images that pass.

Candidate thresholds of the optimising policies are the midpoints between consecutive distinct
observed scores plus one value below and one above them all, so a chosen threshold never sits exactly
on a calibration score and the in-sample counts are exact.

Scores and maps are float32 (:class:`inspector.result.InferenceResult`) and NumPy compares a float32
array with a Python float in float32. Every threshold is therefore a float32 value (stored as a Python
float, which holds it exactly), so the decision is the same whether it is made in float32 or float64.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from inspector.calibrate import rule
from inspector.errors import CalibrationError

# (n+1)(1-alpha) is often an integer in exact arithmetic (n=9, alpha=0.1) but lands a hair above it in
# floating point; without this slack ceil() would ask for one order statistic too many.
_EPS = 1e-9


@dataclass(frozen=True)
class ConformalQuantile:
    """The split-conformal threshold of ``n`` good scores at level ``alpha``.

    ``rank`` is k = ceil((n+1)(1-alpha)) (1-based order statistic), ``value`` the k-th smallest score and
    ``threshold`` the smallest float above it, so that under "FAIL iff score >= threshold" the k lowest
    calibration images pass even with ties. For exchangeable scores a new good image then fails with
    probability (n+1-k)/(n+1) <= alpha (``expected_rate``).
    """

    alpha: float
    n: int
    rank: int
    value: float
    threshold: float

    @property
    def expected_rate(self) -> float:
        return (self.n + 1 - self.rank) / (self.n + 1)


def conformal_rank(n: int, alpha: float) -> int:
    """k = ceil((n+1)(1-alpha)); may exceed n, which means n is too small for alpha."""
    if not 0.0 < alpha < 1.0:
        raise CalibrationError(f"target rate alpha must be in (0, 1), got {alpha}")
    return max(1, math.ceil((n + 1) * (1.0 - alpha) - _EPS))


def min_samples(alpha: float) -> int:
    """Smallest n with ceil((n+1)(1-alpha)) <= n, i.e. n >= (1-alpha)/alpha."""
    n = max(1, math.ceil((1.0 - alpha) / alpha - _EPS))
    while conformal_rank(n, alpha) > n:  # guards the float edge of the closed form
        n += 1
    return n


def require_samples(n: int, alpha: float, what: str = "good images") -> int:
    """The rank k for ``n`` samples at ``alpha``; CalibrationError when k > n.

    The message gives the smallest alpha this n supports, 1/(n+1), and how many more samples ``alpha`` needs.
    """
    k = conformal_rank(n, alpha)
    if n == 0 or k > n:
        need = min_samples(alpha)
        smallest = f"the smallest target this n supports is {1 / (n + 1):.4g}" if n else "there are none"
        raise CalibrationError(
            f"{n} {what} are too few for a target rate of {alpha:g}: the conformal threshold is the "
            f"ceil((n+1)(1-alpha))-th = {k}-th smallest score, so {smallest}; {need} are needed for "
            f"{alpha:g}, i.e. {need - n} more {what}"
        )
    return k


def conformal_quantile(scores: np.ndarray, alpha: float, what: str = "good images") -> ConformalQuantile:
    """Split-conformal threshold of good ``scores`` (any shape, flattened) for target rate ``alpha``.

    Raises CalibrationError when n is too small: the message gives the smallest alpha this n supports
    (1/(n+1)) and how many more samples ``alpha`` needs.
    """
    s = np.asarray(scores).ravel()
    n = int(s.size)
    k = require_samples(n, alpha, what)
    if not np.isfinite(s).all():
        raise CalibrationError(f"the scores of the {what} contain NaN or infinity; the model output is broken")
    # partition, not sort: pixel-level calls pass millions of values
    value = np.float32(np.partition(s, k - 1)[k - 1])
    return ConformalQuantile(alpha, n, k, float(value), float(np.nextafter(value, np.float32(np.inf))))


def clopper_pearson(x: int, n: int, confidence: float = 0.95) -> tuple[float, float]:
    """Exact (Clopper-Pearson) two-sided interval of a binomial rate from ``x`` events in ``n`` trials."""
    from scipy.stats import beta  # scipy comes with scikit-learn; only calibration needs it

    if n <= 0 or not 0 <= x <= n:
        raise CalibrationError(f"Clopper-Pearson needs 0 <= x <= n and n > 0, got x={x}, n={n}")
    a = (1.0 - confidence) / 2
    lo = 0.0 if x == 0 else float(beta.ppf(a, x, n - x + 1))
    hi = 1.0 if x == n else float(beta.ppf(1 - a, x + 1, n - x))
    return lo, hi


# --- policies that need defective images --------------------------------------------------------


@dataclass(frozen=True)
class Operating:
    """A threshold and its in-sample counts: ``false_rejects`` of ``n_good``, ``escapes`` of ``n_bad``."""

    threshold: float
    false_rejects: int
    escapes: int
    n_good: int
    n_bad: int

    @property
    def frr(self) -> float:
        return self.false_rejects / self.n_good if self.n_good else float("nan")

    @property
    def escape_rate(self) -> float:
        return self.escapes / self.n_bad if self.n_bad else float("nan")

    @property
    def f1(self) -> float:
        tp = self.n_bad - self.escapes
        return 2 * tp / (2 * tp + self.false_rejects + self.escapes) if tp else 0.0


def candidates(values: np.ndarray, max_candidates: int | None = None) -> np.ndarray:
    """Sorted candidate thresholds: below all, midpoints of consecutive distinct values, above all.

    With ``max_candidates`` the distinct values are first thinned to that many quantiles (pixel data).
    """
    u = np.unique(np.asarray(values, dtype=np.float32).ravel())
    if u.size == 0:
        raise CalibrationError("no scores to choose a threshold from")
    if max_candidates is not None and u.size > max_candidates:
        u = np.unique(np.quantile(u, np.linspace(0.0, 1.0, max_candidates)).astype(np.float32))
    mids = ((u[:-1].astype(np.float64) + u[1:]) / 2).astype(np.float32)
    # Between two adjacent float32 values the midpoint rounds onto one of them; the upper one splits
    # the scores the same way ("fails iff >=").
    mids = np.where(mids > u[:-1], mids, u[1:])
    top = np.nextafter(u[-1], np.float32(np.inf))
    return np.concatenate([u[:1], mids, [top]]).astype(np.float64)


def counts(good: np.ndarray, bad: np.ndarray, thresholds: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(false rejects, escapes) at each threshold: #good >= t and #bad < t."""
    g = np.sort(np.asarray(good, dtype=np.float32).ravel()).astype(np.float64)
    b = np.sort(np.asarray(bad, dtype=np.float32).ravel()).astype(np.float64)
    fr = g.size - np.searchsorted(g, thresholds, side="left")
    esc = np.searchsorted(b, thresholds, side="left")
    return fr.astype(np.int64), esc.astype(np.int64)


def _pick(good: np.ndarray, bad: np.ndarray, objective: Callable[[np.ndarray, np.ndarray], np.ndarray],
          max_candidates: int | None = None) -> Operating:
    """Minimise ``objective(false_rejects, escapes)``; ties go to the lowest threshold (fewest escapes)."""
    good, bad = np.asarray(good).ravel(), np.asarray(bad).ravel()
    if good.size == 0 or bad.size == 0:
        raise CalibrationError(
            f"this policy needs both good and defective images (got {good.size} good, {bad.size} defective); "
            "give defective images with --data, or use --policy conformal"
        )
    t = candidates(np.concatenate([good, bad]), max_candidates)
    fr, esc = counts(good, bad, t)
    i = int(np.argmin(objective(fr, esc)))  # argmin returns the first, i.e. lowest, threshold
    return Operating(float(t[i]), int(fr[i]), int(esc[i]), good.size, bad.size)


def f1_threshold(good: np.ndarray, bad: np.ndarray, max_candidates: int | None = None) -> Operating:
    """Threshold maximising F1 with defective = positive: F1 = 2TP / (2TP + FP + FN)."""
    n_bad = np.asarray(bad).size

    def neg_f1(fr: np.ndarray, esc: np.ndarray) -> np.ndarray:
        tp = n_bad - esc
        return -np.where(tp > 0, 2 * tp / np.maximum(2 * tp + fr + esc, 1), 0.0)

    return _pick(good, bad, neg_f1, max_candidates)


def cost_threshold(good: np.ndarray, bad: np.ndarray, c_escape: float, c_reject: float) -> Operating:
    """Threshold minimising ``c_escape * escapes + c_reject * false_rejects`` (costs per image, >= 0)."""
    if c_escape < 0 or c_reject < 0 or c_escape + c_reject == 0:
        raise CalibrationError(f"costs must be >= 0 and not both 0; got c_escape={c_escape}, c_reject={c_reject}")
    return _pick(good, bad, lambda fr, esc: c_escape * esc + c_reject * fr)


def escape_target_threshold(good: np.ndarray, bad: np.ndarray, target_escape: float) -> Operating:
    """The highest threshold (lowest FRR) whose in-sample escape rate is <= ``target_escape``."""
    if not 0.0 <= target_escape < 1.0:
        raise CalibrationError(f"--target-escape must be in [0, 1), got {target_escape}")
    n_bad = max(np.asarray(bad).size, 1)
    # Infeasible thresholds cost +inf; among the feasible ones the fewest false rejects win (ties: the
    # lowest threshold, fewest escapes). The lowest candidate has no escapes, so one is always feasible.
    return _pick(good, bad, lambda fr, esc: np.where(esc / n_bad <= target_escape + _EPS, fr, np.inf))


def leave_one_out(good: np.ndarray, bad: np.ndarray,
                  fit: Callable[[np.ndarray, np.ndarray], float]) -> tuple[int, int]:
    """(false rejects, escapes) when each image is judged by a threshold fitted without it.

    An optimised threshold scores itself too well on the images it was fitted to; leaving each one out
    gives an honest estimate of the procedure's error rates. ``fit(good, bad) -> threshold``.
    """
    good, bad = np.asarray(good, dtype=np.float32).ravel(), np.asarray(bad, dtype=np.float32).ravel()
    fr = sum(int(good[i] >= fit(np.delete(good, i), bad)) for i in range(good.size))
    esc = sum(int(bad[i] < fit(good, np.delete(bad, i))) for i in range(bad.size))
    return fr, esc


# --- pixels -------------------------------------------------------------------------------------


def pixel_conformal_threshold(good_maps: np.ndarray, alpha: float) -> ConformalQuantile:
    """Conformal quantile of all good pixels' scores: a good pixel exceeds it with probability <= alpha.

    ``good_maps``: ``(N, h, w)`` anomaly maps of good images. Pixels of one image are not independent,
    so this is a per-pixel rate, not an image-level guarantee (``min_region_area`` supplies that).
    """
    return conformal_quantile(good_maps, alpha, what="good pixels")


def pixel_f1_threshold(maps: np.ndarray, masks: np.ndarray, max_candidates: int = 4096) -> Operating:
    """Per-pixel F1-optimal threshold over ``maps`` ``(N, h, w)`` against bool ``masks`` ``(N, h, w)``."""
    maps, masks = np.asarray(maps), np.asarray(masks, dtype=bool)
    if maps.shape != masks.shape:
        raise CalibrationError(f"maps {maps.shape} and masks {masks.shape} must have the same shape")
    return f1_threshold(maps[~masks], maps[masks], max_candidates)


def min_region_area(good_maps: np.ndarray, pixel_threshold: float, alpha: float) -> int:
    """Smallest region area that good images exceed with probability <= ``alpha`` (conformal).

    The largest above-threshold component of each good map is noise by definition; the area is one more
    than the conformal quantile of those sizes, and at least 1. Needs as many images as the image threshold.
    """
    areas = np.array([rule.components(m, pixel_threshold).largest_area() for m in np.asarray(good_maps)],
                     dtype=np.float64)
    q = conformal_quantile(areas, alpha, what="good images (for the minimum region area)")
    return int(q.value) + 1

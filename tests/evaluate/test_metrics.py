"""Metrics agree with sklearn and with hand-computed AUPRO."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from inspector.evaluate.metrics import aupro, auroc, pixel_auroc


def test_auroc_matches_sklearn_and_is_never_flipped():
    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, 200)
    s = rng.normal(size=200) + y
    assert auroc(y, s) == roc_auc_score(y, s)
    assert auroc(y, -s) < 0.5  # reported as it is
    assert np.isnan(auroc(np.zeros(5), np.arange(5)))


def test_pixel_auroc_flattens():
    rng = np.random.default_rng(1)
    masks = rng.random((3, 8, 8)) > 0.8
    maps = rng.random((3, 8, 8)) + masks
    assert pixel_auroc(masks, maps) == roc_auc_score(masks.ravel(), maps.ravel())


def test_aupro_hand_computed():
    # One region of two pixels (scores 0.35, 0.8), two normal pixels (0.1, 0.4).
    # PRO vs FPR: (0, 0.5) as soon as 0.8 is caught; 0.35 needs t < 0.35, which passes 0.4 (FPR 0.5).
    # So PRO = 0.5 on the whole of FPR [0, 0.3]: normalised area 0.5.
    masks = np.array([[[False, False, True, True]]])
    maps = np.array([[[0.1, 0.4, 0.35, 0.8]]])
    assert abs(aupro(masks, maps) - 0.5) < 1e-9


def test_aupro_averages_regions_not_pixels():
    # A big region fully caught and a small one never caught before FPR 0.3: PRO 0.5, whatever the sizes.
    mask = np.zeros((1, 10, 10), bool)
    mask[0, :5, :5] = True  # 25 px
    mask[0, 8, 8] = True  # 1 px, separate region
    amap = np.zeros((1, 10, 10))
    amap[0, :5, :5] = 1.0
    amap[0, 8, 8] = -1.0  # below every normal pixel
    assert abs(aupro(mask, amap) - 0.5) < 1e-3
    perfect = mask.astype(float)
    assert abs(aupro(mask, perfect) - 1.0) < 1e-9
    assert np.isnan(aupro(np.zeros((1, 3, 3), bool), np.zeros((1, 3, 3))))


def test_pixel_metrics_take_images_of_different_sizes():
    # Two images at their own mask resolution: the same figures as the pixels pooled by hand.
    rng = np.random.default_rng(2)
    masks = [rng.random((6, 10)) > 0.7, rng.random((4, 4)) > 0.7]
    maps = [rng.random(m.shape) + m for m in masks]
    flat_m = np.concatenate([m.ravel() for m in masks])
    flat_a = np.concatenate([a.ravel() for a in maps])
    assert pixel_auroc(masks, maps) == roc_auc_score(flat_m, flat_a)
    stacked = aupro(np.zeros((1, 1, 1), bool), np.zeros((1, 1, 1)))
    assert np.isnan(stacked)
    assert 0.0 < aupro(masks, maps) <= 1.0


def test_pixel_metrics_refuse_a_map_of_another_size():
    with pytest.raises(ValueError, match="resize the map to the mask"):
        pixel_auroc([np.zeros((4, 4), bool)], [np.zeros((2, 2))])

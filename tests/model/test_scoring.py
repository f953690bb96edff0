"""Anomaly map = L2 over channels, upsampled; score = max of the average-pooled map."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from inspector.model.scoring import AnomalyScorer, gaussian_kernel


def test_map_is_channel_l2_norm_and_score_is_max_of_pooled_map():
    torch.manual_seed(0)
    t, r = torch.randn(2, 5, 4, 4), torch.randn(2, 5, 4, 4)
    scorer = AnomalyScorer(input_size=64, pool_size=16)
    score, amap = scorer(t, r)
    norm = ((t - r) ** 2).sum(1, keepdim=True).sqrt()
    expect = F.interpolate(norm, size=(64, 64), mode="bilinear", align_corners=False)[:, 0]
    assert amap.shape == (2, 64, 64)
    torch.testing.assert_close(amap, expect)
    pooled = F.avg_pool2d(expect[:, None], 16, stride=1).flatten(1).amax(1)
    torch.testing.assert_close(score, pooled)
    assert (score <= amap.flatten(1).amax(1) + 1e-6).all()


def test_smoothing_keeps_constant_maps_and_lowers_peaks():
    t = torch.zeros(1, 3, 4, 4)
    r = torch.zeros(1, 3, 4, 4)
    r[0, :, 1, 1] = 1.0
    plain = AnomalyScorer(64, pool_size=1)(t, r)
    smooth = AnomalyScorer(64, smoothing_sigma=4.0, pool_size=1)(t, r)
    assert smooth[1].max() < plain[1].max()
    const = AnomalyScorer(64, smoothing_sigma=4.0)(torch.ones(1, 3, 4, 4), torch.zeros(1, 3, 4, 4))[1]
    torch.testing.assert_close(const, torch.full_like(const, 3**0.5))
    k = gaussian_kernel(2.0)
    assert abs(float(k.sum()) - 1) < 1e-6 and k.numel() == 17


def test_map_size_changes_only_the_map():
    t, r = torch.randn(1, 4, 4, 4), torch.randn(1, 4, 4, 4)
    s1, m1 = AnomalyScorer(64)(t, r)
    s2, m2 = AnomalyScorer(64, map_size=(32, 48))(t, r)
    torch.testing.assert_close(s1, s2)
    assert m2.shape == (1, 32, 48)


def test_pixel_target_gives_full_resolution_map():
    t, r = torch.zeros(1, 768, 2, 2), torch.zeros(1, 768, 2, 2)
    r[0, 0, 0, 0] = 2.0  # channel 0 of token (0,0) = red at pixel (0,0) after pixel_shuffle
    _, m = AnomalyScorer(32, pixels=True, pool_size=1)(t, r)
    assert m.shape == (1, 32, 32)
    assert float(m[0, 0, 0]) == 2.0 and float(m[0, 0, 1]) == 0.0


def test_non_square_input_and_map():
    # A 2 x 5 token grid scored at 32 x 80 px: the map follows the input, the peak stays in its column.
    t, r = torch.zeros(1, 3, 2, 5), torch.zeros(1, 3, 2, 5)
    r[0, :, 1, 4] = 1.0
    score, amap = AnomalyScorer((32, 80), pool_size=16)(t, r)
    assert amap.shape == (1, 32, 80)
    assert amap[0, 16:, 64:].mean() > amap[0, :16, :64].mean()
    assert float(score) <= float(amap.max()) + 1e-6
    _, small = AnomalyScorer((32, 80), map_size=(64, 160))(t, r)
    assert small.shape == (1, 64, 160)


def test_map_channels_draw_the_map_from_the_leading_channels_and_score_from_all():
    """model.map_strides: the fine stages (leading channels) draw where, every stage decides whether."""
    torch.manual_seed(1)
    t, r = torch.randn(2, 7, 4, 4), torch.randn(2, 7, 4, 4)
    split = AnomalyScorer(64, pool_size=16, map_channels=3)
    score, amap = split(t, r)
    full_score, full_map = AnomalyScorer(64, pool_size=16)(t, r)
    fine_score, fine_map = AnomalyScorer(64, pool_size=16)(t[:, :3], r[:, :3])
    torch.testing.assert_close(score, full_score)
    torch.testing.assert_close(amap, fine_map)
    assert not torch.allclose(amap, full_map) and not torch.allclose(score, fine_score)

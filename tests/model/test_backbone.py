"""Multi-scale features: shapes come from timm's feature_info, and the backbone stays frozen."""

from __future__ import annotations

import pytest
import torch

from inspector.errors import WeightsError
from inspector.model.backbone import build_backbone, stage_indices, to_grid


@pytest.mark.parametrize("strides", [(2, 4, 8, 16), (8, 16), (16,)])
def test_feature_shapes_follow_feature_info(strides):
    bb, _ = build_backbone("tf_efficientnet_lite0", strides)
    channels = bb.net.feature_info.channels()
    assert bb.net.feature_info.reduction() == list(strides)
    assert bb.out_channels == sum(channels)
    out = bb(torch.zeros(2, 3, 224, 224))
    assert out.shape == (2, sum(channels), 14, 14)


def test_backbone_is_frozen_and_stays_in_eval():
    bb, _ = build_backbone("tf_efficientnet_lite0", (8, 16))
    bb.train()
    assert not bb.net.training
    assert not any(p.requires_grad for p in bb.parameters())
    before = {k: v.clone() for k, v in bb.state_dict().items() if "running_mean" in k}
    bb(torch.randn(4, 3, 64, 64))
    after = bb.state_dict()
    assert all(torch.equal(v, after[k]) for k, v in before.items())


def test_unknown_stride_is_an_error():
    with pytest.raises(WeightsError, match="no stage at stride 64"):
        stage_indices("tf_efficientnet_lite0", (64,))


def test_non_square_input_gives_a_non_square_grid():
    bb, _ = build_backbone("tf_efficientnet_lite0", (4, 8, 16, 32))
    assert bb(torch.zeros(1, 3, 224, 560)).shape == (1, bb.out_channels, 14, 35)


def test_area_resize_sees_a_thin_line_that_bilinear_misses():
    # A one-pixel line at stride 2 between the pixels bilinear samples for each token: the area mean
    # keeps it (1/8 of the footprint), bilinear reads 0.
    f = torch.zeros(1, 1, 112, 112)
    f[..., 3::8, :] = 1.0  # rows 3, 11, ...: bilinear to 14 rows samples rows 3.5 +- 0.5 -> 3 and 4
    f_bil, f_area = to_grid(f, (14, 14), "bilinear"), to_grid(f, (14, 14), "area")
    torch.testing.assert_close(f_area, torch.full_like(f_area, 1 / 8))
    g = torch.zeros(1, 1, 112, 112)
    g[..., 0::8, :] = 1.0  # rows 0, 8, ...: not read by bilinear at all
    assert float(to_grid(g, (14, 14), "bilinear").abs().max()) == 0.0
    assert float(to_grid(g, (14, 14), "area").min()) == 1 / 8
    assert f_bil.shape == f_area.shape == (1, 1, 14, 14)
    # Coarser stages are upsampled in both modes.
    c = torch.randn(1, 2, 7, 7)
    torch.testing.assert_close(to_grid(c, (14, 14), "area"), to_grid(c, (14, 14), "bilinear"))

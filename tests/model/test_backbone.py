"""Multi-scale features: shapes come from timm's feature_info, and the backbone stays frozen."""

from __future__ import annotations

import pytest
import torch

from inspector.errors import WeightsError
from inspector.model.backbone import build_backbone, stage_indices


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

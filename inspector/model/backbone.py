"""Frozen multi-scale CNN features on one stride-16 grid, from timm ``features_only`` models.

Stage selection is by output stride (``feature_info.reduction()``), so nothing downstream hard-codes
channel counts: ``out_channels`` is the sum of ``feature_info.channels()`` of the selected stages.
"""

from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from inspector.errors import WeightsError
from inspector.model.weights import (
    WeightsSource,
    _timm_download,
    classifier_state_dict,
    load_checked,
    resolve,
)

GRID_STRIDE = 16  # every selected stage is resized to this stride: 224 x 560 px -> 14 x 35 tokens


def to_grid(f: torch.Tensor, size: tuple[int, int], mode: str = "bilinear") -> torch.Tensor:
    """One stage's features ``(B, C, h, w)`` on the token grid ``size`` = (rows, columns).

    Coarser stages are upsampled bilinearly. Finer ones are brought down by ``mode``: "bilinear" (without
    anti-aliasing it reads only the 2x2 pixels nearest each token centre, so a thin defect between them
    is missed) or "area" (the mean over each token's footprint; an integer-factor average pool, which
    exports to a plain ONNX AveragePool).
    """
    h, w = f.shape[-2:]
    if (h, w) == tuple(size):
        return f
    if mode == "area" and h >= size[0] and w >= size[1]:
        if h % size[0] == 0 and w % size[1] == 0:
            return F.avg_pool2d(f, kernel_size=(h // size[0], w // size[1]))
        return F.adaptive_avg_pool2d(f, size)
    return F.interpolate(f, size=size, mode="bilinear", align_corners=False)


class MultiScaleBackbone(nn.Module):
    """Frozen ImageNet CNN -> selected stages, resized to the stride-16 grid (``to_grid``) and concatenated.

    Input: normalised images ``(B, 3, H, W)`` with H, W multiples of 16.
    Output: ``(B, out_channels, H/16, W/16)``.
    """

    def __init__(self, net: nn.Module, strides: tuple[int, ...], resize: str = "bilinear") -> None:
        super().__init__()
        self.net = net
        self.strides = strides
        self.resize = resize
        self.stage_channels = tuple(int(c) for c in net.feature_info.channels())  # per stage, finest first
        self.out_channels = sum(self.stage_channels)
        for p in self.net.parameters():
            p.requires_grad_(False)
        self.net.eval()

    def train(self, mode: bool = True) -> MultiScaleBackbone:
        # The backbone is frozen: BatchNorm statistics must never update, whatever the caller does.
        super().train(mode)
        self.net.eval()
        return self

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        feats = self.net(x)
        size = (x.shape[-2] // GRID_STRIDE, x.shape[-1] // GRID_STRIDE)
        return torch.cat([to_grid(f, size, self.resize) for f in feats], dim=1)


def stage_indices(backbone: str, strides: tuple[int, ...]) -> tuple[int, ...]:
    """timm ``out_indices`` of the stages whose reduction is in ``strides``."""
    import timm

    probe = timm.create_model(backbone, pretrained=False, features_only=True)
    reductions = probe.feature_info.reduction()
    indices = []
    for s in strides:
        if s not in reductions:
            raise WeightsError(f"{backbone} has no stage at stride {s}; available strides: {reductions}")
        indices.append(reductions.index(s))
    return tuple(indices)


def build_backbone(
    backbone: str, strides: tuple[int, ...], weights: str | Path | None = None, resize: str = "bilinear"
) -> tuple[MultiScaleBackbone, WeightsSource]:
    """Create the frozen multi-scale backbone with pretrained weights, or raise WeightsError.

    The classifier head of a weights file is dropped; every key of the features model must be present
    with its shape (``load_checked``), so a partial or mismatched file is refused.
    """
    import timm

    source = resolve(backbone, weights)
    out_indices = stage_indices(backbone, strides)
    if source.kind == "timm-download":
        net = _timm_download(backbone, features_only=True, out_indices=out_indices)
    else:
        net = timm.create_model(backbone, pretrained=False, features_only=True, out_indices=out_indices)
        state = classifier_state_dict(source)
        # Keys past the last selected stage (and the classifier head) are not in the features model.
        load_checked(net, state, f"{backbone} from {source.path}", allow_extra=_unused_prefixes(net, state))
    return MultiScaleBackbone(net, strides, resize), source


def _unused_prefixes(net: nn.Module, state: dict[str, torch.Tensor]) -> tuple[str, ...]:
    """Top-level prefixes of ``state`` (by first two name parts) that the features model does not hold."""
    have = {".".join(k.split(".")[:2]) for k in net.state_dict()}
    have_top = {k.split(".")[0] for k in net.state_dict()}
    prefixes = set()
    for k in state:
        two = ".".join(k.split(".")[:2])
        top = k.split(".")[0]
        if top not in have_top:
            prefixes.add(top + ".")
        elif two not in have and top in ("blocks", "layer1", "layer2", "layer3", "layer4"):
            prefixes.add(two + ".")
    return tuple(sorted(prefixes))


def build_backbone_skeleton(backbone: str, strides: tuple[int, ...], resize: str = "bilinear") -> MultiScaleBackbone:
    """The architecture alone, for restoring a checkpoint that carries the backbone's weights.

    Never use it to train: its weights are random until the caller loads a state dict strictly.
    """
    import timm

    net = timm.create_model(backbone, pretrained=False, features_only=True, out_indices=stage_indices(backbone, strides))
    return MultiScaleBackbone(net, strides, resize)

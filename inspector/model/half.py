"""The mixed-precision twin of the served graph (``graph.py``).

Preprocessing (uint8 -> normalised image) and scoring (difference, norm, upsampling, smoothing, pooling,
max) stay in float32; the backbone and the transformer run in float16; LayerNorms run in float32 when the
fp16 overflow check says so (``layernorm_load``).
"""

from __future__ import annotations

import copy

import torch
import torch.nn.functional as F
from torch import nn

from inspector.model.graph import InspectionModel

FP16_MAX = 65504.0
# A float16 LayerNorm accumulates sum(x^2) over the hidden dimension; keep that sum 4x below FP16_MAX.
LAYERNORM_SUMSQ_LIMIT = FP16_MAX / 4


class FP32LayerNorm(nn.Module):
    """A LayerNorm evaluated in float32 inside a float16 network; returns the input's dtype.

    Exports to ``Cast -> LayerNormalization (float32) -> Cast``, which a strongly typed TensorRT network
    keeps in float32.
    """

    def __init__(self, ln: nn.LayerNorm) -> None:
        super().__init__()
        self.normalized_shape = tuple(ln.normalized_shape)
        self.eps = ln.eps
        self.register_buffer("weight", ln.weight.detach().float().clone())
        self.register_buffer("bias", ln.bias.detach().float().clone() if ln.bias is not None else None)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.layer_norm(x.float(), self.normalized_shape, self.weight, self.bias, self.eps).to(x.dtype)


class HalfInspectionModel(nn.Module):
    """``uint8 (B, H, W, 3)`` -> ``score (B,)`` float32, ``anomaly_map (B, h, w)`` float32; fp16 inside.

    Preprocess and scorer are the float32 modules of the source model; the ADTR is a float16 copy.
    """

    def __init__(self, model: InspectionModel, layernorm_fp32: bool) -> None:
        super().__init__()
        self.preprocess = model.preprocess
        self.adtr = copy.deepcopy(model.adtr).half().eval()
        self.scorer = model.scorer
        self.stitch = model.stitch
        self.layernorm_fp32 = layernorm_fp32
        if layernorm_fp32:
            for name, module in list(self.adtr.named_modules()):
                if isinstance(module, nn.LayerNorm):
                    parent_name, _, attr = name.rpartition(".")
                    parent = self.adtr.get_submodule(parent_name) if parent_name else self.adtr
                    setattr(parent, attr, FP32LayerNorm(module))

    def forward(self, frames: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        target, recon = self.adtr(self.preprocess(frames).half())
        score, amap = self.scorer(target.float(), recon.float())
        return (score, amap) if self.stitch is None else self.stitch(frames, score, amap)


def to_half(model: InspectionModel, layernorm_fp32: bool) -> HalfInspectionModel:
    """The mixed-precision twin of a float32 serving graph (shares its preprocess and scorer)."""
    return HalfInspectionModel(model, layernorm_fp32).eval()


@torch.no_grad()
def layernorm_load(model: InspectionModel, frames: torch.Tensor) -> dict[str, float]:
    """How close float16 LayerNorms would come to overflow on ``frames`` (``uint8 (N, H, W, 3)``).

    Returns ``max_sum_sq``: the largest per-token sum of squares over the normalised dimension seen at any
    LayerNorm input (what a naive float16 variance accumulates), and ``max_abs``: the largest input value.
    Both are 0 for a model without LayerNorm.
    """
    stats = {"max_sum_sq": 0.0, "max_abs": 0.0}

    def hook(module: nn.Module, args: tuple[torch.Tensor, ...]) -> None:
        x = args[0].float()
        stats["max_sum_sq"] = max(stats["max_sum_sq"], float(x.pow(2).sum(-1).max()))
        stats["max_abs"] = max(stats["max_abs"], float(x.abs().max()))

    handles = [m.register_forward_pre_hook(hook) for m in model.modules() if isinstance(m, nn.LayerNorm)]
    try:
        for i in range(0, len(frames), 8):
            model(frames[i : i + 8])
    finally:
        for h in handles:
            h.remove()
    return stats

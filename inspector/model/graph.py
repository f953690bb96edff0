"""The served graph: frames in, result out, as one ``nn.Module`` built from a trained ADTR and its serving settings.

Export, the torch backend and the benchmark all build the graph here, so the ONNX files and the torch
backend compute the same function: ``uint8 (B, H, W, 3)`` BGR frames -> ``score (B,)``, ``anomaly_map (B, h, w)``.
Its mixed-precision twin is in ``half.py``.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from inspector.errors import ExportError
from inspector.model.adtr import ADTR, ModelConfig
from inspector.model.preprocess import Preprocess
from inspector.model.scoring import AnomalyScorer
from inspector.model.tiling import Stitch


@dataclass(frozen=True)
class GraphSpec:
    """Serving settings of a product: frame (H, W), ROI (x, y, w, h) or None, mask size (h, w)."""

    frame: tuple[int, int]
    roi: tuple[int, int, int, int] | None
    mask_size: tuple[int, int]

    def check(self) -> None:
        """ExportError when the ROI leaves the frame or a size is not positive."""
        h, w = self.frame
        if h < 16 or w < 16:
            raise ExportError(f"frame {w}x{h} is too small; at least 16x16 pixels")
        if self.mask_size[0] < 1 or self.mask_size[1] < 1:
            raise ExportError(f"mask size {self.mask_size[1]}x{self.mask_size[0]} must be positive")
        if self.roi is not None:
            x, y, rw, rh = self.roi
            if x < 0 or y < 0 or rw < 16 or rh < 16 or x + rw > w or y + rh > h:
                raise ExportError(
                    f"ROI x={x} y={y} w={rw} h={rh} must lie inside the {w}x{h} frame and be at least 16x16"
                )


class InspectionModel(nn.Module):
    """Frames in, result out: ``uint8 (B, H, W, 3)`` BGR -> ``score (B,)``, ``anomaly_map (B, h, w)``.

    This is the graph that is exported to ONNX and served by every backend. With tiling, ``stitch`` turns
    the tiles' scores and maps into the frame's (the tiling is in the graph: see ``tiling.py``).
    """

    def __init__(self, preprocess: Preprocess, adtr: ADTR, scorer: AnomalyScorer, stitch: Stitch | None = None) -> None:
        super().__init__()
        self.preprocess = preprocess
        self.adtr = adtr
        self.scorer = scorer
        self.stitch = stitch

    def forward(self, frames: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        target, recon = self.adtr(self.preprocess(frames))
        score, amap = self.scorer(target, recon)
        return (score, amap) if self.stitch is None else self.stitch(frames, score, amap)


def default_mask_size(cfg: ModelConfig, crop_hw: tuple[int, int]) -> tuple[int, int]:
    """The map size when none is asked for: the model's input size, or with tiling the whole crop at the
    model's resolution (crop x input / tile)."""
    tile = cfg.tile_hw
    if tile is None:
        return cfg.size_hw
    (h, w), (th, tw) = cfg.size_hw, (min(tile[0], crop_hw[0]), min(tile[1], crop_hw[1]))
    return max(1, round(crop_hw[0] * h / th)), max(1, round(crop_hw[1] * w / tw))


def inspection_model(adtr: ADTR, mean: tuple[float, ...], std: tuple[float, ...], spec: GraphSpec) -> InspectionModel:
    """The float32 serving graph of a trained ``adtr`` (input normalisation ``mean``/``std``), in eval mode."""
    spec.check()
    cfg = adtr.cfg
    pre = Preprocess(cfg.size_hw, mean, std, spec.roi, cfg.tile_hw, cfg.tile_overlap)
    if cfg.tile_hw is None:
        return InspectionModel(pre, adtr, AnomalyScorer.for_model(adtr, map_size=spec.mask_size)).eval()
    stitch = Stitch(spec.roi, cfg.tile_hw, cfg.tile_overlap, spec.mask_size)
    return InspectionModel(pre, adtr, AnomalyScorer.for_model(adtr), stitch).eval()

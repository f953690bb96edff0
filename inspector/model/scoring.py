"""Anomaly map and image score from a target and its reconstruction.

Anomaly map: L2 norm over channels of ``target - reconstruction`` on the token grid, bilinearly
upsampled to the input size (h, w), optionally Gaussian-smoothed. Image score: the maximum of the map after
average pooling (``pool_size`` px). With ``map_channels`` (``model.map_strides``) the returned map is the
norm over the leading channels only (the fine stages, which localise), while the score still comes from
every channel (a coarse stage sees large, faint defects). For the pixel-reconstruction ablation the
difference is unshuffled back to pixels first, so the map is full-resolution.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from inspector.model.adtr import ADTR, ModelConfig
from inspector.model.backbone import GRID_STRIDE


def gaussian_kernel(sigma: float) -> torch.Tensor:
    """1-D normalised Gaussian of radius ceil(4 sigma), ``(K,)``."""
    radius = max(1, math.ceil(4 * sigma))
    x = torch.arange(-radius, radius + 1, dtype=torch.float32)
    k = torch.exp(-(x**2) / (2 * sigma**2))
    return k / k.sum()


class AnomalyScorer(nn.Module):
    """``(target, reconstruction)`` -> ``(score (B,), anomaly_map (B, h, w))``.

    ``input_size``: the model input, (H, W) or one int for a square. ``map_size``: (h, w) of the returned
    map; default the input size. The score is always computed on the input-size map, so it does not
    depend on the mask resolution.
    """

    def __init__(
        self,
        input_size: int | tuple[int, int],
        pixels: bool = False,
        smoothing_sigma: float = 0.0,
        pool_size: int = GRID_STRIDE,
        map_size: tuple[int, int] | None = None,
        map_channels: int | None = None,
    ) -> None:
        super().__init__()
        self.map_channels = map_channels
        self.input_size = (input_size, input_size) if isinstance(input_size, int) else tuple(int(v) for v in input_size)
        self.pixels = pixels
        self.pool_size = pool_size
        self.map_size = map_size
        if smoothing_sigma > 0:
            self.register_buffer("kernel", gaussian_kernel(smoothing_sigma), persistent=False)
        else:
            self.kernel = None

    @classmethod
    def for_config(cls, cfg: ModelConfig, map_size: tuple[int, int] | None = None,
                   map_channels: int | None = None) -> AnomalyScorer:
        """The scorer a model config asks for: the one place that reads the scoring fields of ``ModelConfig``.
        ``map_channels``: ``ADTR.map_channels`` (how many target channels ``cfg.map_strides`` covers)."""
        return cls(cfg.size_hw, cfg.target == "pixels", cfg.smoothing_sigma, cfg.pool_size, map_size=map_size,
                   map_channels=map_channels)

    @classmethod
    def for_model(cls, model: ADTR, map_size: tuple[int, int] | None = None) -> AnomalyScorer:
        """The scorer of a built ``model``: its config and its map channels."""
        return cls.for_config(model.cfg, map_size, model.map_channels)

    def _smooth(self, m: torch.Tensor) -> torch.Tensor:
        k = self.kernel
        r = (k.numel() - 1) // 2
        # Separable blur with edge replication, so borders are not darkened by zero padding.
        m = F.conv2d(F.pad(m, (r, r, 0, 0), mode="replicate"), k.view(1, 1, 1, -1))
        return F.conv2d(F.pad(m, (0, 0, r, r), mode="replicate"), k.view(1, 1, -1, 1))

    def _to_input(self, m: torch.Tensor) -> torch.Tensor:
        if tuple(m.shape[-2:]) != self.input_size:
            m = F.interpolate(m, size=self.input_size, mode="bilinear", align_corners=False)
        return self._smooth(m) if self.kernel is not None else m

    def forward(self, target: torch.Tensor, reconstruction: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        diff = target - reconstruction
        if self.pixels:
            diff = F.pixel_shuffle(diff, GRID_STRIDE)
        full = self._to_input(torch.linalg.vector_norm(diff, dim=1, keepdim=True))  # (B, 1, h, w)
        pooled = F.avg_pool2d(full, kernel_size=self.pool_size, stride=1)
        score = pooled.flatten(1).amax(dim=1)
        m = full
        if self.map_channels is not None:
            m = self._to_input(torch.linalg.vector_norm(diff[:, : self.map_channels], dim=1, keepdim=True))
        if self.map_size is not None and tuple(self.map_size) != self.input_size:
            m = F.interpolate(m, size=tuple(self.map_size), mode="bilinear", align_corners=False)
        return score, m[:, 0]

"""Camera frame -> normalised model input, as a torch module so it runs inside the exported graph.

The same module prepares training images, so what a model was trained on and what an engine sees on
the line are computed by the same operations.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from inspector.model.tiling import TileLayout, cut, frame_layout


class Preprocess(nn.Module):
    """``uint8 (B, H, W, 3)`` BGR frames -> ``float32 (B, 3, h, w)`` normalised RGB, (h, w) = ``size``.

    Steps: crop ``roi`` (x, y, w, h in frame pixels; None = whole frame), BGR->RGB, integer-factor
    average pooling when the crop is at least twice the model size along both axes (anti-aliasing that
    exports to plain AveragePool), bilinear resize to ``size``, scale to [0, 1], ``(x - mean) / std``.
    ``size`` is (h, w), or one int for a square input. With ``tile`` = (th, tw) frame pixels, the crop is
    cut into overlapping tiles first (``tiling.py``) and each tile is one model input: the output is then
    ``(B * T, 3, h, w)``, the T tiles of each frame in a row.
    """

    def __init__(
        self,
        size: int | tuple[int, int],
        mean: tuple[float, ...],
        std: tuple[float, ...],
        roi: tuple[int, int, int, int] | None = None,
        tile: tuple[int, int] | None = None,
        overlap: int = 0,
    ) -> None:
        super().__init__()
        self.size = (size, size) if isinstance(size, int) else (int(size[0]), int(size[1]))
        self.roi = roi
        self.tile = tile
        self.overlap = overlap
        # Folding /255 into the affine map saves one pass over the frame.
        std_t = torch.tensor(std, dtype=torch.float32).view(1, 3, 1, 1)
        mean_t = torch.tensor(mean, dtype=torch.float32).view(1, 3, 1, 1)
        self.register_buffer("scale", 1.0 / (255.0 * std_t), persistent=False)
        self.register_buffer("shift", -mean_t / std_t, persistent=False)

    def layout(self, frame_hw: tuple[int, int]) -> TileLayout | None:
        """The tiles over a frame of ``frame_hw`` (after the ROI crop), or None without tiling."""
        return frame_layout(frame_hw, self.roi, self.tile, self.overlap)

    def forward(self, frames: torch.Tensor) -> torch.Tensor:
        # Cast first: the cast is then the only uint8 op in the exported graph (TensorRT-friendly), and
        # the BGR->RGB flip runs on three small planes at the end instead of on the whole frame.
        img = frames.to(self.scale.dtype)
        if self.roi is not None:
            x, y, w, h = self.roi
            img = img[:, y : y + h, x : x + w, :]
        img = img.permute(0, 3, 1, 2)
        layout = self.layout(frames.shape[1:3])
        if layout is not None:
            img = cut(img, layout)
        h, w = img.shape[-2], img.shape[-1]
        # One factor for both axes keeps the pooling isotropic; the bilinear resize then sets the aspect.
        k = min(h // self.size[0], w // self.size[1])
        if k >= 2:
            img = F.avg_pool2d(img, kernel_size=k, stride=k)
        if tuple(img.shape[-2:]) != self.size:
            img = F.interpolate(img, size=self.size, mode="bilinear", align_corners=False)
        return img.flip(1) * self.scale + self.shift

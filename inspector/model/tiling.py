"""Tiling for parts much larger than the model input: overlapping tiles in, one stitched map out.

A 2048 x 2048 sheet squashed into 224 x 224 loses every defect smaller than ~9 px. With ``model.tile_size``
set, the (ROI-cropped) frame is cut into tiles of that many frame pixels that overlap by at least
``model.tile_overlap`` px; each tile is one model input (resized to ``model.input_size`` like any frame);
the image score is the highest tile score, and the map is stitched from the tiles' maps.

Stitching is overlap-tile (as in U-Net): every pixel takes its value from the one tile in which it lies
farthest from the tile's edge, the boundary between neighbours being the middle of their overlap. So the
overlap gives each tile's kept part context on every side, and the stitched map needs nothing but slices
and concatenations (no scatter, no weights), which export to plain ONNX Slice/Concat ops for every backend.

The layout is a pure function of the crop's size, so a tiled graph exported for a fixed frame has static
slices, and training images of any size are cut the same way as frames.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from inspector.errors import ConfigError


def tile_starts(length: int, tile: int, overlap: int) -> tuple[int, ...]:
    """Start offsets of tiles of ``tile`` px covering ``length`` px with at least ``overlap`` px between
    neighbours, spread evenly (the first at 0, the last ending at ``length``). One tile when it fits."""
    if tile <= 0 or overlap < 0 or overlap >= tile:
        raise ConfigError(f"tile of {tile} px with overlap {overlap} px: need 0 <= overlap < tile")
    if length <= tile:
        return (0,)
    n = math.ceil((length - overlap) / (tile - overlap))
    return tuple(round(i * (length - tile) / (n - 1)) for i in range(n))


def _bounds(starts: tuple[int, ...], tile: int, length: int) -> tuple[int, ...]:
    """Where each tile's kept part ends: the middle of its overlap with the next tile, the last at ``length``."""
    mids = [(starts[i] + tile + starts[i + 1]) // 2 for i in range(len(starts) - 1)]
    return (*mids, length)


@dataclass(frozen=True)
class TileLayout:
    """Tiles over a crop of ``crop`` = (H, W) px: row and column starts, tile size (th, tw), kept-part ends."""

    crop: tuple[int, int]
    tile: tuple[int, int]
    ys: tuple[int, ...]
    xs: tuple[int, ...]

    @property
    def count(self) -> int:
        """Tiles per frame."""
        return len(self.ys) * len(self.xs)

    @property
    def ends_y(self) -> tuple[int, ...]:
        return _bounds(self.ys, self.tile[0], self.crop[0])

    @property
    def ends_x(self) -> tuple[int, ...]:
        return _bounds(self.xs, self.tile[1], self.crop[1])


def tile_layout(crop: tuple[int, int], tile: tuple[int, int], overlap: int) -> TileLayout:
    """The layout of ``tile`` (th, tw) px tiles over a ``crop`` (H, W); a tile larger than the crop shrinks to it."""
    th, tw = min(tile[0], crop[0]), min(tile[1], crop[1])
    oy, ox = min(overlap, th - 1), min(overlap, tw - 1)
    return TileLayout(crop, (th, tw), tile_starts(crop[0], th, oy), tile_starts(crop[1], tw, ox))


def frame_layout(frame_hw: tuple[int, int], roi: tuple[int, int, int, int] | None, tile: tuple[int, int] | None,
                 overlap: int) -> TileLayout | None:
    """The tiles over a frame of ``frame_hw`` cropped to ``roi`` (x, y, w, h) or whole; None when ``tile`` is None."""
    if tile is None:
        return None
    crop = (roi[3], roi[2]) if roi is not None else (int(frame_hw[0]), int(frame_hw[1]))
    return tile_layout(crop, tile, overlap)


def cut(img: torch.Tensor, layout: TileLayout) -> torch.Tensor:
    """``(B, C, H, W)`` -> tiles ``(B * T, C, th, tw)``, frame-major: the T tiles of frame 0 first, row by row."""
    th, tw = layout.tile
    tiles = [img[:, :, y:y + th, x:x + tw] for y in layout.ys for x in layout.xs]
    return torch.stack(tiles, dim=1).flatten(0, 1)


def stitch(maps: torch.Tensor, layout: TileLayout) -> torch.Tensor:
    """Tile maps ``(B * T, h, w)`` (at the model's size) -> one map ``(B, H, W)`` at the crop's size."""
    th, tw = layout.tile
    t = layout.count
    full = F.interpolate(maps[:, None], size=(th, tw), mode="bilinear", align_corners=False)[:, 0]
    full = full.reshape(-1, t, th, tw)
    rows = []
    y0 = 0
    for i, (y, y1) in enumerate(zip(layout.ys, layout.ends_y, strict=True)):
        parts = []
        x0 = 0
        for j, (x, x1) in enumerate(zip(layout.xs, layout.ends_x, strict=True)):
            k = i * len(layout.xs) + j
            parts.append(full[:, k, y0 - y:y1 - y, x0 - x:x1 - x])
            x0 = x1
        rows.append(torch.cat(parts, dim=2))
        y0 = y1
    return torch.cat(rows, dim=1)


def merge_scores(scores: torch.Tensor, layout: TileLayout) -> torch.Tensor:
    """Tile scores ``(B * T,)`` -> image scores ``(B,)``: the highest tile's."""
    return scores.reshape(-1, layout.count).amax(dim=1)


class Stitch(nn.Module):
    """Per-tile ``score (B * T,)`` and ``anomaly_map (B * T, h, w)`` -> per-frame ``(B,)`` and ``(B, *map_size)``.

    ``roi``, ``tile`` and ``overlap`` are the preprocessing's (``frame_layout``); ``map_size`` None keeps the
    stitched map at the crop's size.
    """

    def __init__(self, roi: tuple[int, int, int, int] | None, tile: tuple[int, int], overlap: int,
                 map_size: tuple[int, int] | None) -> None:
        super().__init__()
        self.roi, self.tile, self.overlap = roi, tile, overlap
        self.map_size = tuple(map_size) if map_size is not None else None

    def forward(self, frames: torch.Tensor, score: torch.Tensor, amap: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        layout = frame_layout(frames.shape[1:3], self.roi, self.tile, self.overlap)
        score, amap = merge_scores(score, layout), stitch(amap, layout)
        if self.map_size is not None and tuple(amap.shape[-2:]) != self.map_size:
            amap = F.interpolate(amap[:, None], size=self.map_size, mode="bilinear", align_corners=False)[:, 0]
        return score, amap

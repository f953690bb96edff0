"""The model input size of a product, chosen from its own images when the preset says ``input_size: auto``.

A part that is not square keeps its aspect ratio: a 256 x 640 commutator strip is not squashed into a
square, which would thin its horizontal cracks by 2.9x. The input keeps the pixel count (and so the token
count and the cost) of the square presets, ``AUTO_SIDE``² pixels: a 640 x 256 strip becomes 352 x 144, a square
part stays 224 x 224. Both sides are rounded to the token stride (16 px); the shorter side is at least
``AUTO_MIN_SIDE`` and the longer one at most ``AUTO_MAX_SIDE``: a part longer than that is a case for tiling
(``model.tile_size``), not for an ever longer token sequence.

Why the pixel count and not the shorter side: on KolektorSDD (640 x 256) keeping the shorter side at 224
(560 x 224, 2.5x the tokens) trained 3x longer and scored image AUROC 0.828 against 0.846 at 352 x 144
(pool 32); anomalib's PaDiM on the same weights agrees (0.844 at 560 x 224, 0.875 at 400 x 160). See
docs/benchmarks.md, "A recipe chosen across products".
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence

from inspector.errors import ConfigError
from inspector.model.adtr import ModelConfig
from inspector.model.backbone import GRID_STRIDE

AUTO_SIDE = 224
AUTO_MIN_SIDE = 64
AUTO_MAX_SIDE = 1024


def _round16(v: float) -> int:
    return max(GRID_STRIDE, int(v / GRID_STRIDE + 0.5) * GRID_STRIDE)


def auto_input_size(image_hw: tuple[int, int], side: int = AUTO_SIDE, max_side: int = AUTO_MAX_SIDE,
                    min_side: int = AUTO_MIN_SIDE) -> tuple[int, int]:
    """(H, W) in pixels for images of ``image_hw`` = (height, width): about ``side``² pixels, the aspect ratio
    kept (each side to the nearest multiple of 16), the shorter side at least ``min_side``, the longer at most
    ``max_side``."""
    h, w = image_hw
    if h <= 0 or w <= 0:
        raise ConfigError(f"cannot choose an input size for images of {w}x{h} px")
    short, long_ = (h, w) if h <= w else (w, h)
    ratio = math.sqrt(long_ / short)
    a = max(_round16(side / ratio), min(_round16(min_side), _round16(side)))
    b = max(a, min(_round16(side * ratio), _round16(max_side)))
    return (a, b) if h <= w else (b, a)


def typical_size(sizes: Sequence[tuple[int, int]]) -> tuple[int, int]:
    """The (H, W) of the image with the median aspect ratio (height / width) of ``sizes``."""
    if not sizes:
        raise ConfigError("no training images to choose the input size from")
    ranked = sorted(sizes, key=lambda hw: hw[0] / hw[1])
    return ranked[len(ranked) // 2]


def resolve_input_size(cfg: ModelConfig, sizes: Sequence[tuple[int, int]]) -> ModelConfig:
    """``cfg`` with ``input_size: auto`` replaced by [H, W] for images of ``sizes`` ((H, W) each; with tiling,
    the tile's size); any other ``cfg`` unchanged."""
    if cfg.input_size != "auto":
        return cfg
    resolved = dataclasses.replace(cfg, input_size=auto_input_size(typical_size(sizes)))
    resolved.validate("model.input_size: auto")
    return resolved

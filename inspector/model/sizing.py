"""The model input size of a product, chosen from its own images when the preset says ``input_size: auto``.

A part that is not square keeps its aspect ratio: a 256 x 640 commutator strip is not squashed into a
square, which would thin its horizontal cracks by 2.9x. The shorter side is set to ``AUTO_SIDE`` pixels
(the side of the square presets), the longer one follows the images' aspect ratio, both rounded to the
token stride (16 px), and the longer side is capped at ``AUTO_MAX_SIDE``: a part longer than that is a
case for tiling (``model.tile_size``), not for an ever longer token sequence.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

from inspector.errors import ConfigError
from inspector.model.adtr import ModelConfig
from inspector.model.backbone import GRID_STRIDE

AUTO_SIDE = 224
AUTO_MAX_SIDE = 1024


def _round16(v: float) -> int:
    return max(GRID_STRIDE, int(round(v / GRID_STRIDE)) * GRID_STRIDE)


def auto_input_size(image_hw: tuple[int, int], side: int = AUTO_SIDE, max_side: int = AUTO_MAX_SIDE) -> tuple[int, int]:
    """(H, W) in pixels for images of ``image_hw`` = (height, width): the shorter side ``side``, the aspect
    ratio kept (to the nearest multiple of 16), the longer side at most ``max_side``."""
    h, w = image_hw
    if h <= 0 or w <= 0:
        raise ConfigError(f"cannot choose an input size for images of {w}x{h} px")
    short, long_ = (h, w) if h <= w else (w, h)
    a = _round16(side)
    b = min(_round16(side * long_ / short), _round16(max_side) if max_side >= GRID_STRIDE else GRID_STRIDE)
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

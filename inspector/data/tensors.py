"""Images on disk -> model inputs, through the same Preprocess module the exported graph uses."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from pathlib import Path

import torch

from inspector.data.dataset import read_image
from inspector.model.preprocess import Preprocess


def load_inputs(paths: Iterable[Path], preprocess: Preprocess, sizes: list | None = None) -> torch.Tensor:
    """Read images and preprocess each: ``(N, 3, h, w)`` float32 on the CPU, (h, w) = ``preprocess.size``.

    Errors name the file. ``sizes``, when given, receives each image's own (H, W)."""
    out = []
    with torch.no_grad():
        for p in paths:
            img = read_image(p)
            if sizes is not None:
                sizes.append(tuple(img.shape[:2]))
            out.append(preprocess(torch.from_numpy(img)[None]))
    if not out:
        return torch.empty(0, 3, *preprocess.size)
    return torch.cat(out)


def image_sizes(paths: list[Path], limit: int = 32) -> list[tuple[int, int]]:
    """(H, W) of up to ``limit`` images spread evenly over ``paths`` (for choosing an input size)."""
    step = max(1, len(paths) // limit)
    return [tuple(read_image(p).shape[:2]) for p in paths[::step][:limit]]


def batches(n: int, size: int) -> Iterator[slice]:
    """Slices covering ``range(n)`` in chunks of ``size``."""
    for i in range(0, n, size):
        yield slice(i, min(i + size, n))

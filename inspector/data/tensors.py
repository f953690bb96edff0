"""Images on disk -> model inputs, through the same Preprocess module the exported graph uses."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from pathlib import Path

import torch

from inspector.data.dataset import read_image
from inspector.model.preprocess import Preprocess


def load_inputs(paths: Iterable[Path], preprocess: Preprocess) -> torch.Tensor:
    """Read images and preprocess each: ``(N, 3, S, S)`` float32 on the CPU. Errors name the file."""
    out = []
    with torch.no_grad():
        for p in paths:
            frame = torch.from_numpy(read_image(p))[None]
            out.append(preprocess(frame))
    if not out:
        return torch.empty(0, 3, preprocess.size, preprocess.size)
    return torch.cat(out)


def batches(n: int, size: int) -> Iterator[slice]:
    """Slices covering ``range(n)`` in chunks of ``size``."""
    for i in range(0, n, size):
        yield slice(i, min(i + size, n))

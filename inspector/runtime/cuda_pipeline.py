"""Frames in host memory -> results in host memory on one CUDA GPU, with copies overlapping compute.

A batch is cut into chunks of at most ``chunk`` frames. Each chunk is uploaded on a copy stream into one
of two device input buffers (double buffering) while the previous chunk is computed on the compute
stream by a CUDA graph replay; results go back to pinned host memory on the compute stream, and the
host synchronises once per call. Chunk sizes are rounded up to a small set of buckets (powers of two up
to ``chunk``), so a few graphs cover every batch size; rows past the real frames compute garbage that is
never read back.

Frames already in pinned host memory (e.g. numpy views of ``torch.empty(..., pin_memory=True)``) are
uploaded directly; other frames are first copied into a pinned staging buffer.

Written against the CUDA API of torch 2.11+; it cannot run on a machine without a GPU, and
``deploy/gpu_check.sh`` is what exercises it on one.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

import numpy as np
import torch

from inspector.errors import BackendError

log = logging.getLogger(__name__)

Model = Callable[[torch.Tensor], tuple[torch.Tensor, torch.Tensor]]


def buckets(chunk: int) -> tuple[int, ...]:
    """Chunk sizes a graph is captured for: powers of two below ``chunk``, and ``chunk``."""
    out, b = [], 1
    while b < chunk:
        out.append(b)
        b *= 2
    return (*out, chunk)


def bucket_for(n: int, sizes: tuple[int, ...]) -> int:
    """The smallest bucket holding ``n`` frames."""
    for s in sizes:
        if s >= n:
            return s
    raise BackendError(f"{n} frames exceed the largest bucket {sizes[-1]}")


def chunks(batch: int, chunk: int) -> list[tuple[int, int]]:
    """(start, stop) of consecutive chunks of at most ``chunk`` frames covering ``batch``."""
    return [(a, min(a + chunk, batch)) for a in range(0, batch, chunk)]


class CudaPipeline:
    """Runs ``model`` (uint8 ``(n, H, W, 3)`` on the GPU -> score ``(n,)``, map ``(n, h, w)``) on host frames."""

    def __init__(self, model: Model, device: torch.device, frame_shape: tuple[int, int], mask_shape: tuple[int, int],
                 max_batch: int, chunk: int = 8, graphs: bool = True) -> None:
        if device.type != "cuda":
            raise BackendError(f"CudaPipeline needs a CUDA device, got {device}")
        self.model = model
        self.device = device
        self.frame_shape = frame_shape
        self.mask_shape = mask_shape
        self.max_batch = max_batch
        self.chunk = max(1, min(chunk, max_batch))
        self.sizes = buckets(self.chunk)
        self.use_graphs = graphs
        h, w = frame_shape
        with torch.cuda.device(device):
            self.copy_stream = torch.cuda.Stream(device)
            self.compute_stream = torch.cuda.Stream(device)
            self.inputs = [torch.empty((self.chunk, h, w, 3), dtype=torch.uint8, device=device) for _ in range(2)]
            self.uploaded = [torch.cuda.Event() for _ in range(2)]
            self.consumed = [torch.cuda.Event() for _ in range(2)]
        self.staging = torch.empty((max_batch, h, w, 3), dtype=torch.uint8, pin_memory=True)
        self._graphs: dict[tuple[int, int], tuple[torch.cuda.CUDAGraph, torch.Tensor, torch.Tensor]] = {}

    # --- graphs -------------------------------------------------------------------------------

    def _graph(self, size: int, slot: int) -> tuple[torch.cuda.CUDAGraph, torch.Tensor, torch.Tensor]:
        key = (size, slot)
        if key not in self._graphs:
            self._graphs[key] = self._capture(self.inputs[slot][:size])
            log.info("captured CUDA graph for %d frames (buffer %d)", size, slot)
        return self._graphs[key]

    @torch.no_grad()
    def _capture(self, static_in: torch.Tensor) -> tuple[torch.cuda.CUDAGraph, torch.Tensor, torch.Tensor]:
        side = torch.cuda.Stream(self.device)
        side.wait_stream(torch.cuda.current_stream(self.device))
        with torch.cuda.stream(side):
            for _ in range(3):  # warm-up: cuDNN autotuning, lazy init and (if compiled) compilation
                self.model(static_in)
        torch.cuda.current_stream(self.device).wait_stream(side)
        torch.cuda.synchronize(self.device)
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph):
            score, amap = self.model(static_in)
        return graph, score, amap

    def warm_up(self, batch: int) -> None:
        """Capture the graphs a batch of ``batch`` frames will use (so the first call is not slow)."""
        for k, (a, b) in enumerate(chunks(batch, self.chunk)):
            if self.use_graphs:
                self._graph(bucket_for(b - a, self.sizes), k % 2)

    # --- one call -----------------------------------------------------------------------------

    @torch.no_grad()
    def run(self, frames: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """uint8 ``(B, H, W, 3)`` host frames -> (score ``(B,)``, anomaly_map ``(B, h, w)``) float32 host arrays."""
        batch = len(frames)
        src = torch.from_numpy(frames)
        if not src.is_pinned():
            self.staging[:batch].numpy()[...] = frames
            src = self.staging[:batch]
        score_host = torch.empty((batch,), dtype=torch.float32, pin_memory=True)
        map_host = torch.empty((batch, *self.mask_shape), dtype=torch.float32, pin_memory=True)
        for k, (a, b) in enumerate(chunks(batch, self.chunk)):
            slot, n = k % 2, b - a
            size = bucket_for(n, self.sizes)
            with torch.cuda.stream(self.copy_stream):
                # The buffer is free once the compute stream has finished the chunk that last read it.
                self.copy_stream.wait_event(self.consumed[slot])
                self.inputs[slot][:n].copy_(src[a:b], non_blocking=True)
                self.uploaded[slot].record(self.copy_stream)
            with torch.cuda.stream(self.compute_stream):
                self.compute_stream.wait_event(self.uploaded[slot])
                if self.use_graphs:
                    graph, score, amap = self._graph(size, slot)
                    graph.replay()
                else:
                    score, amap = self.model(self.inputs[slot][:size])
                self.consumed[slot].record(self.compute_stream)
                score_host[a:b].copy_(score[:n], non_blocking=True)
                map_host[a:b].copy_(amap[:n], non_blocking=True)
        self.compute_stream.synchronize()
        return score_host.numpy(), map_host.numpy()

    def close(self) -> None:
        self._graphs.clear()
        self.inputs = []

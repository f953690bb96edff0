"""PyTorch backend: the product's serving graph (``inspector.model.graph``) run by torch itself.

- CPU: the float32 model in eager mode (what "plain eager torch" means in the benchmark).
- CUDA: the mixed-precision twin (float16 backbone and transformer, float32 preprocessing, scoring and,
  when the export's overflow check said so, LayerNorms), replayed as CUDA graphs for fixed chunk sizes,
  with uploads overlapping compute (``cuda_pipeline``). Optional ``torch.compile`` and channels-last
  layout for the backbone's convolutions.

The checkpoint must be the one the manifest was exported from (same sha256), so the torch, ONNX Runtime and
TensorRT backends of one bundle always serve the same model. The CUDA path was not run on the machine
this was written on (no GPU); ``deploy/gpu_check.sh`` runs it, its parity test and its benchmark on one.
"""

from __future__ import annotations

import logging
from typing import Any

import numpy as np
import torch

from inspector.bundle import build_inspection_model, load_checkpoint
from inspector.device import resolve_device
from inspector.errors import BackendError, CheckpointError
from inspector.manifest import INT8, PRECISIONS, check_checkpoint
from inspector.model.half import to_half
from inspector.result import InferenceResult
from inspector.runtime.common import Bundle, BundledBackend, batch_limit, check_frames

log = logging.getLogger(__name__)


def choose_precision(precision: str, device: torch.device) -> str:
    """'auto' is fp16 on CUDA and fp32 on the CPU; fp16 on the CPU is refused (slow, few kernels)."""
    if precision == "auto":
        return "fp16" if device.type == "cuda" else "fp32"
    if precision == INT8:
        raise BackendError("torch: int8 is an onnxruntime CPU graph; use the onnxruntime backend, or fp32")
    if precision not in PRECISIONS:
        raise BackendError(f"torch: unknown precision {precision!r}; allowed: auto, {', '.join(PRECISIONS)}")
    if precision == "fp16" and device.type != "cuda":
        raise BackendError("torch: fp16 runs on CUDA only; use --precision fp32 on the CPU")
    return precision


class TorchBackend(BundledBackend):
    """The serving graph in torch, on the CPU (eager float32) or one CUDA GPU (fp16, CUDA graphs)."""

    name = "torch"

    def __init__(self, bundle: Bundle, device: str = "auto", precision: str = "auto", threads: int = 0,
                 max_batch: int | None = None, graphs: bool = True, compile: bool = False,
                 channels_last: bool = False, chunk: int = 8) -> None:
        self._bundle = bundle
        self._device = resolve_device(device, BackendError)
        self._precision = choose_precision(precision, self._device)
        self._max_batch = batch_limit(bundle.manifest.max_batch, max_batch)
        try:
            ckpt = load_checkpoint(check_checkpoint(bundle.path, bundle.manifest))
        except CheckpointError as e:
            raise BackendError(str(e)) from e
        if threads > 0:
            torch.set_num_threads(threads)
        self._threads = threads
        model = build_inspection_model(ckpt, bundle.manifest.graph_spec())
        self._options = {"graphs": graphs, "compile": compile, "channels_last": channels_last, "chunk": chunk}
        self._pipeline = None
        if self._device.type == "cpu":
            self._model = model
            return
        torch.backends.cudnn.benchmark = True  # fixed shapes: let cuDNN pick its fastest kernels once
        if self._precision == "fp16":
            model = to_half(model, bundle.manifest.layernorm_fp32)
        model = model.to(self._device).eval()
        if channels_last:
            model.adtr.to(memory_format=torch.channels_last)
        # Freezing lets inductor fold the frozen BatchNorms into their convolutions (fewer kernels per frame).
        self._model = torch.compile(model, dynamic=False, options={"freezing": True}) if compile else model
        from inspector.runtime.cuda_pipeline import CudaPipeline

        self._pipeline = CudaPipeline(self._model, self._device, bundle.frame_shape, bundle.mask_shape,
                                      self._max_batch, chunk=chunk, graphs=graphs)
        log.info("torch backend on %s (%s), %s, graphs=%s compile=%s channels_last=%s chunk=%d",
                 self._device, torch.cuda.get_device_name(self._device), self._precision, graphs, compile,
                 channels_last, chunk)

    def warm_up(self, batch: int) -> None:
        """Capture (and compile) what a batch of ``batch`` frames needs, so the first real call is not slow."""
        if self._pipeline is not None:
            self._pipeline.warm_up(batch)

    def infer(self, frames: np.ndarray) -> InferenceResult:
        frames = check_frames(frames, self.frame_shape, self._max_batch, self.name)
        try:
            if self._pipeline is not None:
                score, amap = self._pipeline.run(frames)
            else:
                with torch.inference_mode():
                    s, m = self._model(torch.from_numpy(frames))
                score, amap = s.numpy(), m.numpy()
        except torch.cuda.OutOfMemoryError as e:
            raise BackendError(f"torch: out of GPU memory on a batch of {len(frames)}: {e}") from e
        return InferenceResult(score, amap)

    def describe(self) -> dict[str, Any]:
        d: dict[str, Any] = {
            "backend": self.name,
            "device": str(self._device),
            "precision": self._precision,
            "max_batch": self._max_batch,
            "torch": str(torch.__version__),
        }
        if self._device.type == "cpu":
            d["threads"] = self._threads or torch.get_num_threads()
            d["mode"] = "eager"
        else:
            d["gpu"] = torch.cuda.get_device_name(self._device)
            d.update(self._options)
            d["layernorm_fp32"] = self._precision == "fp16" and self._bundle.manifest.layernorm_fp32
        return d

    def close(self) -> None:
        if self._pipeline is not None:
            self._pipeline.close()
            self._pipeline = None
        self._model = None

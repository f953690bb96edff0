"""ONNX Runtime backend: the exported graph on the CPU, or on the CUDA provider where it is installed.

CPU settings that matter on small machines: ``intra_op_num_threads`` = the threads asked for (0: ORT's
default, one per physical core), one inter-op thread and sequential execution (the graph is a chain; a
second pool would only compete for the same cores), and every graph optimisation (``ORT_ENABLE_ALL``:
constant folding, Conv+activation fusion, MatMul+scale fusion, NCHWc convolutions) but one:
``SkipLayerNormFusion``. Its fused CPU kernel (ORT 1.32) took 330 us per [1, 196, 256] LayerNorm where the
plain Add + LayerNormalization it replaces took 70 us: 5-6 ms of a 70 ms default-config frame.
"""

from __future__ import annotations

import logging
from typing import Any

import numpy as np

from inspector.errors import BackendError, CheckpointError
from inspector.manifest import onnx_file
from inspector.result import INPUT_NAME, OUTPUT_NAMES, InferenceResult
from inspector.runtime.common import Bundle, BundledBackend, batch_limit, check_frames

log = logging.getLogger(__name__)

DEVICE_CHOICES = ("auto", "cpu", "cuda")
# ORT graph rewrites that make this graph slower on the CPU (measured; see the module docstring).
CPU_DISABLED_OPTIMIZERS = ("SkipLayerNormFusion",)


def import_onnxruntime() -> Any:
    """The onnxruntime module, or BackendError naming the package to install."""
    try:
        import onnxruntime
    except ImportError as e:
        raise BackendError("the onnxruntime backend needs the onnxruntime package (pip install inspector[onnx], "
                           "or onnxruntime-gpu for the CUDA provider); the torch backend works without it") from e
    return onnxruntime


def choose_provider(device: str, available: list[str]) -> str:
    """The execution provider for ``device`` ('auto', 'cpu' or 'cuda') among ``available``.

    'auto' takes CUDA when its provider is installed, else the CPU. Asking for 'cuda' without the CUDA
    provider is an error, not a silent CPU run.
    """
    if device not in DEVICE_CHOICES and not device.startswith("cuda:"):
        raise BackendError(f"onnxruntime: unknown device {device!r}; allowed: auto, cpu, cuda, cuda:N")
    if device == "cpu":
        return "CPUExecutionProvider"
    if "CUDAExecutionProvider" in available:
        return "CUDAExecutionProvider"
    if device == "auto":
        return "CPUExecutionProvider"
    raise BackendError(f"onnxruntime: --device {device} asked for, but this onnxruntime has only {available}; "
                       "install onnxruntime-gpu, or use --device cpu, or the torch backend")


def choose_precision(precision: str, provider: str, manifest: dict[str, Any]) -> str:
    """'fp32' or 'fp16'. 'auto' is fp32 on the CPU (its fp16 kernels are few and slower) and fp16 on CUDA
    when an fp16 graph was exported."""
    if precision == "auto":
        return "fp16" if provider == "CUDAExecutionProvider" and "fp16" in manifest["onnx"] else "fp32"
    if precision not in ("fp32", "fp16"):
        raise BackendError(f"onnxruntime: unknown precision {precision!r}; allowed: auto, fp32, fp16")
    return precision


class OnnxRuntimeBackend(BundledBackend):
    """An ``onnxruntime.InferenceSession`` over the product's verified ONNX file."""

    name = "onnxruntime"

    def __init__(self, bundle: Bundle, device: str = "auto", precision: str = "auto", threads: int = 0,
                 max_batch: int | None = None) -> None:
        ort = import_onnxruntime()
        self._bundle = bundle
        self._max_batch = batch_limit(int(bundle.manifest["max_batch"]), max_batch)
        self._provider = choose_provider(device, ort.get_available_providers())
        self._precision = choose_precision(precision, self._provider, bundle.manifest)
        try:
            path = onnx_file(bundle.path, bundle.manifest, self._precision)
        except CheckpointError as e:
            raise BackendError(str(e)) from e
        so = ort.SessionOptions()
        so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        so.intra_op_num_threads = max(0, threads)
        so.inter_op_num_threads = 1
        so.log_severity_level = 3
        providers: list[Any] = [self._provider]
        if self._provider == "CUDAExecutionProvider":
            device_id = int(device.split(":")[1]) if device.startswith("cuda:") else 0
            providers = [("CUDAExecutionProvider", {"device_id": device_id}), "CPUExecutionProvider"]
        disabled = list(CPU_DISABLED_OPTIMIZERS) if self._provider == "CPUExecutionProvider" else []
        try:
            self._session = ort.InferenceSession(str(path), so, providers=providers, disabled_optimizers=disabled)
        except Exception as e:  # noqa: BLE001 - ORT raises its own exception types
            raise BackendError(f"onnxruntime cannot load {path}: {e}") from e
        self._threads = threads
        self._disabled = disabled
        self._path = path
        self._ort_version = ort.__version__
        log.info("onnxruntime %s: %s, %s, %s threads", ort.__version__, path.name, self._provider,
                 threads or "default")

    def infer(self, frames: np.ndarray) -> InferenceResult:
        frames = check_frames(frames, self.frame_shape, self._max_batch, self.name)
        try:
            score, amap = self._session.run(list(OUTPUT_NAMES), {INPUT_NAME: frames})
        except Exception as e:  # noqa: BLE001
            raise BackendError(f"onnxruntime inference failed on a batch of {len(frames)}: {e}") from e
        return InferenceResult(np.asarray(score, dtype=np.float32), np.asarray(amap, dtype=np.float32))

    def describe(self) -> dict[str, Any]:
        return {
            "backend": self.name,
            "device": "cuda" if self._provider == "CUDAExecutionProvider" else "cpu",
            "provider": self._provider,
            "precision": self._precision,
            "threads": self._threads or "default",
            "disabled_optimizers": self._disabled,
            "onnx": self._path.name,
            "max_batch": self._max_batch,
            "onnxruntime": self._ort_version,
        }

    def close(self) -> None:
        self._session = None

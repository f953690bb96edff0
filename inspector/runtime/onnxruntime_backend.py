"""ONNX Runtime backend: the exported graph on the CPU, or on the CUDA provider where it is installed.

CPU settings that matter on small machines: ``intra_op_num_threads`` = the threads asked for (0: ORT's
default, one per physical core), one inter-op thread and sequential execution (the graph is a chain; a
second pool would only compete for the same cores), and every graph optimisation (``ORT_ENABLE_ALL``:
constant folding, Conv+activation fusion, MatMul+scale fusion, NCHWc convolutions) but one:
``SkipLayerNormFusion``. Its fused CPU kernel (ORT 1.32) took 330 us per [1, 196, 256] LayerNorm where the
plain Add + LayerNormalization it replaces took 70 us: 5-6 ms of a 70 ms default-config frame.

Spinning (``spin``): by default ORT's idle worker threads spin, waiting for the next parallel region; alone
on a CPU that is fastest. Beside other busy threads on a small CPU (the daemon's capture, publish and audit
threads on 2 cores) the spinning threads take cores those need, and ``spin=False`` gives more throughput:
measured on 2 cores, cpu-quick at 1280x720, the daemon ran 34-41 frames/s with spinning and 42-45 without.
The daemon therefore runs with ``spin: false`` unless configured otherwise.

Graph: in float32 the backend runs ``model.ort.onnx`` when the export wrote one (``graph='auto'``), the
same function with ORT's fused MultiHeadAttention in place of the exported attention subgraphs
(``inspector.export.ortgraph``; 3-6% faster on the CPU), else the plain ``model.onnx`` (``graph='standard'``
forces it). float16 runs ``model.fp16.onnx`` and int8 ``model.int8.onnx`` (``inspector export --int8``).
"""

from __future__ import annotations

import logging
from typing import Any

import numpy as np

from inspector.device import parse_device
from inspector.errors import BackendError, CheckpointError
from inspector.manifest import FUSED, INT8, Manifest, onnx_file
from inspector.result import INPUT_NAME, OUTPUT_NAMES, InferenceResult
from inspector.runtime import PRECISION_CHOICES
from inspector.runtime.common import Bundle, BundledBackend, batch_limit, check_frames

log = logging.getLogger(__name__)

GRAPH_CHOICES = ("auto", "fused", "standard")
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
    if parse_device(device, BackendError)[0] == "cpu":
        return "CPUExecutionProvider"
    if "CUDAExecutionProvider" in available:
        return "CUDAExecutionProvider"
    if device == "auto":
        return "CPUExecutionProvider"
    raise BackendError(f"onnxruntime: --device {device} asked for, but this onnxruntime has only {available}; "
                       "install onnxruntime-gpu, or use --device cpu, or the torch backend")


def choose_precision(precision: str, provider: str, manifest: Manifest, int8_ok: bool = True) -> str:
    """'fp32', 'fp16' or 'int8'.

    'auto' on the CPU is int8 when ``inspector export --int8`` made that graph (the user opted in) and
    ``int8_ok``, else fp32 (the CPU's fp16 kernels are few and slower); on CUDA it is fp16 when an fp16
    graph was exported. int8 is a CPU graph: its integer MatMuls have no fast CUDA kernels.
    """
    cuda = provider == "CUDAExecutionProvider"
    if precision == "auto":
        if cuda:
            return "fp16" if "fp16" in manifest.onnx else "fp32"
        return INT8 if int8_ok and INT8 in manifest.onnx else "fp32"
    if precision not in PRECISION_CHOICES:
        raise BackendError(f"onnxruntime: unknown precision {precision!r}; allowed: {', '.join(PRECISION_CHOICES)}")
    if precision == INT8 and cuda:
        raise BackendError("onnxruntime: the int8 graph is for the CPU; use --device cpu, or fp16 on CUDA")
    return precision


def choose_graph(graph: str, precision: str, manifest: Manifest) -> str:
    """The manifest's ONNX key to run: 'fp32-ort' (fused attention) or the precision's plain graph.

    'auto' takes the fused graph in float32 when it was exported; 'fused' insists on it; 'standard' never.
    """
    if graph not in GRAPH_CHOICES:
        raise BackendError(f"onnxruntime: unknown graph {graph!r}; allowed: {', '.join(GRAPH_CHOICES)}")
    fused = FUSED in manifest.onnx
    if graph == "fused":
        if precision != "fp32":
            raise BackendError("onnxruntime: the fused-attention graph is float32; use --precision fp32")
        if not fused:
            why = (manifest.ort_graph.reason if manifest.ort_graph else None) or "it was not exported"
            raise BackendError(f"onnxruntime: no fused-attention graph (model.ort.onnx) for {manifest.product}: "
                               f"{why}; run `inspector export --product {manifest.product}` again")
        return FUSED
    if graph == "standard" and precision == INT8:
        raise BackendError("onnxruntime: the int8 graph is onnxruntime's own; the standard graph (model.onnx) "
                           "runs in fp32 (or fp16 from model.fp16.onnx)")
    return FUSED if graph == "auto" and precision == "fp32" and fused else precision


class OnnxRuntimeBackend(BundledBackend):
    """An ``onnxruntime.InferenceSession`` over the product's verified ONNX file."""

    name = "onnxruntime"

    def __init__(self, bundle: Bundle, device: str = "auto", precision: str = "auto", threads: int = 0,
                 max_batch: int | None = None, graph: str = "auto", spin: bool = True) -> None:
        ort = import_onnxruntime()
        self._bundle = bundle
        self._max_batch = batch_limit(bundle.manifest.max_batch, max_batch)
        self._provider = choose_provider(device, ort.get_available_providers())
        self._precision = choose_precision(precision, self._provider, bundle.manifest, int8_ok=graph == "auto")
        self._graph = choose_graph(graph, self._precision, bundle.manifest)
        try:
            path = onnx_file(bundle.path, bundle.manifest, self._graph)
        except CheckpointError as e:
            raise BackendError(str(e)) from e
        so = ort.SessionOptions()
        so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        so.intra_op_num_threads = max(0, threads)
        so.inter_op_num_threads = 1
        so.log_severity_level = 3
        if not spin:
            so.add_session_config_entry("session.intra_op.allow_spinning", "0")
            so.add_session_config_entry("session.inter_op.allow_spinning", "0")
        providers: list[Any] = [self._provider]
        if self._provider == "CUDAExecutionProvider":
            device_id = parse_device(device, BackendError)[1] or 0
            providers = [("CUDAExecutionProvider", {"device_id": device_id}), "CPUExecutionProvider"]
        disabled = list(CPU_DISABLED_OPTIMIZERS) if self._provider == "CPUExecutionProvider" else []
        try:
            self._session = ort.InferenceSession(str(path), so, providers=providers, disabled_optimizers=disabled)
        except Exception as e:  # noqa: BLE001 - ORT raises its own exception types
            raise BackendError(f"onnxruntime cannot load {path}: {e}") from e
        onnx = bundle.manifest.onnx
        # The int8 graph is quantised from the fused graph when there was one: it has fused attention too.
        self._fused = self._graph == FUSED or (FUSED in onnx and onnx[self._graph].source == onnx[FUSED].path)
        self._threads = threads
        self._spin = spin
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
            "spinning": self._spin,
            "disabled_optimizers": self._disabled,
            "onnx": self._path.name,
            "graph": "fused attention" if self._fused else "standard",
            "max_batch": self._max_batch,
            "onnxruntime": self._ort_version,
        }

    def close(self) -> None:
        self._session = None

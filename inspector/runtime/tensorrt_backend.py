"""TensorRT backend: a plan built by ``inspector build`` for this GPU, run with the named-tensor API.

Memory and streams come from torch (no pycuda): device buffers for the largest batch, pinned host memory
for staging and results, one non-default stream. Per call: async copy in, ``set_input_shape``,
``execute_async_v3``, async copy out, one synchronise. Tensor addresses are set once
(``set_tensor_address``) since the buffers never move.

Loading refuses a plan that does not belong here: another TensorRT version, another GPU, a plan file or
ONNX file changed since the build, or a plan built from an ONNX file that is no longer the exported one;
the message says to run ``inspector build`` again. The checks are pure functions (``select_engine``,
``check_io``) tested without TensorRT. TensorRT never ran on the machine this was written on.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np

from inspector.errors import BackendError
from inspector.files import sha256_file
from inspector.manifest import EngineEntry, Manifest
from inspector.result import INPUT_NAME, OUTPUT_NAMES, InferenceResult
from inspector.runtime.common import Bundle, BundledBackend, batch_limit, check_frames

log = logging.getLogger(__name__)


def select_engine(manifest: Manifest, gpu: str, compute_capability: str, tensorrt_version: str) -> EngineEntry:
    """The manifest's plan entry for this GPU and TensorRT version, checked against the current export.

    BackendError (saying to run ``inspector build`` again) when there is none, or when it was built from an
    ONNX file that is not the one now in the manifest.
    """
    product = manifest.product
    redo = f"run `inspector build --product {product}` on this machine"
    entry = manifest.find_engine(gpu, compute_capability, tensorrt_version)
    if entry is None:
        built = [f"{e.gpu} sm{e.compute_capability.replace('.', '')} TensorRT {e.tensorrt}" for e in manifest.engines]
        raise BackendError(
            f"no TensorRT plan of {product} for {gpu} (sm{compute_capability.replace('.', '')}) with TensorRT "
            f"{tensorrt_version}; built: {', '.join(built) or 'none'}; {redo}"
        )
    onnx = manifest.onnx.get(entry.onnx_precision)
    if onnx is None or onnx.sha256 != entry.onnx_sha256:
        raise BackendError(f"the TensorRT plan {entry.plan} was built from another export of {product} "
                           f"(ONNX hash differs); {redo} again")
    return entry


def check_plan_file(bundle_path: Path, entry: EngineEntry, product: str) -> bytes:
    """The plan's bytes, after checking the file exists and has the recorded sha256."""
    path = bundle_path / entry.plan
    if not path.is_file():
        raise BackendError(f"TensorRT plan {path} is missing; run `inspector build --product {product}` again")
    if sha256_file(path) != entry.sha256:
        raise BackendError(f"TensorRT plan {path} changed after it was built; "
                           f"run `inspector build --product {product}` again")
    return path.read_bytes()


def check_io(io: dict[str, tuple[bool, Any]], trt: Any) -> None:
    """``io``: tensor name -> (is_input, dtype). The engine's tensors must be the result type's names."""
    inputs = sorted(n for n, (is_in, _) in io.items() if is_in)
    outputs = sorted(n for n, (is_in, _) in io.items() if not is_in)
    if inputs != [INPUT_NAME] or outputs != sorted(OUTPUT_NAMES):
        raise BackendError(f"the TensorRT engine has inputs {inputs} and outputs {outputs}; expected "
                           f"[{INPUT_NAME!r}] and {sorted(OUTPUT_NAMES)}; run `inspector export` and `inspector build` "
                           "again")
    if io[INPUT_NAME][1] != trt.uint8:
        raise BackendError(f"the engine's {INPUT_NAME!r} input is {io[INPUT_NAME][1]}, expected uint8 frames")


def engine_io(engine: Any, trt: Any) -> dict[str, tuple[bool, Any]]:
    """Name -> (is_input, TensorRT dtype) of every I/O tensor, by name (never by binding index)."""
    io = {}
    for i in range(engine.num_io_tensors):
        name = engine.get_tensor_name(i)
        io[name] = (engine.get_tensor_mode(name) == trt.TensorIOMode.INPUT, engine.get_tensor_dtype(name))
    return io



def import_tensorrt() -> Any:
    """The tensorrt module, or BackendError naming what is missing and what would work instead."""
    try:
        import tensorrt
    except ImportError as e:
        raise BackendError(
            "TensorRT is not installed (pip install tensorrt on x86, or JetPack's python3-libnvinfer on Jetson); "
            "the torch backend (CUDA or CPU) and the onnxruntime backend work without it"
        ) from e
    return tensorrt


def gpu_identity(device_index: int = 0) -> tuple[str, str]:
    """(GPU name, compute capability 'M.m') of a CUDA device, from torch; BackendError without a GPU."""
    import torch

    if not torch.cuda.is_available():
        raise BackendError("TensorRT needs an NVIDIA GPU and torch sees none; the onnxruntime backend (CPU) and "
                           "the torch backend (CPU) work here")
    major, minor = torch.cuda.get_device_capability(device_index)
    return torch.cuda.get_device_name(device_index), f"{major}.{minor}"


class TensorRTBackend(BundledBackend):
    """One execution context of the product's plan on one GPU; owns its device and pinned host buffers."""

    name = "tensorrt"

    def __init__(self, bundle: Bundle, max_batch: int | None = None, device_index: int = 0) -> None:
        trt = import_tensorrt()
        import torch

        gpu, cc = gpu_identity(device_index)
        manifest = bundle.manifest
        entry = select_engine(manifest, gpu, cc, trt.__version__)
        plan = check_plan_file(bundle.path, entry, bundle.product)
        self._trt, self._torch = trt, torch
        self._bundle, self._entry = bundle, entry
        self._max_batch = batch_limit(entry.max_batch, max_batch)
        self._device = torch.device("cuda", device_index)
        with torch.cuda.device(self._device):
            self._logger = trt.Logger(trt.Logger.WARNING)
            self._runtime = trt.Runtime(self._logger)
            self._engine = self._runtime.deserialize_cuda_engine(plan)
            if self._engine is None:
                raise BackendError(f"TensorRT {trt.__version__} could not load {entry.plan}; "
                                   f"run `inspector build --product {bundle.product}` again")
            io = engine_io(self._engine, trt)
            check_io(io, trt)
            self._context = self._engine.create_execution_context()
            self._stream = torch.cuda.Stream(self._device)
            h, w = bundle.frame_shape
            self._context.set_input_shape(INPUT_NAME, (self._max_batch, h, w, 3))
            self._device_buf: dict[str, Any] = {}
            for name, (_, dtype) in io.items():
                shape = tuple(self._context.get_tensor_shape(name))
                self._device_buf[name] = torch.empty(shape, dtype=_torch_dtype(trt, torch, dtype), device=self._device)
                self._context.set_tensor_address(name, self._device_buf[name].data_ptr())
        expected = (self._max_batch, *bundle.mask_shape)
        if tuple(self._device_buf["anomaly_map"].shape) != expected:
            raise BackendError(f"the engine's anomaly_map is {tuple(self._device_buf['anomaly_map'].shape)}, the "
                               f"manifest says {expected}; run `inspector build` again")
        self._staging = torch.empty((self._max_batch, h, w, 3), dtype=torch.uint8, pin_memory=True)
        log.info("tensorrt %s: %s on %s (sm%s), max batch %d", trt.__version__, entry.plan, gpu, cc,
                 self._max_batch)

    def infer(self, frames: np.ndarray) -> InferenceResult:
        torch = self._torch
        frames = check_frames(frames, self.frame_shape, self._max_batch, self.name)
        b = len(frames)
        src = torch.from_numpy(frames)
        if not src.is_pinned():
            self._staging[:b].numpy()[...] = frames
            src = self._staging[:b]
        dev = self._device_buf
        score = torch.empty((b,), dtype=dev["score"].dtype, pin_memory=True)
        amap = torch.empty((b, *dev["anomaly_map"].shape[1:]), dtype=dev["anomaly_map"].dtype, pin_memory=True)
        with torch.cuda.device(self._device), torch.cuda.stream(self._stream):
            dev[INPUT_NAME][:b].copy_(src, non_blocking=True)
            if not self._context.set_input_shape(INPUT_NAME, (b, *frames.shape[1:])):
                raise BackendError(f"tensorrt: the engine refused a batch of {b}")
            if not self._context.execute_async_v3(self._stream.cuda_stream):
                raise BackendError(f"tensorrt: execute_async_v3 failed on a batch of {b}")
            score.copy_(dev["score"][:b], non_blocking=True)
            amap.copy_(dev["anomaly_map"][:b], non_blocking=True)
        self._stream.synchronize()
        return InferenceResult(score.float().numpy(), amap.float().numpy())

    def describe(self) -> dict[str, Any]:
        e = self._entry
        return {"backend": self.name, "device": str(self._device), "gpu": e.gpu, "precision": e.precision,
                "plan": e.plan, "tensorrt": e.tensorrt, "strongly_typed": e.strongly_typed,
                "max_batch": self._max_batch}

    def close(self) -> None:
        self._context = None
        self._engine = None
        self._device_buf = {}


def _torch_dtype(trt: Any, torch: Any, dtype: Any) -> Any:
    table = {trt.float32: torch.float32, trt.float16: torch.float16, trt.uint8: torch.uint8,
             trt.int32: torch.int32, trt.int8: torch.int8, trt.bool: torch.bool}
    if dtype not in table:
        raise BackendError(f"tensorrt: unsupported I/O dtype {dtype}")
    return table[dtype]

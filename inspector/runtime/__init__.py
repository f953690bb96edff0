"""Inference backends behind one small interface (``base.Backend``), and the choice among them.

``open_backend(name, home, product)`` opens one of:

- ``tensorrt``: the plan ``inspector build`` made for this GPU and TensorRT version;
- ``torch``: the serving graph in torch, CUDA fp16 with CUDA graphs, or CPU eager fp32;
- ``onnxruntime``: the exported ONNX on the CPU, or the CUDA provider where installed;
- ``auto``: tensorrt, else torch on CUDA, else onnxruntime on the CPU (else torch on the CPU when
  onnxruntime is not installed), logging what it chose and why it passed over the others.

Backends are imported lazily: a machine without TensorRT or onnxruntime can still use the others.
"""

from __future__ import annotations

import importlib.util
import logging
from pathlib import Path
from typing import TYPE_CHECKING

from inspector.errors import BackendError
from inspector.manifest import INT8, PRECISIONS
from inspector.runtime.base import Backend

if TYPE_CHECKING:  # runtime.common imports torch; importing this package must stay cheap
    from inspector.runtime.common import Bundle

log = logging.getLogger(__name__)

BACKEND_NAMES = ("auto", "tensorrt", "torch", "onnxruntime")
# What a backend may be asked to run: auto (each backend's best), a plain precision, or int8 (onnxruntime CPU).
PRECISION_CHOICES = ("auto", *PRECISIONS, INT8)

__all__ = ["BACKEND_NAMES", "PRECISION_CHOICES", "Backend", "available_backends", "open_backend"]


def _cuda_available() -> bool:
    import torch

    return torch.cuda.is_available()


def available_backends() -> dict[str, str | None]:
    """Backend name -> None when it can run on this machine, else the reason it cannot."""
    cuda = _cuda_available()
    out: dict[str, str | None] = {"auto": None, "torch": None}
    if importlib.util.find_spec("tensorrt") is None:
        out["tensorrt"] = "the tensorrt package is not installed"
    elif not cuda:
        out["tensorrt"] = "torch sees no CUDA GPU"
    else:
        out["tensorrt"] = None
    out["onnxruntime"] = None if importlib.util.find_spec("onnxruntime") else "the onnxruntime package is not installed"
    return out


def open_backend(name: str, home: str | Path | None, product: str, *, device: str = "auto", threads: int = 0,
                 max_batch: int | None = None, precision: str = "auto", spin: bool = True) -> Backend:
    """Open backend ``name`` for ``product``'s exported bundle under ``home``.

    ``device``: auto, cpu, cuda, cuda:N. ``threads``: CPU threads (0: the library's default).
    ``precision``: auto, fp32, fp16, int8 (onnxruntime on the CPU only; TensorRT runs whatever its plan
    was built for). ``spin``: onnxruntime's idle worker threads spin (see ``onnxruntime_backend``).
    Raises BackendError naming what is missing and which backends would work.
    """
    if name not in BACKEND_NAMES:
        raise BackendError(f"unknown backend {name!r}; allowed: {', '.join(BACKEND_NAMES)}")
    from inspector.runtime.common import open_bundle

    bundle = open_bundle(home, product)
    if name == "auto":
        return _auto(bundle, device, threads, max_batch, precision, spin)
    return _open(name, bundle, device, threads, max_batch, precision, spin)


def _open(name: str, bundle: Bundle, device: str, threads: int, max_batch: int | None, precision: str,
          spin: bool = True) -> Backend:
    if name == "torch":
        from inspector.runtime.torch_backend import TorchBackend

        return TorchBackend(bundle, device=device, precision=precision, threads=threads, max_batch=max_batch)
    if name == "onnxruntime":
        from inspector.runtime.onnxruntime_backend import OnnxRuntimeBackend

        return OnnxRuntimeBackend(bundle, device=device, precision=precision, threads=threads, max_batch=max_batch,
                                  spin=spin)
    if device == "cpu":
        raise BackendError("tensorrt runs on a GPU only; use the onnxruntime or torch backend with --device cpu")
    if precision == INT8:
        raise BackendError("tensorrt: int8 is an onnxruntime CPU graph here; TensorRT runs fp16 or fp32 plans")
    if precision != "auto" and precision not in PRECISIONS:
        raise BackendError(f"unknown precision {precision!r}; allowed: auto, {', '.join(PRECISIONS)}")
    from inspector.device import parse_device
    from inspector.runtime.tensorrt_backend import TensorRTBackend

    index = parse_device(device, BackendError)[1] or 0
    backend = TensorRTBackend(bundle, max_batch=max_batch, device_index=index)
    built = backend.describe()["precision"]
    if precision != "auto" and precision != built:
        raise BackendError(f"the TensorRT plan was built for {built}, not {precision}; "
                           f"run `inspector build --product {bundle.product} --precision {precision}`")
    return backend


def _auto(bundle: Bundle, device: str, threads: int, max_batch: int | None, precision: str,
          spin: bool = True) -> Backend:
    """tensorrt -> torch-cuda -> onnxruntime-cpu -> torch-cpu; log the choice and every reason to pass one over."""
    passed: list[str] = []
    gpu_ok = device != "cpu" and _cuda_available()
    if not gpu_ok:
        passed.append("tensorrt and torch-cuda: " + ("--device cpu" if device == "cpu" else "torch sees no CUDA GPU"))
    else:
        gpu_device = device if device.startswith("cuda") else "cuda"
        for candidate in ("tensorrt", "torch"):
            try:
                backend = _open(candidate, bundle, gpu_device, threads, max_batch, precision)
            except BackendError as e:
                # A GPU without a usable plan is worth a warning: the fallback is slower than it needs to be.
                label = "tensorrt" if candidate == "tensorrt" else "torch-cuda"
                log.warning("backend auto: passing over %s: %s", label, e)
                passed.append(f"{label}: {e}")
                continue
            return _chosen(backend, passed)
    try:  # onnxruntime's own 'auto' takes the int8 graph when one was exported, else fp32
        backend = _open("onnxruntime", bundle, "cpu", threads, max_batch, precision, spin)
    except BackendError as e:
        log.warning("backend auto: passing over onnxruntime-cpu: %s", e)
        passed.append(f"onnxruntime: {e}")
        backend = _open("torch", bundle, "cpu", threads, max_batch, "fp32" if precision == "auto" else precision)
    return _chosen(backend, passed)


def _chosen(backend: Backend, passed: list[str]) -> Backend:
    d = backend.describe()
    why = "; ".join(passed) if passed else "first choice"
    log.info("backend auto: chose %s on %s (%s); passed over: %s", d["backend"], d.get("device", "?"),
             d.get("precision", "?"), why)
    return backend

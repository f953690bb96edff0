"""Small torch helpers shared by the verbs: device choice, threads, seeding, versions."""

from __future__ import annotations

import logging
import platform
import random

import numpy as np
import torch

from inspector.errors import InspectorError

log = logging.getLogger(__name__)


DEVICES = "auto, cpu, cuda, cuda:N"


def parse_device(device: str, error: type[InspectorError] = InspectorError) -> tuple[str, int | None]:
    """``auto``, ``cpu``, ``cuda`` or ``cuda:N`` -> (kind, N or None); ``error`` for anything else.

    ``error`` is InspectorError by default; the serving backends pass BackendError, the error their
    callers (``open_backend``'s fallback among backends) handle.
    """
    if device in ("auto", "cpu", "cuda"):
        return device, None
    kind, _, index = device.partition(":")
    if kind == "cuda" and index.isdigit():
        return kind, int(index)
    raise error(f"unknown device {device!r}; allowed: {DEVICES}")


def resolve_device(device: str, error: type[InspectorError] = InspectorError) -> torch.device:
    """The torch device of ``device`` (``parse_device``), ``auto`` being CUDA when torch sees a GPU.

    Asking for CUDA without a GPU is ``error``, never a silent CPU run.
    """
    kind, _ = parse_device(device, error)
    if kind == "auto":
        chosen = "cuda" if torch.cuda.is_available() else "cpu"
        log.info("device auto -> %s", chosen)
        return torch.device(chosen)
    if kind == "cuda" and not torch.cuda.is_available():
        raise error(f"--device {device} was asked for but torch sees no CUDA GPU; use --device cpu")
    return torch.device(device)


def set_threads(threads: int) -> None:
    """Set torch's CPU threads (0 leaves torch's default)."""
    if threads > 0:
        torch.set_num_threads(threads)


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def versions() -> dict[str, str]:
    """Versions of what produced an artifact."""
    import cv2
    import timm

    import inspector

    v = {
        "inspector": inspector.__version__,
        "python": platform.python_version(),
        "torch": str(torch.__version__),
        "timm": timm.__version__,
        "opencv": cv2.__version__,
        "numpy": np.__version__,
    }
    if torch.cuda.is_available():
        v["cuda"] = str(torch.version.cuda)
        v["gpu"] = str(torch.cuda.get_device_name(0))
    return v

"""Small torch helpers shared by the verbs: device choice, threads, seeding, versions."""

from __future__ import annotations

import logging
import platform
import random

import numpy as np
import torch

from inspector.errors import InspectorError

log = logging.getLogger(__name__)


def resolve_device(device: str) -> torch.device:
    """``cpu``, ``cuda``, ``cuda:N`` or ``auto`` (CUDA when present). Asking for CUDA without it is an error."""
    if device == "auto":
        chosen = "cuda" if torch.cuda.is_available() else "cpu"
        log.info("device auto -> %s", chosen)
        return torch.device(chosen)
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise InspectorError(f"--device {device} was asked for but torch sees no CUDA GPU; use --device cpu")
    if device != "cpu" and not device.startswith("cuda"):
        raise InspectorError(f"unknown device {device!r}; allowed: cpu, cuda, cuda:N, auto")
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

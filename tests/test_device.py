"""Device names: one parser for every verb and backend; a missing GPU is an error, never a silent CPU run."""

from __future__ import annotations

import pytest
import torch

from inspector.device import parse_device, resolve_device
from inspector.errors import BackendError, InspectorError


def test_device_names():
    assert parse_device("auto") == ("auto", None) and parse_device("cpu") == ("cpu", None)
    assert parse_device("cuda") == ("cuda", None) and parse_device("cuda:1") == ("cuda", 1)
    for bad in ("npu", "cuda:", "cuda:x", "gpu:0", ""):
        with pytest.raises(InspectorError, match="unknown device .*allowed: auto, cpu, cuda, cuda:N"):
            parse_device(bad)
    with pytest.raises(BackendError):
        parse_device("tpu", BackendError)


def test_resolve_device():
    assert resolve_device("cpu") == torch.device("cpu")
    assert resolve_device("auto").type == ("cuda" if torch.cuda.is_available() else "cpu")
    if not torch.cuda.is_available():
        with pytest.raises(BackendError, match="torch sees no CUDA GPU; use --device cpu"):
            resolve_device("cuda:0", BackendError)

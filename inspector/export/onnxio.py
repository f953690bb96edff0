"""Writing and checking ONNX files: the exporter call with a dynamic batch axis, and ONNX Runtime vs torch.

Used by ``inspector.export.run`` for the plain and fp16 graphs and by ``inspector.export.ortgraph`` for the
onnxruntime-only ones.
"""

from __future__ import annotations

import contextlib
import logging
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch

from inspector.errors import ExportError
from inspector.files import staged_file
from inspector.manifest import OnnxCheck
from inspector.result import INPUT_NAME, OUTPUT_NAMES


def export_onnx(module: torch.nn.Module, path: Path, sample: torch.Tensor, max_batch: int, opset: int,
                translations: dict[Any, Any] | None = None) -> None:
    """Export ``module`` (frames -> score, anomaly_map) to ``path`` with a dynamic batch axis 1..max_batch.

    ``sample`` must have a batch of at least 2 (torch.export specialises a batch of 1). Written to a
    temporary file first, so a failed export never leaves a half-written model behind. ``translations``:
    the exporter's ``custom_translation_table`` (custom operators -> ONNX).
    """
    if len(sample) < 2:
        raise ExportError("export needs a sample batch of at least 2 frames")
    batch = torch.export.Dim("batch", min=1, max=max_batch)
    try:
        with staged_file(path) as tmp, torch.no_grad(), warnings.catch_warnings(), \
                quiet_loggers("onnxscript", "onnx_ir"):
            warnings.simplefilter("ignore")  # exporter deprecation chatter; failures still raise
            torch.onnx.export(
                module.eval(), (sample,), str(tmp), dynamo=True, input_names=[INPUT_NAME],
                output_names=list(OUTPUT_NAMES), dynamic_shapes={"frames": {0: batch}},
                opset_version=opset, optimize=True, external_data=False, verbose=False,
                **({"custom_translation_table": translations} if translations else {}),
            )
    except Exception as e:  # noqa: BLE001 - any exporter failure is an ExportError naming the model
        raise ExportError(f"ONNX export to {path} failed: {type(e).__name__}: {e}") from e


@contextlib.contextmanager
def quiet_loggers(*names: str, level: int = logging.WARNING) -> Iterator[None]:
    """Raise the named loggers ("" is the root) to ``level`` for the block: onnxscript and onnx_ir log every
    rewrite at INFO, onnxruntime's quantizer warns through the root logger; keep the user's log readable."""
    loggers = [logging.getLogger(name or None) for name in names]
    levels = [lg.level for lg in loggers]
    for lg in loggers:
        lg.setLevel(level)
    try:
        yield
    finally:
        for lg, old in zip(loggers, levels, strict=True):
            lg.setLevel(old)


@torch.no_grad()
def verify_onnx(path: Path, reference: torch.nn.Module, frames: torch.Tensor, tolerance: float) -> OnnxCheck:
    """Run ``path`` in ONNX Runtime (CPU) at batch 1 and ``len(frames)``; compare with ``reference``.

    Returns the worst relative map and score differences. ExportError when the ONNX graph
    disagrees by more than ``tolerance`` x the map's range, or its output shapes are wrong.
    """
    try:
        import onnxruntime as ort
    except ImportError as e:
        raise ExportError("verifying the export needs onnxruntime (pip install inspector[onnx]); "
                          "or pass --no-verify") from e
    so = ort.SessionOptions()
    so.log_severity_level = 3
    sess = ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])
    ref_score, ref_map = (t.float().numpy() for t in reference(frames))
    worst_map, worst_score = 0.0, 0.0
    span = float(ref_map.max() - ref_map.min()) or 1.0
    for batch in (frames[:1], frames):
        score, amap = sess.run(list(OUTPUT_NAMES), {INPUT_NAME: batch.numpy()})
        n = len(batch)
        if score.shape != (n,) or amap.shape != (n, *ref_map.shape[1:]):
            raise ExportError(f"{path}: outputs {score.shape}, {amap.shape} for a batch of {n}; "
                              f"expected ({n},), {(n, *ref_map.shape[1:])}")
        worst_map = max(worst_map, float(np.abs(amap.astype(np.float32) - ref_map[:n]).max()) / span)
        worst_score = max(worst_score, float(np.abs(score - ref_score[:n]).max()) / span)
    if not np.isfinite(worst_map) or worst_map > tolerance:
        raise ExportError(f"{path}: ONNX Runtime and torch disagree: max map difference {worst_map:.2e} x the map "
                          f"range (allowed {tolerance:.0e})")
    return OnnxCheck(max_map_diff_rel=worst_map, max_score_diff_rel=worst_score, frames=len(frames),
                     onnxruntime=ort.__version__)

"""`inspector export`: a product's checkpoint -> one ONNX graph from raw frame to result, plus its manifest.

The graph (``inspector.model.graph``) takes ``frames``, ``uint8 [B, H, W, 3]`` BGR as OpenCV delivers it, and
does everything inside: ROI crop, resize, BGR->RGB, normalisation, backbone, ADTR, the anomaly map at the
mask size and the image score. Outputs ``score [B]`` float32 and ``anomaly_map [B, h, w]`` float32.
Thresholds are not in it: re-calibrating never means re-exporting.

Exporter: ``torch.onnx.export(..., dynamo=True)`` (torch.export + onnxscript). It works on torch 2.11 and
2.14, gives a graph a third the size of the TorchScript exporter's (328 vs 1121 nodes for cpu-quick) with
a symbolic batch axis on every output; the TorchScript exporter mislabels the map's axes (``[batch,
batch, ...]``). Batch is dynamic (1..max_batch), the frame size fixed.

The fp16 graph (``--fp16``) is exported from the mixed-precision twin (``model.half.to_half``): preprocessing
and scoring stay float32, LayerNorms stay float32 when their inputs could overflow float16 (the decision
and its measurement go into the manifest). Precision lives in the ONNX types, so a strongly typed
TensorRT network (TensorRT 11 has no FP16 flag) builds it as it is.

For onnxruntime a third file, ``model.ort.onnx``, holds the same float32 graph with each attention as
ORT's fused ``com.microsoft.MultiHeadAttention`` (``inspector.export.ortgraph``): 3-6% faster on the CPU, and
not for TensorRT, which reads ``model.onnx``. With ``--int8``, ``model.int8.onnx`` is that graph with
its MatMul weights quantised to int8 (dynamic quantisation; onnxruntime on the CPU only).

Every file is checked after export: ONNX Runtime on sample frames at batch 1 and 3 against torch.
"""

from __future__ import annotations

import datetime as dt
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from inspector.bundle import Checkpoint, build_inspection_model, bundle_dir, load_checkpoint, model_path
from inspector.device import versions
from inspector.errors import DataError, ExportError
from inspector.export.onnxio import export_onnx, verify_onnx
from inspector.export.ortgraph import INT8_ONNX, ORT_ONNX, write_fused_graph, write_int8_graph
from inspector.manifest import SCHEMA, load_manifest, manifest_path, save_manifest
from inspector.model.graph import GraphSpec, default_mask_size
from inspector.model.half import LAYERNORM_SUMSQ_LIMIT, layernorm_load, to_half
from inspector.model.weights import sha256_file
from inspector.result import INPUT_NAME

log = logging.getLogger(__name__)

DEFAULT_OPSET = 18  # >= 17 for LayerNormalization, which TensorRT maps to its normalisation layer
DEFAULT_MAX_BATCH = 32
FP32_ONNX, FP16_ONNX = "model.onnx", "model.fp16.onnx"
# ONNX Runtime vs torch, float32: max |map difference| relative to the map's range.
FP32_TOLERANCE = 1e-3
# fp16 graph vs float32 torch: beyond this the fp16 graph is broken, not merely rounded.
FP16_TOLERANCE = 5e-2


@dataclass(frozen=True)
class ExportOptions:
    """What to export. Sizes are (height, width) in pixels; ROI is (x, y, w, h) in frame pixels."""

    frame: tuple[int, int] | None = None  # None: the size of the product's training images
    roi: tuple[int, int, int, int] | None = None
    mask_size: tuple[int, int] | None = None  # None: the model's input size (tiled: the crop at model scale)
    max_batch: int = DEFAULT_MAX_BATCH
    fp16: bool = False
    layernorm: str = "auto"  # precision of LayerNorm in the fp16 graph: auto | fp32 | fp16
    opset: int = DEFAULT_OPSET
    ort_graph: bool = True  # also write model.ort.onnx (fused attention, onnxruntime only; see ortgraph)
    int8: bool = False  # also write model.int8.onnx (int8 MatMul weights, onnxruntime on the CPU only)
    verify: bool = True
    sample_frames: int = field(default=8, metadata={"doc": "frames used for the fp16 overflow check"})


def export(product: str, home: str | Path | None = None, options: ExportOptions | None = None) -> dict[str, Any]:
    """Export ``product``'s model to ONNX under ``<home>/engines/<product>/`` and write its manifest.

    Returns the manifest. Raises ExportError (or CheckpointError for a missing model).
    """
    opts = options or ExportOptions()
    if opts.opset < 17:
        raise ExportError(f"--opset {opts.opset}: at least 17 is needed (LayerNormalization)")
    if not 1 <= opts.max_batch <= 1024:
        raise ExportError(f"--max-batch {opts.max_batch}: allowed 1..1024")
    if opts.layernorm not in ("auto", "fp32", "fp16"):
        raise ExportError(f"layernorm precision {opts.layernorm!r}; allowed: auto, fp32, fp16")
    bundle = bundle_dir(home, product)
    ckpt = load_checkpoint(model_path(home, product))
    frame = opts.frame or training_frame_size(ckpt)
    crop = (opts.roi[3], opts.roi[2]) if opts.roi else frame
    spec = GraphSpec(frame=frame, roi=opts.roi, mask_size=opts.mask_size or default_mask_size(ckpt.preset.model, crop))
    model = build_inspection_model(ckpt, spec)
    frames, frames_source = sample_frames(ckpt, frame, opts.sample_frames)

    # The old manifest goes before any file changes: an export that fails half-way then leaves a bundle
    # that says "not exported" instead of a manifest naming files that were replaced or removed.
    old_engines = _old_engines(bundle)
    manifest_path(bundle).unlink(missing_ok=True)
    onnx_entries: dict[str, dict[str, str]] = {}
    checks: dict[str, Any] = {}
    path = bundle / FP32_ONNX
    export_onnx(model, path, frames[:2], opts.max_batch, opts.opset)
    onnx_entries["fp32"] = {"path": FP32_ONNX, "sha256": sha256_file(path)}
    if opts.verify:
        checks["fp32"] = verify_onnx(path, model, frames[:3], FP32_TOLERANCE)

    for stale in (ORT_ONNX, INT8_ONNX):  # written again below when asked for, never left from an old export
        (bundle / stale).unlink(missing_ok=True)
    if opts.ort_graph:
        entry, ort_status, check = write_fused_graph(model, bundle, frames, opts.max_batch, opts.opset, opts.verify)
        if entry is not None:
            onnx_entries["fp32-ort"] = entry
            if check is not None:
                checks["fp32-ort"] = check
    else:
        ort_status = {"written": False, "reason": "not asked for (--no-ort-graph)"}
    if opts.int8:
        source = bundle / onnx_entries.get("fp32-ort", onnx_entries["fp32"])["path"]
        onnx_entries["int8"], check = write_int8_graph(source, model, frames, opts.verify)
        if check is not None:
            checks["int8"] = check

    decisions: dict[str, Any] = {}
    if opts.fp16:
        decisions = fp16_decisions(model, frames, frames_source, opts.layernorm)
        half = to_half(model, decisions["layernorm"] == "fp32")
        path16 = bundle / FP16_ONNX
        export_onnx(half, path16, frames[:2], opts.max_batch, opts.opset)
        onnx_entries["fp16"] = {"path": FP16_ONNX, "sha256": sha256_file(path16)}
        if opts.verify:
            checks["fp16"] = verify_onnx(path16, model, frames[:3], FP16_TOLERANCE)
    elif (bundle / FP16_ONNX).exists():
        # A stale fp16 file from an earlier export must not be mistaken for this model's.
        (bundle / FP16_ONNX).unlink()

    manifest = _manifest(ckpt, spec, opts, onnx_entries, decisions, checks, frames_source)
    manifest["ort_graph"] = ort_status
    shas = {e["sha256"] for e in onnx_entries.values()}
    manifest["engines"] = [e for e in old_engines if e.get("onnx_sha256") in shas]
    save_manifest(bundle, manifest)
    log.info("exported %s -> %s", product, ", ".join(e["path"] for e in onnx_entries.values()))
    return manifest


def training_frame_size(ckpt: Checkpoint) -> tuple[int, int]:
    """(H, W) of the product's training images, read from the checkpoint's data root; else ExportError."""
    root = Path(ckpt.payload["data"]["root"])
    try:
        first = _training_images(ckpt, 1)[0]
    except (DataError, IndexError) as e:
        raise ExportError(
            f"cannot find the training images of {ckpt.product} at {root} to learn the frame size ({e}); "
            "give it with --frame WxH"
        ) from e
    from inspector.data.dataset import read_image

    h, w = read_image(first).shape[:2]
    return int(h), int(w)


def _training_images(ckpt: Checkpoint, n: int) -> list[Path]:
    from inspector.data.dataset import load_dataset

    names = set(ckpt.fingerprints("train").values())
    ds = load_dataset(ckpt.payload["data"]["root"])
    return [s.path for s in ds.train if s.path.name in names][:n]


def sample_frames(ckpt: Checkpoint, frame: tuple[int, int], n: int) -> tuple[torch.Tensor, str]:
    """Up to ``n`` training images as ``uint8 (n, H, W, 3)`` frames (resized to ``frame``), and where they
    came from. Without reachable training images: seeded random frames, said so in the source string."""
    import cv2

    from inspector.data.dataset import read_image

    h, w = frame
    try:
        paths = _training_images(ckpt, n)
    except DataError:
        paths = []
    imgs = []
    for p in paths:
        img = read_image(p)
        if img.shape[:2] != (h, w):
            img = cv2.resize(img, (w, h), interpolation=cv2.INTER_AREA)
        imgs.append(img)
    if len(imgs) >= 3:
        return torch.from_numpy(np.stack(imgs)), f"{len(imgs)} training images"
    log.warning("training images of %s not reachable: export checks use random frames", ckpt.product)
    rng = np.random.default_rng(0)
    return torch.from_numpy(rng.integers(0, 256, (max(n, 3), h, w, 3), dtype=np.uint8)), "random frames"


def fp16_decisions(model: torch.nn.Module, frames: torch.Tensor, source: str, layernorm: str) -> dict[str, Any]:
    """Which parts of the fp16 graph stay float32, and why. LayerNorm: measured unless forced."""
    load = layernorm_load(model, frames)
    if layernorm == "auto":
        risky = load["max_sum_sq"] > LAYERNORM_SUMSQ_LIMIT
        ln = "fp32" if risky else "fp16"
        why = (f"max per-token sum of squares at a LayerNorm input {load['max_sum_sq']:.4g} "
               f"{'>' if risky else '<='} {LAYERNORM_SUMSQ_LIMIT:.4g} (float16 max / 4) on {source}")
    else:
        ln, why = layernorm, "forced by --layernorm"
    return {
        "preprocess": "fp32",
        "scorer": "fp32",
        "backbone": "fp16",
        "transformer": "fp16",
        "layernorm": ln,
        "layernorm_reason": why,
        "layernorm_max_sum_sq": load["max_sum_sq"],
        "layernorm_max_abs": load["max_abs"],
        "outputs": "fp32",
    }


def _manifest(ckpt: Checkpoint, spec: GraphSpec, opts: ExportOptions, onnx_entries: dict, decisions: dict,
              checks: dict, frames_source: str) -> dict[str, Any]:
    h, w = spec.frame
    mean, std = ckpt.mean_std
    return {
        "schema": SCHEMA,
        "product": ckpt.product,
        "created": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "checkpoint": {"path": ckpt.path.name, "sha256": ckpt.sha256},
        "onnx": onnx_entries,
        "input": {"name": INPUT_NAME, "dtype": "uint8", "shape": ["batch", h, w, 3], "layout": "NHWC",
                  "color": "BGR"},
        "outputs": {
            "score": {"dtype": "float32", "shape": ["batch"]},
            "anomaly_map": {"dtype": "float32", "shape": ["batch", *spec.mask_size]},
        },
        "frame": {"height": h, "width": w},
        "roi": list(spec.roi) if spec.roi else None,
        "model_size": list(ckpt.preset.model.size_hw),
        "mask_size": list(spec.mask_size),
        "normalization": {"mean": list(mean), "std": list(std)},
        "max_batch": opts.max_batch,
        "opset": opts.opset,
        "exporter": "torch.onnx.export(dynamo=True)",
        "versions": _export_versions(),
        "verification": {**checks, "frames_source": frames_source} if checks else None,
        "engines": [],
        "fp16_decisions": decisions or None,
    }


def _old_engines(bundle: Path) -> list[dict]:
    """TensorRT plan entries of a previous export; those built from an ONNX file identical to a new one
    survive the new export."""
    if not manifest_path(bundle).is_file():
        return []
    try:
        old = load_manifest(bundle)
    except Exception:  # noqa: BLE001 - an unreadable old manifest simply has no plans worth keeping
        return []
    return list(old.get("engines", []))


def _export_versions() -> dict[str, str]:
    v = versions()
    for mod in ("onnx", "onnxscript", "onnxruntime"):
        try:
            v[mod] = __import__(mod).__version__
        except ImportError:
            continue
    return v

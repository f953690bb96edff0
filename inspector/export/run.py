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

import numpy as np
import torch

from inspector.bundle import Checkpoint, build_inspection_model, bundle_dir, load_checkpoint, model_path
from inspector.device import versions
from inspector.errors import CheckpointError, DataError, ExportError
from inspector.export import DEFAULT_MAX_BATCH, DEFAULT_OPSET, LAYERNORM_CHOICES, MIN_OPSET
from inspector.export.onnxio import export_onnx, verify_onnx
from inspector.export.ortgraph import INT8_ONNX, ORT_ONNX, write_fused_graph, write_int8_graph
from inspector.files import sha256_file
from inspector.manifest import (
    FUSED,
    INT8,
    MAX_BATCH,
    SCHEMA,
    EngineEntry,
    FileRef,
    Fp16Decisions,
    FrameSize,
    InputSpec,
    Manifest,
    OnnxCheck,
    OnnxEntry,
    OrtGraph,
    Outputs,
    TensorSpec,
    Verification,
    load_manifest,
    manifest_path,
    save_manifest,
)
from inspector.model.graph import GraphSpec
from inspector.model.half import LAYERNORM_SUMSQ_LIMIT, layernorm_load, to_half
from inspector.result import INPUT_NAME

log = logging.getLogger(__name__)

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
    mask_size: tuple[int, int] | None = None  # None: the model's input size
    max_batch: int = DEFAULT_MAX_BATCH
    fp16: bool = False
    layernorm: str = "auto"  # precision of LayerNorm in the fp16 graph: LAYERNORM_CHOICES
    opset: int = DEFAULT_OPSET
    ort_graph: bool = True  # also write model.ort.onnx (fused attention, onnxruntime only; see ortgraph)
    int8: bool = False  # also write model.int8.onnx (int8 MatMul weights, onnxruntime on the CPU only)
    verify: bool = True
    sample_frames: int = field(default=8, metadata={"doc": "frames used for the fp16 overflow check"})

    def check(self) -> None:
        """ExportError naming the option that is out of range."""
        if self.opset < MIN_OPSET:
            raise ExportError(f"--opset {self.opset}: at least {MIN_OPSET} is needed (LayerNormalization)")
        if not 1 <= self.max_batch <= MAX_BATCH:
            raise ExportError(f"--max-batch {self.max_batch}: allowed 1..{MAX_BATCH}")
        if self.layernorm not in LAYERNORM_CHOICES:
            raise ExportError(f"layernorm precision {self.layernorm!r}; allowed: {', '.join(LAYERNORM_CHOICES)}")


@dataclass
class _Graphs:
    """What the export wrote so far: ONNX entries and checks by manifest key, the fused graph's status, the
    fp16 decisions."""

    onnx: dict[str, OnnxEntry] = field(default_factory=dict)
    checks: dict[str, OnnxCheck] = field(default_factory=dict)
    ort_graph: OrtGraph | None = None
    fp16: Fp16Decisions | None = None


def export(product: str, home: str | Path | None = None, options: ExportOptions | None = None) -> Manifest:
    """Export ``product``'s model to ONNX under ``<home>/engines/<product>/`` and write its manifest.

    Returns the manifest. Raises ExportError (or CheckpointError for a missing model).
    """
    opts = options or ExportOptions()
    opts.check()
    bundle = bundle_dir(home, product)
    ckpt = load_checkpoint(model_path(home, product))
    frame = opts.frame or training_frame_size(ckpt)
    size = ckpt.preset.model.input_size
    spec = GraphSpec(frame=frame, roi=opts.roi, mask_size=opts.mask_size or (size, size))
    model = build_inspection_model(ckpt, spec)
    frames, frames_source = sample_frames(ckpt, frame, opts.sample_frames)

    # The old manifest goes before any file changes: an export that fails half-way then leaves a bundle
    # that says "not exported" instead of a manifest naming files that were replaced or removed.
    old_engines = _old_engines(bundle)
    manifest_path(bundle).unlink(missing_ok=True)
    graphs = _Graphs()
    _write_checked(model, model, bundle / FP32_ONNX, "fp32", frames, opts, graphs, FP32_TOLERANCE)
    _write_ort_graphs(model, bundle, frames, opts, graphs)
    if opts.fp16:
        graphs.fp16 = fp16_decisions(model, frames, frames_source, opts.layernorm)
        half = to_half(model, graphs.fp16.layernorm == "fp32")
        _write_checked(half, model, bundle / FP16_ONNX, "fp16", frames, opts, graphs, FP16_TOLERANCE)
    else:
        # A stale fp16 file from an earlier export must not be mistaken for this model's.
        (bundle / FP16_ONNX).unlink(missing_ok=True)

    manifest = _manifest(ckpt, spec, opts, graphs, frames_source, old_engines)
    save_manifest(bundle, manifest)
    log.info("exported %s -> %s", product, ", ".join(e.path for e in graphs.onnx.values()))
    return manifest


def _write_checked(module: torch.nn.Module, reference: torch.nn.Module, path: Path, key: str, frames: torch.Tensor,
                   opts: ExportOptions, graphs: _Graphs, tolerance: float) -> None:
    """Export ``module`` to ``path`` as the manifest's ONNX ``key``, checked against ``reference`` when asked."""
    export_onnx(module, path, frames[:2], opts.max_batch, opts.opset)
    graphs.onnx[key] = OnnxEntry(path.name, sha256_file(path))
    if opts.verify:
        graphs.checks[key] = verify_onnx(path, reference, frames[:3], tolerance)


def _write_ort_graphs(model: torch.nn.Module, bundle: Path, frames: torch.Tensor, opts: ExportOptions,
                      graphs: _Graphs) -> None:
    """The onnxruntime-only graphs: fused attention unless --no-ort-graph, int8 with --int8."""
    for stale in (ORT_ONNX, INT8_ONNX):  # written again below when asked for, never left from an old export
        (bundle / stale).unlink(missing_ok=True)
    if opts.ort_graph:
        entry, graphs.ort_graph, check = write_fused_graph(model, bundle, frames, opts.max_batch, opts.opset,
                                                           opts.verify)
        if entry is not None:
            graphs.onnx[FUSED] = entry
            if check is not None:
                graphs.checks[FUSED] = check
    else:
        graphs.ort_graph = OrtGraph(False, reason="not asked for (--no-ort-graph)")
    if opts.int8:
        source = bundle / graphs.onnx.get(FUSED, graphs.onnx["fp32"]).path
        graphs.onnx[INT8], check = write_int8_graph(source, model, frames, opts.verify)
        if check is not None:
            graphs.checks[INT8] = check


def training_frame_size(ckpt: Checkpoint) -> tuple[int, int]:
    """(H, W) of the product's training images, read from the checkpoint's data root; else ExportError."""
    root = Path(ckpt.data.root)
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
    ds = load_dataset(ckpt.data.root)
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


def fp16_decisions(model: torch.nn.Module, frames: torch.Tensor, source: str, layernorm: str) -> Fp16Decisions:
    """Which parts of the fp16 graph stay float32, and why. LayerNorm: measured unless forced."""
    load = layernorm_load(model, frames)
    if layernorm == "auto":
        risky = load["max_sum_sq"] > LAYERNORM_SUMSQ_LIMIT
        ln = "fp32" if risky else "fp16"
        why = (f"max per-token sum of squares at a LayerNorm input {load['max_sum_sq']:.4g} "
               f"{'>' if risky else '<='} {LAYERNORM_SUMSQ_LIMIT:.4g} (float16 max / 4) on {source}")
    else:
        ln, why = layernorm, "forced by --layernorm"
    return Fp16Decisions(preprocess="fp32", scorer="fp32", backbone="fp16", transformer="fp16", layernorm=ln,
                         layernorm_reason=why, layernorm_max_sum_sq=load["max_sum_sq"],
                         layernorm_max_abs=load["max_abs"], outputs="fp32")


def _manifest(ckpt: Checkpoint, spec: GraphSpec, opts: ExportOptions, graphs: _Graphs, frames_source: str,
              old_engines: tuple[EngineEntry, ...]) -> Manifest:
    h, w = spec.frame
    shas = {e.sha256 for e in graphs.onnx.values()}
    return Manifest(
        schema=SCHEMA,
        product=ckpt.product,
        created=dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        checkpoint=FileRef(ckpt.path.name, ckpt.sha256),
        onnx=graphs.onnx,
        input=InputSpec(INPUT_NAME, "uint8", ("batch", h, w, 3), "NHWC", "BGR"),
        outputs=Outputs(score=TensorSpec("float32", ("batch",)),
                        anomaly_map=TensorSpec("float32", ("batch", *spec.mask_size))),
        frame=FrameSize(h, w),
        roi=spec.roi,
        model_size=ckpt.preset.model.input_size,
        mask_size=tuple(spec.mask_size),
        normalization=ckpt.normalization,
        max_batch=opts.max_batch,
        opset=opts.opset,
        exporter="torch.onnx.export(dynamo=True)",
        versions=_export_versions(),
        verification=Verification(frames_source, graphs.checks) if graphs.checks else None,
        # Plans built from an ONNX file identical to a new one survive the new export.
        engines=tuple(e for e in old_engines if e.onnx_sha256 in shas),
        fp16_decisions=graphs.fp16,
        ort_graph=graphs.ort_graph,
    )


def _old_engines(bundle: Path) -> tuple[EngineEntry, ...]:
    """TensorRT plan entries of a previous export (none when there is no readable one)."""
    if not manifest_path(bundle).is_file():
        return ()
    try:
        return load_manifest(bundle).engines
    except CheckpointError:  # an unreadable old manifest simply has no plans worth keeping
        return ()


def _export_versions() -> dict[str, str]:
    v = versions()
    for mod in ("onnx", "onnxscript", "onnxruntime"):
        try:
            v[mod] = __import__(mod).__version__
        except ImportError:
            continue
    return v

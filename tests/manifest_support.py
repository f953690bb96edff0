"""Typed manifests for tests that need one without exporting a model (pure build and serving decisions)."""

from __future__ import annotations

import dataclasses

from inspector.manifest import (
    SCHEMA,
    EngineEntry,
    FileRef,
    Fp16Decisions,
    FrameSize,
    InputSpec,
    Manifest,
    Normalization,
    OnnxEntry,
    OrtGraph,
    Outputs,
    Profile,
    TensorSpec,
)


def make_manifest(product: str = "widget", frame: tuple[int, int] = (72, 80), mask: tuple[int, int] = (32, 48),
                  **changes) -> Manifest:
    """A schema-1 manifest of an fp32-only export (fake hashes) with ``changes`` applied."""
    h, w = frame
    m = Manifest(
        schema=SCHEMA, product=product, created="2026-01-01T00:00:00+00:00",
        checkpoint=FileRef("model.pt", "c" * 64), onnx={"fp32": OnnxEntry("model.onnx", "a" * 64)},
        input=InputSpec("frames", "uint8", ("batch", h, w, 3), "NHWC", "BGR"),
        outputs=Outputs(TensorSpec("float32", ("batch",)), TensorSpec("float32", ("batch", *mask))),
        frame=FrameSize(h, w), roi=None, model_size=64, mask_size=mask,
        normalization=Normalization((0.5,) * 3, (0.5,) * 3), max_batch=4, opset=18,
        exporter="torch.onnx.export(dynamo=True)", versions={}, verification=None, engines=(),
        fp16_decisions=None, ort_graph=OrtGraph(False, reason="not asked for (--no-ort-graph)"),
    )
    return dataclasses.replace(m, **changes)


def fp16_decisions(layernorm: str) -> Fp16Decisions:
    """The export's fp16 decisions with LayerNorm in ``layernorm``."""
    return Fp16Decisions("fp32", "fp32", "fp16", "fp16", layernorm, "measured", 1.0, 1.0, "fp32")


def engine_entry(gpu: str = "NVIDIA H200", compute_capability: str = "9.0", tensorrt: str = "10.13.0",
                 **changes) -> EngineEntry:
    """A TensorRT plan entry (fake hashes) with ``changes`` applied."""
    e = EngineEntry(
        plan="a.plan", sha256="p" * 64, gpu=gpu, compute_capability=compute_capability, tensorrt=tensorrt,
        onnx="model.onnx", onnx_sha256="a" * 64, onnx_precision="fp32", precision="fp16", strongly_typed=False,
        fp16_flag=True, pin_layernorm_fp32=True, layernorms_pinned=2,
        profile=Profile((1, 72, 80, 3), (4, 72, 80, 3), (4, 72, 80, 3)), max_batch=4, workspace_mib=4096,
        timing_cache="../.timing/a.cache", built="2026-01-01T00:00:00+00:00", build_seconds=1.0,
    )
    return dataclasses.replace(e, **changes)

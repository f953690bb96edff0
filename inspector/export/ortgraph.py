"""The onnxruntime flavour of the serving graph: attention as ORT's fused ``com.microsoft.MultiHeadAttention``.

Why: in the standard graph (``model.onnx``, what TensorRT parses) each attention is a dozen ONNX nodes:
Reshape and Transpose to split the heads, MatMul, Softmax, MatMul, Transpose and Reshape to merge them.
ONNX Runtime's transformer fusions do not recognise the pattern the dynamo exporter writes. The fused
graph has 304 nodes where the plain one has 556 (default config). The gain is modest: measured on 2 CPU
cores (default config, 256x256 frames, batch 1, interleaved runs), 3-6% less time per frame in float32
and in int8, and 4-8% less CPU time.

How: the same serving model, with every :class:`~inspector.model.adtr.Attention`'s ``attend`` (head split,
scaled dot-product attention, head merge) replaced by one custom torch operator,
``inspector::multi_head_attention`` (registered on first use). In torch it runs the very same ``scaled_dot_product_attention``;
the exporter translates it to ``com.microsoft.MultiHeadAttention(query, key, value, num_heads)``, whose
default scale is the same ``1/sqrt(head_dim)``. The projections stay ordinary MatMul + Add nodes.

TensorRT and other ONNX consumers cannot run ``com.microsoft`` operators, so this file,
``model.ort.onnx``, is for onnxruntime only; ``model.onnx`` stays plain ONNX. It is verified on the CPU
provider only; the CUDA provider also has the operator, but that path was never run here.

``write_int8_graph`` makes ``model.int8.onnx`` from it (``inspector export --int8``): every MatMul
dynamically quantised, for onnxruntime on the CPU.
"""

from __future__ import annotations

import copy
import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch import nn

from inspector.errors import ExportError
from inspector.export.onnxio import export_onnx, quiet_loggers, verify_onnx
from inspector.files import sha256_file, staged_file
from inspector.manifest import OnnxCheck, OnnxEntry, OrtGraph
from inspector.model.adtr import Attention, multi_head_attention

log = logging.getLogger(__name__)

ORT_DOMAIN = "com.microsoft"
ORT_OP = "MultiHeadAttention"
ORT_ONNX, INT8_ONNX = "model.ort.onnx", "model.int8.onnx"
ORT_ONLY = ("onnxruntime",)  # the consumers of both files: com.microsoft operators, int8 kernels
# ONNX Runtime vs torch, float32 (as for the plain graph): max |map difference| relative to the map's range.
FUSED_TOLERANCE = 1e-3
# int8 graph vs float32 torch. Measured on bottle (cpu-quick): 6.4-6.5e-4 with 7-bit weights; 2.9e-2 with
# 8-bit weights on an AVX2 CPU without VNNI, whose u8 x s8 kernels saturate (hence reduce_range).
INT8_TOLERANCE = 1e-2


def _attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, heads: int) -> torch.Tensor:
    """The operator's torch implementation: the model's own attention, inference only (the schema's signature)."""
    return multi_head_attention(q, k, v, heads)


_OP: Any = None


def fused_op() -> Any:
    """The custom operator ``inspector::multi_head_attention``, registered on first use.

    Registered lazily, not at import: importing this module (as ``inspector.export.run`` does) must work on any
    torch, and a torch that cannot register it only loses the optional fused graph.
    """
    global _OP
    if _OP is None:
        op = torch.library.custom_op("inspector::multi_head_attention", _attention, mutates_args=(),
                                     schema="(Tensor q, Tensor k, Tensor v, int heads) -> Tensor")
        op.register_fake(lambda q, k, v, heads: torch.empty_like(q))
        _OP = torch.ops.inspector.multi_head_attention
    return _OP


class FusedAttention(Attention):
    """:class:`Attention` whose ``attend`` is the one fused operator (inference only: no dropout)."""

    def attend(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        if self.training:
            return super().attend(q, k, v)
        return fused_op()(q, k, v, self.heads)


def with_fused_attention(model: nn.Module) -> tuple[nn.Module, int]:
    """A deep copy of ``model`` in eval mode whose attentions are :class:`FusedAttention`; and their count.

    Same parameters and buffers, same function; only the exported form of attention changes.
    """
    fused_op()  # register now: a torch that cannot, fails here, before any tracing
    fused = copy.deepcopy(model).eval()
    count = 0
    for module in fused.modules():
        if type(module) is Attention:
            module.__class__ = FusedAttention  # same attributes and weights; only ``attend`` differs
            count += 1
    return fused, count


def translation_table() -> dict[Any, Callable[..., Any]]:
    """``custom_translation_table`` for ``torch.onnx.export(dynamo=True)``: our operator -> ORT's MultiHeadAttention."""
    import onnxscript

    _register_schema()
    ort = onnxscript.values.Opset(ORT_DOMAIN, 1)

    def to_onnx(q: Any, k: Any, v: Any, heads: int) -> Any:
        return getattr(ort, ORT_OP)(q, k, v, num_heads=heads)

    return {fused_op().default: to_onnx}


def _register_schema() -> None:
    """Tell onnx (and so onnxscript) the signature of the ORT operator we emit: 3 inputs, 1 output, num_heads.

    ORT's operator has more, optional, inputs and outputs; declaring the ones we use is enough to build
    the node. Registered once per process.
    """
    import onnx
    from onnx.defs import OpSchema

    if onnx.defs.has(ORT_OP, ORT_DOMAIN):
        return
    param = OpSchema.FormalParameter
    onnx.defs.register_schema(OpSchema(
        ORT_OP, ORT_DOMAIN, 1,
        doc="ONNX Runtime contrib MultiHeadAttention (the subset inspector emits)",
        inputs=[param("query", "T"), param("key", "T"), param("value", "T")],
        outputs=[param("output", "T")],
        type_constraints=[("T", ["tensor(float)", "tensor(float16)"], "float tensors")],
        attributes=[OpSchema.Attribute("num_heads", OpSchema.AttrType.INT, "number of attention heads")],
    ))


def write_fused_graph(model: nn.Module, bundle: Path, frames: torch.Tensor, max_batch: int, opset: int,
                      verify: bool) -> tuple[OnnxEntry | None, OrtGraph, OnnxCheck | None]:
    """Write and check ``<bundle>/model.ort.onnx`` for the float32 serving ``model`` when it has attention.

    The caller removes an old file first (``inspector.export.run`` does); a failed attempt leaves none.

    Returns (the manifest's ONNX entry or None, its ``ort_graph`` status, the verification or None).
    Never raises: the plain ``model.onnx`` serves onnxruntime too, only a little slower, so any failure
    (an old onnx or onnxscript, say) is logged and recorded instead.
    """
    path = bundle / ORT_ONNX
    if not any(type(m) is Attention for m in model.modules()):
        return None, OrtGraph(False, reason="the model has no attention layers (mixer mlp or cnn); "
                                             "onnxruntime runs model.onnx"), None
    check = None
    try:
        fused, count = with_fused_attention(model)
        export_onnx(fused, path, frames[:2], max_batch, opset, translations=translation_table())
        if verify:
            check = verify_onnx(path, model, frames[:3], FUSED_TOLERANCE)
    except Exception as e:  # noqa: BLE001 - optional file: any failure falls back to the plain graph
        path.unlink(missing_ok=True)
        log.warning("onnxruntime graph with fused attention not written (onnxruntime will run model.onnx): %s", e)
        return None, OrtGraph(False, reason=f"{type(e).__name__}: {e}"), None
    entry = OnnxEntry(ORT_ONNX, sha256_file(path), consumers=ORT_ONLY)
    return entry, OrtGraph(True, fused_attention=count, operator=f"{ORT_DOMAIN}.{ORT_OP}"), check


def write_int8_graph(source: Path, model: nn.Module, frames: torch.Tensor,
                     verify: bool) -> tuple[OnnxEntry, OnnxCheck | None]:
    """Write ``model.int8.onnx`` beside ``source`` (an exported float32 graph): its MatMuls dynamically quantised.

    Weights are int8 per output channel, stored at 7 bits (``reduce_range``): on AVX2 CPUs without VNNI
    ONNX Runtime's u8 x s8 kernels saturate with full 8-bit weights. Activations are quantised per call
    (``DynamicQuantizeLinear``), so no calibration set is needed. Convolutions (the backbone), LayerNorms,
    preprocessing and scoring stay float32. Returns (manifest entry, verification or None). ExportError
    when quantisation fails or the result disagrees with torch by more than ``INT8_TOLERANCE`` x the map
    range; nothing is left behind then.
    """
    try:
        from onnxruntime.quantization import QuantType, quantize_dynamic
    except ImportError as e:
        raise ExportError("--int8 needs onnxruntime's quantization tools (pip install inspector[onnx])") from e
    path = source.parent / INT8_ONNX
    check = None
    try:
        with staged_file(path) as tmp:
            with quiet_loggers("", level=logging.ERROR):
                quantize_dynamic(str(source), str(tmp), op_types_to_quantize=["MatMul"], per_channel=True,
                                 reduce_range=True, weight_type=QuantType.QInt8)
            if verify:
                check = verify_onnx(tmp, model, frames[:3], INT8_TOLERANCE)
    except ExportError as e:  # the check failed: name the file the user knows, not the temporary one
        raise ExportError(f"{INT8_ONNX} (quantised from {source.name}) was not written: {e}") from e
    except Exception as e:  # noqa: BLE001 - quantizer failures become an ExportError naming the file
        raise ExportError(f"int8 quantisation of {source} failed: {type(e).__name__}: {e}") from e
    entry = OnnxEntry(INT8_ONNX, sha256_file(path), consumers=ORT_ONLY, source=source.name,
                      quantization="dynamic; MatMul weights int8 per channel (7-bit range), activations uint8 per call")
    return entry, check

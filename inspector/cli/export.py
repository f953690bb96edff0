"""inspector export --product NAME [--fp16] [--frame WxH] [--roi x,y,w,h] [--mask-size WxH] [--max-batch N] [--int8] [--no-ort-graph] [--home DIR]"""

from __future__ import annotations

import argparse

from inspector.cli.common import add_home, add_product
from inspector.export import DEFAULT_MAX_BATCH, DEFAULT_OPSET, LAYERNORM_CHOICES, MIN_OPSET


def size_arg(text: str) -> tuple[int, int]:
    """'WxH' (pixels) -> (H, W)."""
    try:
        w, h = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected WIDTHxHEIGHT in pixels, e.g. 1920x1080; got {text!r}") from None
    if w < 1 or h < 1:
        raise argparse.ArgumentTypeError(f"sizes must be positive; got {text!r}")
    return h, w


def roi_arg(text: str) -> tuple[int, int, int, int]:
    """'x,y,w,h' (frame pixels) -> (x, y, w, h)."""
    try:
        x, y, w, h = (int(v) for v in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected x,y,w,h in frame pixels, e.g. 640,200,800,800; got {text!r}") from None
    return x, y, w, h


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "export",
        help="export a trained product to ONNX (frame in, score and anomaly map out)",
        description="Export the product's model to engines/NAME/model.onnx (and model.fp16.onnx with --fp16) "
        "with manifest.json. The graph takes raw uint8 [B, H, W, 3] BGR camera frames and does ROI crop, "
        "resize, normalisation, the model, the anomaly map and the image score inside. model.ort.onnx is the "
        "same graph with ONNX Runtime's fused attention (onnxruntime only). Batch is dynamic "
        "(1..--max-batch), the frame size fixed. Thresholds are not in the graph.",
    )
    add_product(p)
    p.add_argument("--fp16", action="store_true", help="also write model.fp16.onnx (mixed precision; for GPUs)")
    p.add_argument("--frame", type=size_arg, metavar="WxH",
                   help="camera frame size (default: the size of the product's training images)")
    p.add_argument("--roi", type=roi_arg, metavar="x,y,w,h", help="region of the frame to inspect (default: all)")
    p.add_argument("--mask-size", type=size_arg, metavar="WxH",
                   help="size of the returned anomaly map (default: the model's input size)")
    p.add_argument("--max-batch", type=int, default=DEFAULT_MAX_BATCH, metavar="N",
                   help=f"largest batch (default {DEFAULT_MAX_BATCH})")
    p.add_argument("--layernorm", choices=LAYERNORM_CHOICES, default="auto",
                   help="LayerNorm precision in the fp16 graph (default auto: float32 if float16 could overflow)")
    p.add_argument("--opset", type=int, default=DEFAULT_OPSET,
                   help=f"ONNX opset, at least {MIN_OPSET} (default {DEFAULT_OPSET})")
    p.add_argument("--int8", action="store_true",
                   help="also write model.int8.onnx (int8 MatMul weights; onnxruntime on the CPU, which then "
                   "prefers it)")
    p.add_argument("--no-ort-graph", action="store_true",
                   help="do not write model.ort.onnx (the fused-attention graph onnxruntime prefers)")
    p.add_argument("--no-verify", action="store_true", help="skip the ONNX Runtime vs torch check")
    add_home(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from inspector.bundle import bundle_dir
    from inspector.export.run import ExportOptions, export
    from inspector.manifest import FUSED, manifest_path

    opts = ExportOptions(frame=args.frame, roi=args.roi, mask_size=args.mask_size, max_batch=args.max_batch,
                         fp16=args.fp16, layernorm=args.layernorm, opset=args.opset, verify=not args.no_verify,
                         ort_graph=not args.no_ort_graph, int8=args.int8)
    m = export(args.product, args.home, opts)
    bundle = bundle_dir(args.home, args.product)
    (h, w), (mh, mw) = m.frame_shape, m.mask_shape
    print(f"exported {args.product}: frames uint8 [1..{m.max_batch}, {h}, {w}, 3] BGR -> "
          f"score [B], anomaly_map [B, {mh}, {mw}] (opset {m.opset})")
    checks = m.verification.checks if m.verification else {}
    for key, entry in m.onnx.items():
        check = checks.get(key)
        note = f", ONNX Runtime vs torch: max map diff {check.max_map_diff_rel:.1e} x range" if check else ""
        print(f"  {key}: {bundle / entry.path}{note}")
    if m.ort_graph and not m.ort_graph.written:
        print(f"  {FUSED}: not written ({m.ort_graph.reason})")
    if m.fp16_decisions:
        print(f"  fp16: LayerNorm in {m.fp16_decisions.layernorm} ({m.fp16_decisions.layernorm_reason})")
    print(f"manifest: {manifest_path(bundle)}")
    return 0

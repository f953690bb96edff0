"""inspector build --product NAME [--workspace MiB] [--max-batch N] [--opt-batch N] [--precision P] [--home DIR]"""

from __future__ import annotations

import argparse

from inspector.cli.common import add_home, add_product
from inspector.export import DEFAULT_WORKSPACE_MIB
from inspector.manifest import PRECISIONS


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "build",
        help="build the product's TensorRT engine for this GPU",
        description="Parse the exported ONNX and build a TensorRT plan for this GPU and TensorRT version "
        "(engines/NAME/<gpu>-sm<cc>-trt<version>.plan), with one optimisation profile for batch 1..max and "
        "a timing cache on disk; records it in the manifest. fp16: on TensorRT 11 from the fp16 ONNX "
        "(strongly typed; export with --fp16 first), on TensorRT 10 from the fp32 ONNX with the FP16 flag.",
    )
    add_product(p)
    p.add_argument("--workspace", type=int, default=DEFAULT_WORKSPACE_MIB, metavar="MiB",
                   help=f"builder workspace (default {DEFAULT_WORKSPACE_MIB})")
    p.add_argument("--max-batch", type=int, metavar="N", help="largest batch (default: the export's)")
    p.add_argument("--opt-batch", type=int, metavar="N", help="batch TensorRT tunes for (default: max batch)")
    p.add_argument("--precision", choices=PRECISIONS, default="fp16", help="engine precision (default fp16)")
    p.add_argument("--strongly-typed", action="store_true",
                   help="TensorRT 10: build the fp16 ONNX strongly typed, as TensorRT 11 always does")
    p.add_argument("--device", default="cuda:0", help="GPU to build for (default cuda:0)")
    add_home(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from inspector.device import parse_device
    from inspector.errors import BackendError
    from inspector.export.tensorrt_build import build_engine

    kind, index = parse_device(args.device, BackendError)
    if kind != "cuda":
        raise BackendError(f"--device {args.device}: TensorRT builds for a CUDA GPU (cuda or cuda:N)")
    e = build_engine(args.home, args.product, workspace_mib=args.workspace, max_batch=args.max_batch,
                     opt_batch=args.opt_batch, precision=args.precision,
                     strongly_typed=True if args.strongly_typed else None, device_index=index or 0)
    print(f"built {e.plan} for {e.gpu} (sm{e.compute_capability}), TensorRT {e.tensorrt}, "
          f"{e.precision} from {e.onnx}, batch {e.profile.min[0]}..{e.profile.max[0]}, {e.build_seconds} s")
    return 0

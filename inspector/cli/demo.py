"""inspector demo [--data DIR] [--home DIR] [--out DIR]: synthetic product -> train -> export -> calibrate -> line."""

from __future__ import annotations

import argparse


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "demo",
        help="end to end on this machine: make a product, train, export, calibrate, run the line, listen",
        description="Make the synthetic 'cable' product (or use --data), train it with the cpu-quick preset, "
        "export it to ONNX, calibrate it, then run `inspector run` on a generated video of good and defective "
        "parts while a listener prints every decision and saves overlays. The last line is "
        "'demo: frames=N pass=N fail=N error=N agreement=0.NNN fps=N.N p50_ms=N.N p99_ms=N.N'.",
    )
    p.add_argument("--data", metavar="DIR", help="a real dataset (MVTec AD or folder layout) instead of the synthetic one")
    p.add_argument("--home", metavar="DIR",
                   help="where engines/ and calibration/ go (default: $INSPECTOR_HOME, else the current directory)")
    p.add_argument("--out", default="demo_out", metavar="DIR",
                   help="data, video, overlays, audit trail and results (default: demo_out)")
    p.add_argument("--product", metavar="NAME", help="product name (default: cable, or the --data folder's name)")
    p.add_argument("--frames", type=int, default=120, help="parts in the line video (default 120)")
    p.add_argument("--epochs", type=int, help="train for fewer epochs than the preset (faster, less accurate)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from inspector.tools.demo import run_demo

    result = run_demo(home=args.home, out=args.out, data=args.data, product=args.product, frames=args.frames,
                      epochs=args.epochs)
    print()
    print(result.line())
    return 0

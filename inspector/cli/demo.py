"""inspector demo [--data DIR] [--home DIR] [--out DIR] [--station]: synthetic product -> train -> export -> calibrate
-> line (a finite run ending with its summary line; with --station the line and the operator station until Ctrl-C)."""

from __future__ import annotations

import argparse


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "demo",
        help="end to end on this machine: make a product, train, export, calibrate, run the line, listen",
        description="Make the synthetic 'cable' product (or use --data), train it with the cpu-quick preset, "
        "export it to ONNX, calibrate it, then run `inspector run` on a generated video of good and defective "
        "parts while a listener prints every decision and saves overlays. The last line is "
        "'demo: frames=N pass=N fail=N error=N agreement=0.NNN fps=N.N p50_ms=N.N p99_ms=N.N'. With --station, "
        "run that line in a loop with the operator station (a web page) until Ctrl-C instead.",
    )
    p.add_argument("--data", metavar="DIR", help="a real dataset (MVTec AD or folder layout) instead of the synthetic one")
    p.add_argument("--home", metavar="DIR",
                   help="where engines/ and calibration/ go (default: $INSPECTOR_HOME, else the current directory)")
    p.add_argument("--out", default="demo_out", metavar="DIR",
                   help="data, video, overlays, audit trail and results (default: demo_out)")
    p.add_argument("--product", metavar="NAME", help="product name (default: cable, or the --data folder's name)")
    p.add_argument("--frames", type=int, default=120, help="parts in the line video (default 120)")
    p.add_argument("--epochs", type=int, help="train for fewer epochs than the preset (faster, less accurate)")
    p.add_argument("--station", action="store_true",
                   help="keep the line running (the video in a loop) with the operator station until Ctrl-C, and "
                   "print its URL; reuses the product and video a previous `inspector demo` made")
    p.add_argument("--bind", default="127.0.0.1:8080", metavar="HOST:PORT",
                   help="with --station: where the page is served (default 127.0.0.1:8080)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    if args.station:
        from inspector.tools.demo_station import run_station_demo

        return run_station_demo(home=args.home, out=args.out, data=args.data, product=args.product,
                                frames=args.frames, epochs=args.epochs, bind=args.bind)
    from inspector.tools.demo import run_demo

    result = run_demo(home=args.home, out=args.out, data=args.data, product=args.product, frames=args.frames,
                      epochs=args.epochs)
    print()
    print(result.line())
    return 0

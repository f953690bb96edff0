"""inspector listen --connect ENDPOINT [--line L] [--save DIR]: print live decisions, save overlays."""

from __future__ import annotations

import argparse

from inspector.cli.common import add_curve_client


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "listen",
        help="subscribe to a daemon and print its decisions live (reference client for PLC integrators)",
        description="Subscribe to `inspector run`'s PUB socket and print every result, event and status; save "
        "overlays of FAIL/ERROR results with --save. Stops at the daemon's end of stream. The message schema is "
        "in docs/zeromq.md.",
    )
    p.add_argument("--connect", required=True, action="append", metavar="ENDPOINT",
                   help="daemon PUB endpoint, e.g. tcp://line-pc:5555 (repeatable)")
    p.add_argument("--line", help="only this line's messages (default: every line on the endpoint)")
    p.add_argument("--save", metavar="DIR", help="write overlay PNGs of FAIL and ERROR results here")
    p.add_argument("--save-all", action="store_true", help="with --save, also PASS results")
    p.add_argument("--frames", metavar="PATH",
                   help="the video file or image folder the daemon reads, to draw overlays on the real frames")
    p.add_argument("--record", metavar="FILE", help="append every result header to this JSON Lines file")
    p.add_argument("--count", type=int, default=0, help="stop after N results (default: at end of stream)")
    p.add_argument("--timeout", type=float, default=0.0, help="stop after S seconds without any message (0 = never)")
    p.add_argument("--keep", action="store_true", help="keep listening after an end of stream (daemon restarts)")
    add_curve_client(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from pathlib import Path

    from inspector.client.listen import FrameLookup, listen
    from inspector.client.subscriber import Subscriber

    sub = Subscriber(args.connect, line=args.line, curve=tuple(args.curve) if args.curve else None)
    try:
        s = listen(sub, save=Path(args.save) if args.save else None, save_all=args.save_all,
                   frames=FrameLookup(args.frames) if args.frames else None, count=args.count,
                   timeout_s=args.timeout, stop_at_eos=not args.keep,
                   record=Path(args.record) if args.record else None)
    finally:
        sub.close()
    print(f"listen: results={s.frames} pass={s.counts['PASS']} fail={s.counts['FAIL']} error={s.counts['ERROR']} "
          f"fps={s.fps():.1f} p50_ms={s.percentile_ms(50):.1f} p99_ms={s.percentile_ms(99):.1f}")
    return 0

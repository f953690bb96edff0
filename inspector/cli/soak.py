"""inspector soak --config FILE --minutes N [--faults LIST]: the line's acceptance test under injected faults."""

from __future__ import annotations

import argparse

FAULT_HELP = ("camera (the file or image folder goes away and comes back), subscriber (one that never reads), "
              "garbage (malformed, nested and oversized control requests), sighup (calibration reload), disk (the "
              "audit disk fills, or with no --small-fs its directory is swapped for a file)")


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "soak",
        help="run the daemon for N minutes under injected faults and check its promises (acceptance test)",
        description="Start `inspector run --config FILE` as a separate process, subscribe, probe the control "
        "socket, sample the daemon's memory, open files and threads, and inject faults on a schedule: " + FAULT_HELP
        + ". SIGTERM at the end. Prints and writes OUT/soak.json: frames, results, audit records, lost and "
        "duplicated decisions, drops by cause, latency per phase, RSS/files/threads, a PASS/FAIL line per promise. "
        "Exit 0 when every promise holds, 1 otherwise.",
    )
    p.add_argument("--config", required=True, metavar="FILE", help="daemon YAML config (fixed ports, a source that "
                   "does not end: at_end: loop for a file or image folder)")
    p.add_argument("--minutes", required=True, type=float, metavar="N", help="length of the soak")
    p.add_argument("--faults", default="camera,subscriber,garbage,sighup,disk", metavar="LIST",
                   help="comma-separated fault classes (default: all): " + FAULT_HELP)
    p.add_argument("--every", type=float, default=60.0, metavar="S", help="seconds between two faults (default 60)")
    p.add_argument("--warmup", type=float, default=None, metavar="S",
                   help="seconds before the first fault; RSS growth is measured from here (default: 5 minutes, "
                   "or a third of a shorter soak)")
    p.add_argument("--small-fs", action="store_true",
                   help="the config's audit directory is on a small filesystem made for this: the disk fault fills it")
    p.add_argument("--out", default="soak_out", metavar="DIR", help="daemon config, daemon log and soak.json")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from pathlib import Path

    from inspector.errors import ConfigError
    from inspector.tools.soak import SoakOptions, run_soak

    faults = tuple(f.strip() for f in args.faults.split(",") if f.strip())
    if args.minutes <= 0:
        raise ConfigError(f"--minutes must be > 0, got {args.minutes:g}")
    if not Path(args.config).is_file():
        raise ConfigError(f"--config {args.config} does not exist")
    warmup = args.warmup if args.warmup is not None else min(300.0, args.minutes * 60 / 3)
    opts = SoakOptions(Path(args.config), args.minutes, faults, Path(args.out), args.every, warmup, args.small_fs)
    report = run_soak(opts)
    print(f"json: {Path(args.out) / 'soak.json'}")
    return 0 if report["pass"] else 1

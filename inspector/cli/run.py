"""inspector run --config FILE [--check]: the line daemon."""

from __future__ import annotations

import argparse


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "run",
        help="run the line daemon: camera frames in, PASS/FAIL/ERROR and masks out over ZeroMQ",
        description="Run the line daemon described by a YAML config (see deploy/inspector.example.yaml): capture "
        "from the camera, inspect with the product's engine and calibration, publish every decision on a ZeroMQ "
        "PUB socket, take PLC commands on a ROUTER socket, keep an audit trail. SIGTERM/SIGINT finish every "
        "captured frame and exit 0; SIGHUP reloads the calibration.",
    )
    p.add_argument("--config", required=True, metavar="FILE", help="daemon YAML config")
    p.add_argument("--check", action="store_true", help="only validate the config and print it, then exit")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from inspector.stream.config import load_daemon_config

    cfg = load_daemon_config(args.config)
    if args.check:
        import yaml

        from inspector.config import to_dict

        print(yaml.safe_dump(to_dict(cfg), sort_keys=False), end="")
        print(f"{args.config}: OK")
        return 0
    from inspector.stream.daemon import Daemon, setup_logging

    setup_logging(cfg.log)
    return Daemon(cfg).run()

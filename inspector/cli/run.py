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
    p.add_argument("--check", action="store_true",
                   help="only validate the config (keys, values, files it names) and print it, then exit")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from inspector.errors import InspectorError
    from inspector.stream.config import drop_policy_for, exposure, load_daemon_config
    from inspector.stream.preflight import preflight

    cfg = load_daemon_config(args.config)
    preflight(cfg, args.config)
    if args.check:
        import yaml

        from inspector.config import to_dict

        print(yaml.safe_dump(to_dict(cfg), sort_keys=False), end="")
        policy = drop_policy_for(cfg.pipeline.drop_policy, cfg.source.kind)
        print(f"# drop policy in effect: {policy}" + (f" (auto for a {cfg.source.kind} source)"
                                                      if cfg.pipeline.drop_policy == "auto" else ""))
        for what in exposure(cfg):
            print(f"# WARNING: {what} is reachable beyond this machine without authentication")
        print(f"{args.config}: OK")
        return 0
    from inspector.stream.daemon import Daemon, setup_logging

    setup_logging(cfg.log)
    try:
        return Daemon(cfg).run()
    except InspectorError as e:
        if args.config in str(e):
            raise
        # Errors found only while starting (a port taken, a missing bundle) name the config they came from.
        raise type(e)(f"{args.config}: {e}") from e

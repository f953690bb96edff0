"""inspector bridge --config FILE [--check]: run OPC UA and MQTT bridges beside the line daemon."""

from __future__ import annotations

import argparse
import logging


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "bridge",
        help="run OPC UA (PLC) and MQTT (MES) bridges that subscribe to the daemon's ZeroMQ stream",
        description="Run the bridges of a YAML file (see deploy/configs/bridge-opcua.yaml and bridge-mqtt.yaml): "
        "each subscribes to one or more daemons' PUB sockets and sends on their control sockets, and speaks OPC UA "
        "(a server with one object per line and the part handshake, docs/plc.md) or MQTT (results, events and "
        "status as JSON with store-and-forward) on the other side. SIGTERM/SIGINT stop them.",
    )
    p.add_argument("--config", required=True, metavar="FILE", help="bridge YAML file")
    p.add_argument("--check", action="store_true", help="only validate the file and print it, then exit")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from inspector.bridge.config import load_bridge_config

    cfg = load_bridge_config(args.config)
    if args.check:
        import yaml

        from inspector.config import to_dict

        print(yaml.safe_dump(to_dict(cfg), sort_keys=False), end="")
        print(f"{args.config}: OK")
        return 0
    logging.getLogger().setLevel(cfg.log_level.upper())
    if cfg.log_level != "debug":
        # asyncua logs every node it creates and every session at INFO.
        logging.getLogger("asyncua").setLevel(logging.WARNING)
    from inspector.bridge.run import run_bridges

    return run_bridges(cfg)

"""inspector ctl --connect ENDPOINT CMD [ARG]: send a control command to a running daemon."""

from __future__ import annotations

import argparse

from inspector.cli.common import add_curve_client

COMMANDS = ("status", "switch_product", "trigger", "pause", "resume", "reload_calibration")


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "ctl",
        help="send a control command (status, switch_product, trigger, pause, resume, reload_calibration)",
        description="Send one command to `inspector run`'s control (ROUTER) socket and print the JSON reply. "
        "Lazy Pirate: on no reply within --timeout the request is re-sent on a fresh socket, --retries times. "
        "Exit 0 when the daemon answered ok, 1 otherwise.",
    )
    p.add_argument("--connect", required=True, metavar="ENDPOINT", help="daemon control endpoint, e.g. tcp://line-pc:5556")
    p.add_argument("cmd", choices=COMMANDS, metavar="CMD", help=f"one of {', '.join(COMMANDS)}")
    p.add_argument("arg", nargs="?", metavar="ARG", help="product name (switch_product) or part id (trigger)")
    p.add_argument("--timeout", type=int, default=None, metavar="MS",
                   help="reply timeout per attempt in ms (default 2500; 30000 for switch_product)")
    p.add_argument("--retries", type=int, default=3, help="re-sends after a timeout (default 3)")
    add_curve_client(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import json

    from inspector.client.subscriber import ControlClient
    from inspector.errors import ConfigError

    extra = {}
    if args.cmd in ("switch_product", "trigger"):
        if not args.arg:
            raise ConfigError(f"`inspector ctl {args.cmd}` needs an argument: "
                              f"{'a product name' if args.cmd == 'switch_product' else 'a part id'}")
        extra = {"product": args.arg} if args.cmd == "switch_product" else {"part_id": args.arg}
    elif args.arg:
        raise ConfigError(f"`inspector ctl {args.cmd}` takes no argument (got {args.arg!r})")
    # Loading an engine can take many seconds; a short timeout would only make Lazy Pirate re-send.
    timeout = args.timeout or (30000 if args.cmd in ("switch_product", "reload_calibration") else 2500)
    client = ControlClient(args.connect, timeout_ms=timeout, retries=args.retries,
                           curve=tuple(args.curve) if args.curve else None)
    try:
        reply = client.request(args.cmd, **extra)
    finally:
        client.close()
    print(json.dumps(reply, indent=2))
    return 0 if reply.get("ok") else 1

"""inspector ctl --connect ENDPOINT CMD [ARG]: send a control command to a running daemon."""

from __future__ import annotations

import argparse

from inspector.cli.common import add_curve_client
from inspector.protocol.commands import COMMANDS, NAMES, SLOW, SLOW_TIMEOUT_MS
from inspector.protocol.sockets import DEFAULTS


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "ctl",
        help=f"send a control command ({', '.join(NAMES)})",
        description="Send one command to `inspector run`'s control (ROUTER) socket and print the JSON reply. "
        "Lazy Pirate: on no reply within --timeout the request is re-sent on a fresh socket, --retries times. "
        "Exit 0 when the daemon answered ok, 1 otherwise. Commands: "
        + "; ".join(f"{c.name}{' ' + c.args[0][0].upper() if c.args else ''}: {c.help}" for c in COMMANDS.values()),
    )
    p.add_argument("--connect", required=True, metavar="ENDPOINT", help="daemon control endpoint, e.g. tcp://line-pc:5556")
    p.add_argument("cmd", choices=NAMES, metavar="CMD", help=f"one of {', '.join(NAMES)}")
    p.add_argument("arg", nargs="?", metavar="ARG",
                   help="; ".join(f"{c.args[0][0]} ({c.name})" for c in COMMANDS.values() if c.args))
    p.add_argument("--timeout", type=int, default=None, metavar="MS",
                   help=f"reply timeout per attempt in ms (default {DEFAULTS.request_timeout_ms}; {SLOW_TIMEOUT_MS} "
                   f"for {', '.join(SLOW)})")
    p.add_argument("--retries", type=int, default=DEFAULTS.request_retries,
                   help=f"re-sends after a timeout (default {DEFAULTS.request_retries})")
    add_curve_client(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import json

    from inspector.client.subscriber import ControlClient
    from inspector.errors import ConfigError

    cmd = COMMANDS[args.cmd]
    extra = {}
    if cmd.args:
        name = cmd.args[0][0]
        if not args.arg:
            raise ConfigError(f"`inspector ctl {args.cmd}` needs an argument: the {name.replace('_', ' ')}")
        extra = {name: args.arg}
    elif args.arg:
        raise ConfigError(f"`inspector ctl {args.cmd}` takes no argument (got {args.arg!r})")
    # Loading an engine can take many seconds; a short timeout would only make Lazy Pirate re-send.
    timeout = args.timeout or (SLOW_TIMEOUT_MS if cmd.slow else DEFAULTS.request_timeout_ms)
    client = ControlClient(args.connect, timeout_ms=timeout, retries=args.retries,
                           curve=tuple(args.curve) if args.curve else None)
    try:
        reply = client.request(args.cmd, **extra)
    finally:
        client.close()
    print(json.dumps(reply, indent=2))
    return 0 if reply.get("ok") else 1

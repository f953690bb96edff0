"""inspector keys --out DIR [--name NAME ...]: generate CURVE key pairs for the daemon and its clients."""

from __future__ import annotations

import argparse


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "keys",
        help="generate CURVE key pairs (server and clients) for authenticated, encrypted ZeroMQ",
        description="Write NAME.key (public) and NAME.key_secret (secret, mode 0600) for each --name with pyzmq's "
        "zmq.auth. The daemon uses server.key_secret (zmq.curve.server_secret_key); copy each allowed client's "
        "NAME.key into the directory named by zmq.curve.authorized_keys; clients need their own .key_secret "
        "and the server's .key.",
    )
    p.add_argument("--out", required=True, metavar="DIR", help="directory for the key files (created)")
    p.add_argument("--name", action="append", metavar="NAME",
                   help="key pair name (repeatable; default: server and client)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from inspector.protocol.auth import generate_keys

    for name in args.name or ["server", "client"]:
        public, secret = generate_keys(args.out, name)
        print(f"{name}: public {public}, secret {secret}")
    return 0

"""inspector bridge-certs --out DIR [--server NAME] [--client NAME ...]: OPC UA certificates for the bridge."""

from __future__ import annotations

import argparse


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "bridge-certs",
        help="make OPC UA application certificates (the bridge's and its clients') for SignAndEncrypt",
        description="Write NAME.der (certificate) and NAME.pem (private key, mode 0600, never overwritten) for the "
        "OPC UA bridge (--server) and each client (--client), self-signed RSA 2048 / SHA-256 as OPC UA asks, and copy "
        "every client certificate into DIR/trusted/ (opcua.trusted_clients). Give the PLC server.der to trust; a "
        "PLC that makes its own certificate needs its .der copied into DIR/trusted/ instead.",
    )
    p.add_argument("--out", required=True, metavar="DIR", help="folder for the files (created)")
    p.add_argument("--server", default="bridge", metavar="NAME", help="the bridge's certificate name (default bridge)")
    p.add_argument("--client", action="append", metavar="NAME", help="a client certificate (repeatable; default plc)")
    p.add_argument("--host", action="append", metavar="HOST",
                   help="a DNS name or IP address the bridge is reached by (repeatable; default: this host's name, "
                        "localhost, 127.0.0.1)")
    p.add_argument("--days", type=int, default=730, help="validity in days (default 730)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from inspector.bridge.certs import make_certificate

    s = make_certificate(args.out, args.server, "server", args.host, args.days)
    print(f"server {args.server}: certificate {s.cert}, key {s.key}, application URI {s.uri}")
    for name in args.client or ["plc"]:
        c = make_certificate(args.out, name, "client", None, args.days)
        print(f"client {name}: certificate {c.cert} (trusted), key {c.key}, application URI {c.uri} "
              "(the client must announce exactly this one)")
    return 0

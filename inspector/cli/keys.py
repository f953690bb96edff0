"""inspector keys --out DIR [--name NAME ...] [--opcua]: CURVE key pairs, or OPC UA certificates for the bridge."""

from __future__ import annotations

import argparse


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "keys",
        help="generate CURVE key pairs for ZeroMQ, or (--opcua) certificates for the OPC UA bridge",
        description="Write NAME.key (public) and NAME.key_secret (secret, mode 0600) for each --name with pyzmq's "
        "zmq.auth. The daemon uses server.key_secret (zmq.curve.server_secret_key); copy each allowed client's "
        "NAME.key into the directory named by zmq.curve.authorized_keys; clients need their own .key_secret "
        "and the server's .key. With --opcua: OPC UA application certificates for `inspector bridge` instead: the "
        "first --name is the bridge's (NAME.der, NAME.pem), the others its clients', each also copied into "
        "DIR/trusted/ (opcua.trusted_clients); private keys are created 0600 and never overwritten.",
    )
    p.add_argument("--out", required=True, metavar="DIR", help="directory for the key files (created)")
    p.add_argument("--name", action="append", metavar="NAME",
                   help="key pair name (repeatable; default: server and client, with --opcua bridge and plc)")
    p.add_argument("--opcua", action="store_true",
                   help="OPC UA certificates (self-signed RSA 2048 / SHA-256, SignAndEncrypt Basic256Sha256)")
    p.add_argument("--host", action="append", metavar="HOST",
                   help="--opcua: a DNS name or IP address the bridge is reached by (repeatable; default: this "
                        "host's name, localhost, 127.0.0.1)")
    p.add_argument("--days", type=int, default=730, help="--opcua: validity in days (default 730)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    if args.opcua:
        return _opcua(args)
    from inspector.protocol.auth import generate_keys

    for name in args.name or ["server", "client"]:
        public, secret = generate_keys(args.out, name)
        print(f"{name}: public {public}, secret {secret}")
    return 0


def _opcua(args: argparse.Namespace) -> int:
    from inspector.bridge.certs import make_certificate

    server, *clients = args.name or ["bridge", "plc"]
    s = make_certificate(args.out, server, "server", args.host, args.days)
    print(f"server {server}: certificate {s.cert}, key {s.key}, application URI {s.uri}")
    for name in clients:
        c = make_certificate(args.out, name, "client", None, args.days)
        print(f"client {name}: certificate {c.cert} (trusted), key {c.key}, application URI {c.uri} "
              "(the client must announce exactly this one)")
    return 0

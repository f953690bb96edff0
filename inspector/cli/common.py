"""Options shared by several verbs."""

from __future__ import annotations

import argparse


def add_home(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--home",
        metavar="DIR",
        help="root holding engines/ and calibration/ (default: $INSPECTOR_HOME, else the current directory)",
    )


def add_product(p: argparse.ArgumentParser, required: bool = True) -> None:
    p.add_argument("--product", required=required, metavar="NAME", help="product name, e.g. cable")


def add_device(p: argparse.ArgumentParser) -> None:
    p.add_argument("--device", default="auto", help="cpu, cuda, cuda:N or auto (default: auto = CUDA if present)")


def add_threads(p: argparse.ArgumentParser) -> None:
    p.add_argument("--threads", type=int, default=0, help="CPU threads for torch (default: torch's choice)")


def add_curve_client(p: argparse.ArgumentParser) -> None:
    p.add_argument("--curve", nargs=2, metavar=("CLIENT_SECRET", "SERVER_PUBLIC"),
                   help="CURVE: this client's NAME.key_secret and the daemon's server.key (see `inspector keys`)")

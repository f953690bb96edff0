"""The ``inspector`` command line. One module per verb, each with ``register(subparsers)``.

Heavy imports (torch, timm, onnx) happen inside the verbs, so ``inspector --help`` is instant.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import pkgutil
import sys

from inspector import __version__
from inspector.errors import InspectorError

# Verbs listed first in the help, in this order; any other verb module found is listed after them.
ORDER = ("demo", "train", "evaluate", "export", "build", "bench", "calibrate", "run", "listen", "ctl", "station",
         "review", "keys", "soak", "ablate", "visualize", "synth")


def verb_modules() -> list[str]:
    """Modules under inspector.cli that define ``register`` (every module but the helpers)."""
    import inspector.cli as pkg

    found = {m.name for m in pkgutil.iter_modules(pkg.__path__) if m.name not in ("common",)}
    return [v for v in ORDER if v in found] + sorted(found - set(ORDER))


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="inspector",
        description="Factory-line visual inspection with ADTR: train per product, export engines, "
        "calibrate thresholds, and serve pass/fail decisions over ZeroMQ.",
    )
    parser.add_argument("--version", action="version", version=f"inspector {__version__}")
    parser.add_argument("-v", "--verbose", action="count", default=0, help="more logging (-vv for debug)")
    sub = parser.add_subparsers(dest="verb", metavar="VERB")
    for verb in verb_modules():
        importlib.import_module(f"inspector.cli.{verb}").register(sub)
    return parser


def setup_logging(verbosity: int) -> None:
    level = logging.DEBUG if verbosity >= 2 else logging.INFO
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s", stream=sys.stderr)


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    setup_logging(args.verbose)
    try:
        return int(args.func(args) or 0)
    except InspectorError as e:
        print(f"inspector {args.verb}: error: {e}", file=sys.stderr)
        return 1
    except OSError as e:  # a path the user gave cannot be read or written: their error, not a crash
        print(f"inspector {args.verb}: error: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"inspector {args.verb}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())

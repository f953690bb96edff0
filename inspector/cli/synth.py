"""inspector synth --out DIR: write the synthetic 'cable' product (MVTec AD layout)."""

from __future__ import annotations

import argparse


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "synth",
        help="write a synthetic product with injected defects",
        description="Write the synthetic 'cable' product (three coloured wires in a round sheath, seen end-on) "
        "in the MVTec AD layout, with defects (missing/swapped/bent wire, cut, poke, scratch, spot, colour shift) "
        "and their masks.",
    )
    p.add_argument("--out", required=True, metavar="DIR", help="output directory (created)")
    p.add_argument("--train", type=int, default=120, help="good training images (default 120)")
    p.add_argument("--test-good", type=int, default=16, help="good test images (default 16)")
    p.add_argument("--per-defect", type=int, default=4, help="test images per defect type (default 4)")
    p.add_argument("--size", type=int, default=256, help="image side in pixels (default 256)")
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from inspector.data.dataset import load_dataset
    from inspector.data.synthetic import write_product

    root = write_product(args.out, args.train, args.test_good, args.per_defect, args.size, seed=args.seed)
    print(load_dataset(root).summary())
    return 0

"""inspector evaluate --product NAME --data DIR [--json OUT] [--images DIR] [--home DIR]"""

from __future__ import annotations

import argparse

from inspector.cli.common import add_device, add_home, add_product, add_threads


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "evaluate",
        help="image/pixel AUROC and AUPRO on a labelled test split",
        description="Evaluate a trained product on the test split of a dataset: image AUROC, pixel AUROC "
        "and pixel AUPRO (PRO up to 30% FPR, normalised), overall and per defect type.",
    )
    add_product(p)
    p.add_argument("--data", required=True, metavar="DIR", help="dataset directory with test images and masks")
    p.add_argument("--json", metavar="OUT", help="write the metrics as JSON")
    p.add_argument("--images", metavar="DIR", help="write heat-map overlays of a sample of test images")
    add_device(p)
    add_threads(p)
    add_home(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from inspector.evaluate.run import evaluate

    r = evaluate(args.product, args.data, home=args.home, device=args.device, json_out=args.json,
                 images_dir=args.images, threads=args.threads)
    print(f"{'':16s} {'image AUROC':>12s} {'pixel AUROC':>12s} {'pixel AUPRO':>12s} {'n':>5s}")
    rows = [("all", r)] + list(r["per_type"].items())
    for name, m in rows:
        print(f"{name:16s} {m['image_auroc']:12.4f} {m['pixel_auroc']:12.4f} {m['pixel_aupro']:12.4f} "
              f"{m['n_good'] + m['n_defective']:5d}")
    print(f"{r['ms_per_image']:.1f} ms per image on {r['device']}")
    return 0

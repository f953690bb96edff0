"""inspector train --product NAME --data DIR [--config PRESET|FILE] [--epochs N] [--device D] [--home DIR]"""

from __future__ import annotations

import argparse

from inspector.cli.common import add_device, add_home, add_product


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "train",
        help="train a product's ADTR model on good images",
        description="Train ADTR on the good images of a dataset (MVTec AD or folder layout, detected). "
        "A validation fraction of the good images is held out for calibration and never trained on. "
        "The model lands in <home>/engines/NAME/model.pt.",
    )
    add_product(p)
    p.add_argument("--data", required=True, metavar="DIR", help="dataset directory (MVTec AD category or folder layout)")
    p.add_argument("--config", default="default", metavar="PRESET|FILE",
                   help="shipped preset (default, cpu-quick) or a YAML file (default: default)")
    p.add_argument("--epochs", type=int, help="override the preset's epochs")
    p.add_argument("--lr", type=float, help="override the preset's learning rate")
    p.add_argument("--batch-size", type=int, help="override the preset's batch size")
    p.add_argument("--val-fraction", type=float, help="share of good images held out for calibration (default 0.1)")
    p.add_argument("--seed", type=int, help="override the preset's seed")
    p.add_argument("--threads", type=int, help="CPU threads (default: torch's choice)")
    p.add_argument("--backbone-weights", metavar="PATH", help="local pretrained weights file for the backbone")
    p.add_argument("--resume", metavar="CKPT", help="continue from a checkpoint (engines/NAME/checkpoints/*.pt)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.add_argument("--add-reviewed", action="store_true",
                   help="also train on the false rejects operators reviewed in `inspector station` "
                   "(<home>/reviews/NAME); calibration then refuses those images, as any training image")
    add_device(p)
    add_home(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import dataclasses

    from inspector.config import override
    from inspector.preset import load_preset
    from inspector.train.run import train

    preset = load_preset(args.config)
    tcfg = override(preset.train, epochs=args.epochs, lr=args.lr, batch_size=args.batch_size,
                    val_fraction=args.val_fraction, seed=args.seed, threads=args.threads)
    preset = dataclasses.replace(preset, train=_checked(tcfg))
    extra = _reviewed_good(args) if args.add_reviewed else ()
    r = train(args.product, args.data, preset, home=args.home, device=args.device, resume=args.resume,
              backbone_weights=args.backbone_weights, progress=not args.no_progress, extra_good=extra)
    print(f"trained {args.product}: {r.epochs} epochs on {r.n_train} images ({r.n_holdout} held out), "
          f"final loss {r.final_loss:.5f}, {r.train_seconds:.1f} s training + {r.cache_seconds:.1f} s feature cache")
    print(f"model: {r.model_path}")
    return 0


def _reviewed_good(args: argparse.Namespace) -> tuple:
    """The frames of the false rejects reviewed for this product (latest verdict per reject)."""
    from inspector.errors import DataError
    from inspector.reviews import ReviewStore

    store = ReviewStore(args.home, args.product)
    good = tuple(r.frame for r in store.latest() if r.verdict == "false_reject")
    if not good:
        raise DataError(f"--add-reviewed: no reviewed false rejects for product '{args.product}' in {store.dir}")
    print(f"adding {len(good)} reviewed false rejects from {store.dir} to the good training images")
    return good


def _checked(tcfg):
    """Re-validate overridden values against the config's ranges."""
    from inspector.config import load_dataclass, to_dict
    from inspector.preset import TrainConfig

    return load_dataclass(TrainConfig, to_dict(tcfg), "command line", prefix="train.")

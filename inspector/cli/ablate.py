"""inspector ablate --data DIR [--category C] [--groups a,b,c,d] [--epochs N] [--device D] [--out DIR]"""

from __future__ import annotations

import argparse


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "ablate",
        help="re-run the ADTR paper's ablation (Table 4) on a product",
        description="Train and evaluate every variant of the chosen ablation groups with otherwise identical "
        "settings and seed: (a) CNN / w/o Attn / w/o Query / Attn+Query, (b) pixel vs feature target, "
        "(c) backbones (offline Lite0/1/2; ResNet-18/34, EfficientNet-B0/B4 with --backbone-weights), "
        "(d) last layer vs multi-scale. Writes OUT/ablation.json and OUT/ablation.md with the paper's "
        "pixel AUROC beside ours. Re-running with the same OUT resumes: finished variants are not retrained.",
    )
    p.add_argument("--data", required=True, metavar="DIR",
                   help="an MVTec AD category directory, or the MVTec AD root together with --category")
    p.add_argument("--category", metavar="C", help="category under --data, e.g. bottle")
    p.add_argument("--groups", default="a,b,c,d", help="comma-separated groups out of a,b,c,d (default: all)")
    p.add_argument("--config", default="default", metavar="PRESET|FILE",
                   help="shipped preset (default, cpu-quick) or a YAML file; its model is the baseline")
    p.add_argument("--epochs", type=int, help="override the preset's epochs (all variants)")
    p.add_argument("--seed", type=int, help="override the preset's seed (all variants)")
    p.add_argument("--backbone-weights", action="extend", nargs="+", default=[], metavar="NAME=PATH",
                   help="local weights files for backbones of group (c), e.g. resnet18=/w/resnet18.pth "
                   "efficientnet_b4=/w/b4.pth (timm key layout; repeatable)")
    p.add_argument("--backbones", metavar="LIST",
                   help="comma-separated backbones for group (c) (default: the paper's four and Lite0/1/2)")
    p.add_argument("--out", default="ablation", metavar="DIR", help="output directory (default: ./ablation)")
    p.add_argument("--threads", type=int, help="CPU threads (default: torch's choice)")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    p.add_argument("--device", default="auto", help="cpu, cuda, cuda:N or auto (default: auto = CUDA if present)")
    p.set_defaults(func=run)


def parse_weights(items: list[str]) -> dict[str, str]:
    """``["resnet18=/w/r18.pth", ...]`` -> ``{"resnet18": "/w/r18.pth"}``."""
    from inspector.errors import ConfigError

    out = {}
    for item in items:
        name, sep, path = item.partition("=")
        if not sep or not name or not path:
            raise ConfigError(f"--backbone-weights {item!r}: expected NAME=PATH, e.g. resnet18=/weights/resnet18.pth")
        out[name.strip()] = path.strip()
    return out


def run(args: argparse.Namespace) -> int:
    import dataclasses

    from inspector.config import load_dataclass, override, to_dict
    from inspector.preset import TrainConfig, load_preset
    from inspector.tools.ablate import BACKBONE_ORDER, ablate

    preset = load_preset(args.config)
    tcfg = override(preset.train, epochs=args.epochs, seed=args.seed, threads=args.threads)
    preset = dataclasses.replace(preset, train=load_dataclass(TrainConfig, to_dict(tcfg), "command line"))
    groups = tuple(g.strip() for g in args.groups.split(",") if g.strip())
    backbones = tuple(b.strip() for b in args.backbones.split(",")) if args.backbones else BACKBONE_ORDER

    def report(key: str, r: dict) -> None:
        if r.get("status") == "done":
            m = {k: "n/a" if r.get(k) is None else f"{r[k]:.4f}" for k in ("pixel_auroc", "image_auroc", "aupro")}
            print(f"{key:28s} pixel AUROC {m['pixel_auroc']}  image AUROC {m['image_auroc']}  "
                  f"AUPRO {m['aupro']}  train {r.get('train_seconds') or 0:.0f} s", flush=True)
        else:
            print(f"{key:28s} unavailable: {r.get('reason')}", flush=True)

    ablate(args.data, args.out, preset, groups, category=args.category, device=args.device,
           backbone_weights=parse_weights(args.backbone_weights), backbones=backbones,
           progress=not args.no_progress, on_variant=report)
    print(f"table: {args.out}/ablation.md")
    return 0

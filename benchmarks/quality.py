"""The recipe sweeps of docs/benchmarks.md ("A recipe chosen across products"): one table per choice and dataset.

Each table changes one choice of a base recipe (the cpu-quick preset, plus ``--base`` changes) and reports
image AUROC, pixel AUROC (at each mask's own resolution) and AUPRO for every value, on every dataset given.
Backbone features are cached once per (dataset, input size), so only the reconstructor is retrained; trained
variants are cached too, so re-running a table (or printing it again) costs nothing.

    python benchmarks/quality.py --data ksdd=../shared/datasets/ksdd --data bottle=../shared/datasets/mvtec_ad/bottle \\
        --cache runs/sweep --threads 2 --table size --table resize ...

``--base [DATASET:]KEY=VALUE`` changes the base recipe (all datasets, or one): ``input_size=560x224``,
``stage_resize=area``, ``feature_strides=4,8,16,32``, ``smoothing_sigma=2``, ``lr=0.002``, ``epochs=30``, ...
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import sys
from pathlib import Path
from typing import Any

from inspector.preset import load_preset
from inspector.tools.sweep import run_variant, score_variant, variant

# Per table: (label, changes) for every dataset, or per dataset name where the values differ.
TABLES: dict[str, Any] = {
    "size": {
        "ksdd": [("224x224 (squashed)", {"input_size": (224, 224)}), ("352x144 (224² pixels)", {"input_size": (352, 144)}),
                 ("560x224 (short side 224)", {"input_size": (560, 224)}), ("640x256 (native)", {"input_size": (640, 256)})],
        "bottle": [("224x224 (short side 224)", {"input_size": (224, 224)}), ("256x256 (native)", {"input_size": (256, 256)})],
    },
    "resize": [("bilinear", {"stage_resize": "bilinear"}), ("area", {"stage_resize": "area"})],
    "stages": [("2,4,8,16", {"feature_strides": (2, 4, 8, 16)}), ("2,4,8,16,32", {"feature_strides": (2, 4, 8, 16, 32)}),
               ("4,8,16,32", {"feature_strides": (4, 8, 16, 32)}), ("4,8,16", {"feature_strides": (4, 8, 16)})],
    "standardize": [("standardised", {"standardize": True}), ("raw (the paper's)", {"standardize": False})],
    "schedule": [("lr 1e-3, 20 epochs", {"lr": 1e-3, "epochs": 20}), ("lr 1e-3, 10 epochs", {"lr": 1e-3, "epochs": 10}),
                 ("lr 1e-3, 40 epochs", {"lr": 1e-3, "epochs": 40}), ("lr 2e-3, 20 epochs", {"lr": 2e-3, "epochs": 20}),
                 ("lr 5e-4, 20 epochs", {"lr": 5e-4, "epochs": 20})],
}
# Scoring is evaluated after the fact on the base model's saved errors: every sigma x pool.
SIGMAS = (0.0, 2.0, 4.0, 8.0)
POOLS = (1, 16, 32, 64)


def parse_value(text: str) -> Any:
    """``560x224`` -> (560, 224); ``4,8,16`` -> (4, 8, 16); numbers, true/false; else the string."""
    if "x" in text and all(p.isdigit() for p in text.split("x")):
        return tuple(int(p) for p in text.split("x"))
    if "," in text:
        return tuple(int(p) for p in text.split(","))
    if text.lower() in ("true", "false"):
        return text.lower() == "true"
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            continue
    return text


def base_changes(items: list[str], dataset: str) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for item in items:
        scope, _, kv = item.rpartition(":")
        if scope and scope != dataset:
            continue
        key, _, value = kv.partition("=")
        out[key] = parse_value(value)
    return out


def rows_of(table: str, dataset: str) -> list[tuple[str, dict[str, Any]]]:
    spec = TABLES[table]
    return spec.get(dataset, []) if isinstance(spec, dict) else spec


def fmt(r: dict[str, Any]) -> str:
    return (f"| {r['image_auroc']:.4f} | {r['pixel_auroc']:.4f} | {r['pixel_aupro']:.4f} | "
            f"{r['train_seconds']:.0f} | {r['final_loss']:.4f} |")


def run_table(table: str, datasets: dict[str, Path], args: argparse.Namespace, out: list[str]) -> list[dict]:
    preset = load_preset(args.config)
    if preset.model.map_strides is not None:  # the sweep scores one map over every stage (tools/sweep.py)
        preset = dataclasses.replace(preset, model=dataclasses.replace(preset.model, map_strides=None))
        print(f"note: {args.config}'s map_strides left out: the sweep draws the map from every stage", file=sys.stderr)
    records = []
    for name, root in datasets.items():
        base = base_changes(args.base, name)
        lines = [f"\n### {table}: {name} (base: {args.config} {json.dumps(base, default=list)})\n",
                 "| value | image AUROC | pixel AUROC | AUPRO | train s | final loss |", "|---|---:|---:|---:|---:|---:|"]
        if table == "scoring":
            v = variant(name, preset, **base)
            run = run_variant(v, args.cache, root, args.threads)
            rows = [(f"sigma {s:g}, pool {q}", run, v, {"sigma": s, "pool": q}) for s in SIGMAS for q in POOLS]
        else:
            rows = []
            for label, changes in rows_of(table, name):
                if args.only and not any(label.startswith(o) for o in args.only):
                    continue
                v = variant(name, preset, **{**base, **changes})
                rows.append((label, run_variant(v, args.cache, root, args.threads), v, {}))
        for label, run, v, scoring in rows:
            r = score_variant(run, v.model, **scoring)
            lines.append(f"| {label} " + fmt(r))
            records.append({"table": table, "dataset": name, "value": label, "key": v.key(), **r})
        print("\n".join(lines), flush=True)
        out += lines
    return records


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", action="append", required=True, metavar="NAME=DIR", help="a dataset (repeat)")
    p.add_argument("--table", action="append", required=True, choices=[*TABLES, "scoring"], help="a table (repeat)")
    p.add_argument("--base", action="append", default=[], metavar="[DATASET:]KEY=VALUE", help="change the base recipe")
    p.add_argument("--config", default="cpu-quick", help="base preset (default cpu-quick)")
    p.add_argument("--cache", type=Path, default=Path("runs/sweep"), help="feature and run cache (default runs/sweep)")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--only", action="append", default=[], metavar="LABEL", help="only the rows whose label starts so")
    p.add_argument("--json", type=Path, help="append the rows as JSON lines to this file")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    datasets = {}
    for item in args.data:
        name, _, root = item.partition("=")
        datasets[name] = Path(root)
    out: list[str] = []
    records: list[dict] = []
    for table in args.table:
        records += run_table(table, datasets, args, out)
    if args.json:
        with args.json.open("a") as f:
            for r in records:
                f.write(json.dumps(r, default=str) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())

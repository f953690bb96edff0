"""Issue bars on the real MVTec AD bottle images (256 px copy). Minutes of CPU: run with `make bars`.

Skips with a reason where ../shared/datasets/mvtec_ad/bottle is absent (users, most machines).
"""

from __future__ import annotations

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

"""Issue 12's bars on the real KolektorSDD images (grayscale commutator strips, 256 x 640, thin cracks).

Tens of minutes of CPU: run with `make bars`. Skips with a reason where ../shared/datasets/ksdd is absent.
Pixel metrics are at the masks' own resolution (640 x 256).
"""

from __future__ import annotations

import json

import pytest

from inspector.bundle import load_checkpoint
from inspector.evaluate.run import evaluate
from inspector.preset import load_preset
from inspector.train.run import train

pytestmark = [pytest.mark.slow, pytest.mark.bars]


def test_cpu_quick_reaches_the_ksdd_bars(ksdd_root, tmp_path):
    r = train("ksdd", ksdd_root, load_preset("cpu-quick"), home=tmp_path, device="cpu", progress=False)
    m = evaluate("ksdd", ksdd_root, home=tmp_path, device="cpu", json_out=tmp_path / "eval.json")
    cfg = load_checkpoint(r.model_path).preset.model
    print(json.dumps({"input_size": list(cfg.size_hw), "train_seconds": r.train_seconds,
                      "cache_seconds": r.cache_seconds, "image_auroc": m["image_auroc"],
                      "pixel_auroc": m["pixel_auroc"], "pixel_aupro": m["pixel_aupro"],
                      "ms_per_image": m["ms_per_image"]}))
    assert cfg.size_hw[0] > cfg.size_hw[1]  # the tall strip is not squashed into a square
    assert m["image_auroc"] >= 0.85
    assert m["pixel_auroc"] >= 0.93

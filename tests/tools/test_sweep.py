"""The recipe sweep: cached features, retrained reconstructor, post-hoc scoring, same figures as the product."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from inspector.evaluate.run import evaluate
from inspector.model.backbone import build_backbone
from inspector.tools.sweep import assemble, run_variant, score_variant, stage_features, variant
from tests.conftest import TINY


def test_cached_stages_assemble_into_the_products_target():
    torch.manual_seed(0)
    images = torch.randn(2, 3, 64, 96)
    feats = stage_features("tf_efficientnet_lite0", images)
    for resize in ("bilinear", "area"):
        cfg = dataclasses.replace(TINY.model, input_size=(64, 96), stage_resize=resize)
        bb, _ = build_backbone(cfg.backbone, cfg.used_strides, resize=resize)
        expect = bb(images)
        got = assemble(feats, cfg)
        assert got.shape == expect.shape == (2, bb.out_channels, 4, 6)
        torch.testing.assert_close(got, expect, atol=2e-2 * float(expect.abs().max()), rtol=1e-2)  # float16 cache


def test_a_sweep_variant_reproduces_inspector_train_and_evaluate(trained, tmp_path):
    # Same preset, same seed, same split: the sweep's figures are the product's own.
    v = variant("cable", TINY)
    run = run_variant(v, tmp_path / "cache", trained["data"], threads=1)
    r = score_variant(run, v.model)
    product = evaluate("cable", trained["data"], home=trained["home"], device="cpu")
    assert r["image_auroc"] == pytest.approx(product["image_auroc"], abs=0.02)
    assert r["pixel_auroc"] == pytest.approx(product["pixel_auroc"], abs=0.01)
    assert r["final_loss"] == pytest.approx(trained["result"].final_loss, rel=0.02)
    # Cached: a second call trains nothing and gives the same maps.
    again = run_variant(v, tmp_path / "cache", trained["data"], threads=1)
    torch.testing.assert_close(again["token_maps"], run["token_maps"])
    smoother = score_variant(run, v.model, sigma=8.0, pool=32)
    assert smoother["smoothing_sigma"] == 8.0 and smoother["pool_size"] == 32


def test_a_split_map_variant_is_refused_not_scored_wrong():
    import pytest

    from inspector.errors import ConfigError
    from inspector.preset import load_preset
    from inspector.tools.sweep import variant

    with pytest.raises(ConfigError, match="map_strides"):
        variant("ksdd", load_preset("cpu-quick"), input_size=(352, 144))
    assert variant("ksdd", load_preset("cpu-quick"), input_size=(352, 144), map_strides=None).model.map_strides is None

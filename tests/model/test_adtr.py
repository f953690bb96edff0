"""Every Table-4 variant builds, trains a few steps and lowers its loss; config checks."""

from __future__ import annotations

import dataclasses

import pytest
import torch
import torch.nn.functional as F

from inspector.errors import ConfigError
from inspector.model.adtr import ModelConfig, create_adtr
from tests.conftest import TINY_MODEL

VARIANTS = {
    "attn+query": {},
    "cnn": {"mixer": "cnn"},
    "w/o attn": {"mixer": "mlp"},
    "w/o query": {"query": False},
    "pixels": {"target": "pixels"},
    "last layer": {"multiscale": False},
}


@pytest.mark.parametrize("name", list(VARIANTS))
def test_variant_trains_and_lowers_loss(name):
    torch.manual_seed(0)
    cfg = dataclasses.replace(TINY_MODEL, **VARIANTS[name])
    model, _ = create_adtr(cfg)
    images = torch.randn(8, 3, *cfg.size_hw)
    target = model.extract(images)
    expect_c = 768 if cfg.target == "pixels" else model.extractor.out_channels
    assert target.shape == (8, expect_c, *cfg.grid_hw)
    opt = torch.optim.AdamW(model.reconstructor.parameters(), lr=3e-3)
    losses = []
    for _ in range(30):
        loss = F.mse_loss(model.reconstructor(target), target)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < 0.8 * losses[0], losses


def test_query_switch_changes_the_decoder_input():
    with_q, _ = create_adtr(dataclasses.replace(TINY_MODEL, query=True))
    without, _ = create_adtr(dataclasses.replace(TINY_MODEL, query=False))
    assert with_q.reconstructor.query_embed is not None
    assert with_q.reconstructor.query_embed.shape == (1, TINY_MODEL.tokens, TINY_MODEL.hidden_dim)
    assert without.reconstructor.query_embed is None


def test_last_layer_uses_one_stage():
    cfg = dataclasses.replace(TINY_MODEL, multiscale=False)
    model, _ = create_adtr(cfg)
    assert cfg.used_strides == (16,)
    assert model.extractor.net.feature_info.reduction() == [16]


def test_default_config_is_the_papers():
    cfg = ModelConfig()
    assert (cfg.hidden_dim, cfg.enc_layers, cfg.dec_layers, cfg.heads, cfg.ffn_dim, cfg.dropout) == (256, 4, 4, 8, 1024, 0.1)
    assert cfg.input_size == 224 and cfg.grid_hw == (14, 14) and cfg.pool_size == 16 and cfg.smoothing_sigma == 0.0


@pytest.mark.parametrize(
    ("changes", "match"),
    [({"input_size": 100}, "multiple of 16"), ({"hidden_dim": 30, "heads": 4}, "divisible"),
     ({"feature_strides": (8, 4)}, "increasing"), ({"feature_strides": (3,)}, "allowed"),
     ({"input_size": (64, 100)}, "multiple of 16"), ({"input_size": (64, 64, 64)}, r"\[H, W\]"),
     ({"input_size": (32, 64), "pool_size": 48}, "shorter side"),
     ({"feature_strides": (2, 4, 8, 16, 32), "map_strides": (4, 8)}, "finest of the used stages"),
     ({"map_strides": (2, 4, 8, 16, 32)}, "finest of the used stages"),
     ({"map_strides": (2,), "target": "pixels"}, "target: features"), ({"map_strides": ()}, "finest")],
)
def test_invalid_model_config(changes, match):
    with pytest.raises(ConfigError, match=match):
        dataclasses.replace(ModelConfig(), **changes).validate("test.yaml")


def test_standardisation_is_fitted_on_training_targets_and_saved():
    cfg = dataclasses.replace(TINY_MODEL, standardize=True)
    model, _ = create_adtr(cfg)
    images = torch.randn(6, 3, *cfg.size_hw)
    raw = model.extractor(images)
    model.set_target_stats(raw)
    z = model.extract(images)
    torch.testing.assert_close(z.mean(dim=(0, 2, 3)), torch.zeros(z.shape[1]), atol=1e-4, rtol=0)
    torch.testing.assert_close(z.std(dim=(0, 2, 3)), torch.ones(z.shape[1]), atol=1e-3, rtol=0)
    assert {"target_mean", "target_std"} <= set(model.state_dict())
    off, _ = create_adtr(dataclasses.replace(TINY_MODEL, standardize=False))
    off.set_target_stats(raw)
    torch.testing.assert_close(off.extract(images), off.extractor(images))


@pytest.mark.parametrize("name", list(VARIANTS))
def test_non_square_input_gives_a_non_square_token_grid(name):
    # 32 x 80 px -> 2 rows x 5 columns: embeddings, the MLP mixer's token count and the CNN mixer's grid
    # all follow the grid, and the reconstruction keeps the target's shape.
    cfg = dataclasses.replace(TINY_MODEL, input_size=(32, 80), **VARIANTS[name])
    assert cfg.grid_hw == (2, 5) and cfg.tokens == 10
    model, _ = create_adtr(cfg)
    target, recon = model(torch.randn(3, 3, 32, 80))
    assert target.shape[-2:] == (2, 5) and recon.shape == target.shape
    assert model.reconstructor.pos_embed.shape == (1, 10, cfg.hidden_dim)


def test_input_size_loads_as_int_list_or_auto():
    from inspector.config import load_dataclass

    assert load_dataclass(ModelConfig, {"input_size": 224}).size_hw == (224, 224)
    assert load_dataclass(ModelConfig, {"input_size": [560, 224]}).size_hw == (560, 224)
    auto = load_dataclass(ModelConfig, {"input_size": "auto"})
    with pytest.raises(ConfigError, match="resolved from the training images"):
        _ = auto.size_hw
    with pytest.raises(ConfigError, match="input_size"):
        load_dataclass(ModelConfig, {"input_size": "square"}, "p.yaml")
    with pytest.raises(ConfigError, match="above the maximum"):
        load_dataclass(ModelConfig, {"input_size": [224, 2048]}, "p.yaml")


def test_map_strides_take_the_fine_stages_channels():
    cfg = dataclasses.replace(ModelConfig(), feature_strides=(2, 4, 8, 16, 32), map_strides=(2, 4, 8, 16),
                              hidden_dim=32, heads=4, ffn_dim=64, enc_layers=1, dec_layers=1, input_size=64)
    cfg.validate("test")
    model, _ = create_adtr(cfg)
    stages = model.extractor.stage_channels
    assert len(stages) == 5 and model.map_channels == sum(stages[:4]) < model.extractor.out_channels
    assert create_adtr(dataclasses.replace(cfg, map_strides=None))[0].map_channels is None
    assert create_adtr(dataclasses.replace(cfg, map_strides=cfg.feature_strides))[0].map_channels is None  # = all

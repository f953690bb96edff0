"""Shared fixtures: a tiny synthetic product and a tiny trained model, made once per session.

Fast tests use these (64 px images, a 32-dim 1+1-layer ADTR), never the real data. Tests that need
``../shared/datasets/mvtec_ad/bottle`` use ``bottle_root`` and skip with a reason when it is absent.
"""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path

import pytest
import torch

from inspector.model.adtr import ModelConfig
from inspector.preset import Preset, TrainConfig

torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))

REPO = Path(__file__).resolve().parents[1]
BOTTLE = Path(os.environ.get("INSPECTOR_BOTTLE", REPO.parent / "shared" / "datasets" / "mvtec_ad" / "bottle"))
KSDD = Path(os.environ.get("INSPECTOR_KSDD", REPO.parent / "shared" / "datasets" / "ksdd"))

TINY_MODEL = ModelConfig(
    feature_strides=(4, 8, 16),
    input_size=64,
    hidden_dim=32,
    enc_layers=1,
    dec_layers=1,
    heads=2,
    ffn_dim=64,
    dropout=0.0,
    pool_size=16,
    standardize=True,
)
TINY_TRAIN = TrainConfig(epochs=30, batch_size=8, lr=3e-3, grad_clip=1.0, val_fraction=0.2, checkpoint_every=10)
TINY = Preset(model=TINY_MODEL, train=TINY_TRAIN)


def tiny_preset(**model_changes) -> Preset:
    """The tiny preset with some model fields changed (ablation variants)."""
    return dataclasses.replace(TINY, model=dataclasses.replace(TINY_MODEL, **model_changes))


@pytest.fixture(scope="session")
def synthetic_root(tmp_path_factory) -> Path:
    """A small synthetic 'cable' product in MVTec layout: 40 train, 8 good + 2 per defect test, 64 px."""
    from inspector.data.synthetic import write_product

    return write_product(tmp_path_factory.mktemp("synthetic") / "cable", n_train=40, n_test_good=8,
                         n_test_per_defect=2, size=64, seed=1)


@pytest.fixture(scope="session")
def trained(tmp_path_factory, synthetic_root) -> dict:
    """A tiny model trained on ``synthetic_root``: {'home', 'product', 'data', 'result'}."""
    from inspector.train.run import train

    home = tmp_path_factory.mktemp("home")
    result = train("cable", synthetic_root, TINY, home=home, device="cpu", progress=False)
    return {"home": home, "product": "cable", "data": synthetic_root, "result": result}


@pytest.fixture(scope="session")
def bottle_root() -> Path:
    """The real MVTec AD bottle category, or skip."""
    if not (BOTTLE / "train" / "good").is_dir():
        pytest.skip(f"real data not found at {BOTTLE} (set INSPECTOR_BOTTLE); users without ../shared skip this")
    return BOTTLE


@pytest.fixture(scope="session")
def ksdd_root() -> Path:
    """The real KolektorSDD images in MVTec layout (256 x 640), or skip."""
    if not (KSDD / "train" / "good").is_dir():
        pytest.skip(f"real data not found at {KSDD} (set INSPECTOR_KSDD); users without ../shared skip this")
    return KSDD

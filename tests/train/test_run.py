"""Training on synthetic data: the model separates defects, checkpoints round-trip and resume."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from inspector.bundle import build_model, load_checkpoint, model_path
from inspector.errors import CheckpointError
from inspector.evaluate.run import evaluate
from inspector.train.run import lr_at, train
from tests.conftest import TINY


def test_tiny_model_separates_defects_from_good(trained):
    r = evaluate(trained["product"], trained["data"], home=trained["home"], device="cpu")
    # A 32-dim model trained for seconds: clearly above chance, not a paper figure.
    assert r["image_auroc"] > 0.7, r
    assert r["pixel_auroc"] > 0.85, r
    assert 0 < r["pixel_aupro"] <= 1
    assert set(r["per_type"]) >= {"missing_wire", "scratch"}


def test_checkpoint_describes_itself_and_round_trips(trained):
    path = model_path(trained["home"], "cable")
    ckpt = load_checkpoint(path)  # weights_only=True inside
    assert ckpt.epoch == TINY.train.epochs and len(ckpt.loss_history) == TINY.train.epochs
    assert ckpt.loss_history[-1] < ckpt.loss_history[0]
    assert ckpt.backbone.name == "tf_efficientnet_lite0" and len(ckpt.backbone.weights_sha256) == 64
    assert len(ckpt.data.train) == 32 and len(ckpt.data.holdout) == 8
    assert not set(ckpt.fingerprints("train")) & set(ckpt.fingerprints("holdout"))
    assert ckpt.preset == TINY
    model = build_model(ckpt)
    x = torch.randn(1, 3, 64, 64)
    a = model(x)
    b = build_model(load_checkpoint(path))(x)
    torch.testing.assert_close(a.reconstruction, b.reconstruction)


def test_resume_continues_from_the_checkpoint(trained, tmp_path):
    ckpt = model_path(trained["home"], "cable").parent / "checkpoints" / "epoch_00010.pt"
    assert ckpt.is_file()
    r = train("cable", trained["data"], TINY, home=tmp_path, device="cpu", resume=ckpt, progress=False)
    resumed = load_checkpoint(r.model_path)
    assert resumed.epoch == TINY.train.epochs
    assert len(resumed.loss_history) == TINY.train.epochs
    assert resumed.loss_history[:10] == load_checkpoint(ckpt).loss_history


def test_resume_refuses_a_different_model(trained, tmp_path):
    ckpt = model_path(trained["home"], "cable")
    other = dataclasses.replace(TINY, model=dataclasses.replace(TINY.model, hidden_dim=64))
    with pytest.raises(CheckpointError, match="model config differs"):
        train("cable", trained["data"], other, home=tmp_path, device="cpu", resume=ckpt, progress=False)


def test_corrupt_checkpoint_is_an_error(tmp_path):
    p = tmp_path / "model.pt"
    p.write_bytes(b"junk")
    with pytest.raises(CheckpointError, match="cannot load checkpoint"):
        load_checkpoint(p)
    with pytest.raises(CheckpointError, match="run `inspector train`"):
        load_checkpoint(tmp_path / "absent.pt")


def test_lr_schedule_drops_at_80_percent():
    assert lr_at(0, 1e-3, 100, 0, 0.8, 0.1) == 1e-3
    assert lr_at(79, 1e-3, 100, 0, 0.8, 0.1) == 1e-3
    assert lr_at(80, 1e-3, 100, 0, 0.8, 0.1) == pytest.approx(1e-4)
    assert lr_at(0, 1e-3, 100, 4, 0.8, 0.1) == pytest.approx(2.5e-4)

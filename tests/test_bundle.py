"""The product bundle on disk: the typed checkpoint, loaded strictly; a bundle written by older code still loads,
serves and writes back unchanged."""

from __future__ import annotations

import dataclasses
import re
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from inspector.bundle import STORED, build_model, load_checkpoint, save_checkpoint
from inspector.errors import CheckpointError
from inspector.runtime import open_backend
from inspector.runtime.common import open_bundle
from inspector.runtime.onnxruntime_backend import OnnxRuntimeBackend

FIXTURE = Path(__file__).resolve().parent / "fixtures" / "bundle_v1"


@pytest.fixture
def v1_home(tmp_path) -> Path:
    """A copy of the bundle written at commit 1fe5169 (tests/fixtures/bundle_v1/README.md)."""
    return Path(shutil.copytree(FIXTURE, tmp_path / "home"))


def test_v1_checkpoint_loads(v1_home):
    ckpt = load_checkpoint(v1_home / "engines" / "tiny" / "model.pt")
    assert ckpt.product == "tiny" and ckpt.epoch == 3 and ckpt.preset.model.target == "pixels"
    assert len(ckpt.fingerprints("train")) + len(ckpt.fingerprints("holdout")) == 12
    assert build_model(ckpt).cfg.hidden_dim == 16


def _backend(name: str, home: Path):
    if name == "torch":
        return open_backend("torch", home, "tiny", device="cpu", precision="fp32")
    # model.onnx is the only graph the fixture keeps: the standard one.
    return OnnxRuntimeBackend(open_bundle(home, "tiny"), device="cpu", precision="fp32", graph="standard")


@pytest.mark.parametrize("backend", ["torch", "onnxruntime"])
def test_v1_bundle_serves(v1_home, backend):
    with _backend(backend, v1_home) as b:
        frames = np.random.default_rng(0).integers(0, 256, (3, 64, 64, 3), dtype=np.uint8)
        r = b.infer(frames)
    assert r.score.shape == (3,) and r.anomaly_map.shape == (3, 64, 64)
    assert np.isfinite(r.score).all() and np.isfinite(r.anomaly_map).all()


def test_a_v1_checkpoint_writes_back_unchanged(v1_home, tmp_path):
    path = v1_home / "engines" / "tiny" / "model.pt"
    again = tmp_path / "again.pt"
    save_checkpoint(again, load_checkpoint(path))
    old, new = (torch.load(p, weights_only=True) for p in (path, again))
    assert list(new) == list(old) == list(STORED)
    for key in STORED:
        if key == "state_dict":
            assert list(new[key]) == list(old[key]) and all(torch.equal(new[key][k], old[key][k]) for k in old[key])
        elif key != "optimizer":
            assert new[key] == old[key] and type(new[key]) is type(old[key]), key
    assert new["optimizer"]["param_groups"] == old["optimizer"]["param_groups"]
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []  # no temporary left


def _payload(v1_home) -> dict:
    return torch.load(v1_home / "engines" / "tiny" / "model.pt", weights_only=True)


def test_a_checkpoint_missing_a_key_names_the_file_and_the_key(v1_home, tmp_path):
    payload = _payload(v1_home)
    del payload["loss_history"]
    torch.save(payload, tmp_path / "a.pt")
    with pytest.raises(CheckpointError, match=re.escape(f"{tmp_path / 'a.pt'}: missing key(s) ['loss_history']")):
        load_checkpoint(tmp_path / "a.pt")
    payload = _payload(v1_home)
    del payload["data"]["holdout"]
    torch.save(payload, tmp_path / "b.pt")
    with pytest.raises(CheckpointError, match=re.escape(f"{tmp_path / 'b.pt'}: missing key(s) ['data.holdout']")):
        load_checkpoint(tmp_path / "b.pt")


def test_a_checkpoint_with_an_unknown_key_names_the_file_and_the_key(v1_home, tmp_path):
    torch.save({**_payload(v1_home), "ema_state": {}}, tmp_path / "a.pt")
    with pytest.raises(CheckpointError, match=re.escape(f"{tmp_path / 'a.pt'}: unknown key(s) ['ema_state']")):
        load_checkpoint(tmp_path / "a.pt")
    payload = _payload(v1_home)
    payload["preset"]["model"]["depth"] = 3
    torch.save(payload, tmp_path / "b.pt")
    with pytest.raises(CheckpointError, match=re.escape("unknown key(s) ['preset.model.depth']")):
        load_checkpoint(tmp_path / "b.pt")
    torch.save({**_payload(v1_home), "path": "elsewhere"}, tmp_path / "c.pt")  # not a stored field
    with pytest.raises(CheckpointError, match=re.escape("unknown key(s) ['path']")):
        load_checkpoint(tmp_path / "c.pt")


def test_a_non_square_tiled_model_config_round_trips(v1_home, tmp_path):
    ckpt = load_checkpoint(v1_home / "engines" / "tiny" / "model.pt")
    model = dataclasses.replace(ckpt.preset.model, input_size=(32, 80), tile_size=(128, 320), tile_overlap=16,
                                stage_resize="area")
    strip = dataclasses.replace(ckpt, preset=dataclasses.replace(ckpt.preset, model=model))
    save_checkpoint(tmp_path / "strip.pt", strip)
    stored = torch.load(tmp_path / "strip.pt", weights_only=True)["preset"]["model"]
    assert stored["input_size"] == [32, 80] and stored["tile_size"] == [128, 320] and stored["stage_resize"] == "area"
    again = load_checkpoint(tmp_path / "strip.pt")
    assert again.preset.model == model and again.preset.model.size_hw == (32, 80)
    # The v1 model uses none of the fields added since: they are not stored (read back as their defaults).
    assert not {"stage_resize", "tile_size", "tile_overlap", "map_strides"} & set(_payload(v1_home)["preset"]["model"])
    assert ckpt.preset.model.tile_hw is None and ckpt.preset.model.stage_resize == "bilinear"


def test_map_strides_round_trip(v1_home, tmp_path):
    ckpt = load_checkpoint(v1_home / "engines" / "tiny" / "model.pt")
    used = ckpt.preset.model.used_strides
    model = dataclasses.replace(ckpt.preset.model, target="features", map_strides=tuple(used[:-1]))
    model.validate("test")
    split = dataclasses.replace(ckpt, preset=dataclasses.replace(ckpt.preset, model=model))
    save_checkpoint(tmp_path / "split.pt", split)
    assert torch.load(tmp_path / "split.pt", weights_only=True)["preset"]["model"]["map_strides"] == list(model.map_strides)
    assert load_checkpoint(tmp_path / "split.pt").preset.model == model


def test_a_checkpoint_never_stores_auto_input_size(v1_home, tmp_path):
    ckpt = load_checkpoint(v1_home / "engines" / "tiny" / "model.pt")
    auto = dataclasses.replace(ckpt, preset=dataclasses.replace(
        ckpt.preset, model=dataclasses.replace(ckpt.preset.model, input_size="auto")))
    with pytest.raises(CheckpointError, match=re.escape("'preset.model.input_size' is 'auto'")):
        save_checkpoint(tmp_path / "a.pt", auto)
    assert not (tmp_path / "a.pt").exists()
    payload = _payload(v1_home)
    payload["preset"]["model"]["input_size"] = "auto"
    torch.save(payload, tmp_path / "b.pt")
    with pytest.raises(CheckpointError, match=re.escape(f"{tmp_path / 'b.pt'}: key 'preset.model.input_size'")):
        load_checkpoint(tmp_path / "b.pt")

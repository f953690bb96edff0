"""A tiled product exported for a 2048 x 2048 sheet: one ONNX graph cuts, scores and stitches the tiles, and
the torch and onnxruntime backends agree with the torch graph."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from inspector.bundle import build_inspection_model, load_checkpoint, model_path, save_checkpoint
from inspector.export.run import ExportOptions, export
from inspector.manifest import load_manifest
from inspector.model.graph import GraphSpec
from inspector.runtime import open_backend

SHEET = (2048, 2048)


@pytest.fixture(scope="module")
def tiled_home(trained, tmp_path_factory):
    # The tiny 64 px model, told to cut frames into 512 px tiles overlapping by >= 32 px (5 x 5 per sheet).
    ckpt = load_checkpoint(model_path(trained["home"], "cable"))
    model = dataclasses.replace(ckpt.preset.model, tile_size=512, tile_overlap=32)
    home = tmp_path_factory.mktemp("tiled")
    save_checkpoint(model_path(home, "sheet"),
                    dataclasses.replace(ckpt, product="sheet", preset=dataclasses.replace(ckpt.preset, model=model)))
    export("sheet", home, ExportOptions(frame=SHEET, max_batch=2, ort_graph=False))
    return home


def _sheet_frames(n: int) -> np.ndarray:
    rng = np.random.default_rng(0)
    frames = np.full((n, *SHEET, 3), 90, np.uint8)
    frames += rng.integers(0, 20, frames.shape, dtype=np.uint8)
    frames[1, 1200:1260, 300:1500] = 250  # a long bright scratch across tiles on frame 1
    return frames


def test_manifest_and_default_map_size(tiled_home):
    m = load_manifest(tiled_home / "engines" / "sheet")
    assert m.frame_shape == (2048, 2048) and m.model_size == (64, 64)
    assert m.mask_shape == (256, 256)  # the whole sheet at the model's resolution: 2048 * 64 / 512
    assert m.verification.checks["fp32"].max_map_diff_rel <= 1e-3
    tiled = load_checkpoint(model_path(tiled_home, "sheet")).preset.model
    assert (tiled.tile_size, tiled.tile_overlap) == (512, 32)  # the tiling round-trips through the checkpoint


@pytest.mark.parametrize("backend", ["onnxruntime", "torch"])
def test_backends_score_the_whole_sheet(tiled_home, backend):
    frames = _sheet_frames(2)
    graph = build_inspection_model(load_checkpoint(model_path(tiled_home, "sheet")), GraphSpec(SHEET, None, (256, 256)))
    with torch.no_grad():
        ref_s, ref_m = (t.numpy() for t in graph(torch.from_numpy(frames)))
    with open_backend(backend, tiled_home, "sheet", device="cpu", threads=1) as b:
        r = b.infer(frames)
    assert r.score.shape == (2,) and r.anomaly_map.shape == (2, 256, 256)
    span = ref_m.max() - ref_m.min()
    assert np.abs(r.anomaly_map - ref_m).max() <= 1e-3 * span
    np.testing.assert_allclose(r.score, ref_s, rtol=1e-3)
    # The scratch is where the stitched map is highest on frame 1 (rows 1200-1260 -> 150-157 at 1/8).
    y, x = np.unravel_index(int(r.anomaly_map[1].argmax()), (256, 256))
    assert 140 <= y <= 168 and 30 <= x <= 195, (y, x)
    assert r.score[1] > r.score[0]

"""A part that is not square, through the whole chain: train, evaluate, export, torch and onnxruntime backends.

The synthetic product here is a strip of two cable parts side by side, 64 x 128 px (H x W), trained at
its own aspect (64 x 128 -> a 4 x 8 token grid), never squashed into a square.
"""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import onnx
import pytest
import torch

from inspector.bundle import build_inspection_model, load_checkpoint, model_path
from inspector.evaluate.run import evaluate
from inspector.export.run import ExportOptions, export
from inspector.manifest import load_manifest
from inspector.model.graph import GraphSpec
from inspector.runtime import open_backend
from tests.conftest import tiny_preset
from tests.export_support import labelled_frames

STRIP = (64, 128)


@pytest.fixture(scope="module")
def strip_root(tmp_path_factory):
    from inspector.data.synthetic import write_product

    return write_product(tmp_path_factory.mktemp("strip") / "strip", n_train=30, n_test_good=6, n_test_per_defect=2,
                         size=64, defects=("missing_wire", "spot", "scratch"), seed=3, columns=2)


@pytest.fixture(scope="module")
def strip_home(strip_root, tmp_path_factory):
    from inspector.train.run import train

    home = tmp_path_factory.mktemp("strip_home")
    train("strip", strip_root, tiny_preset(input_size=STRIP), home=home, device="cpu", progress=False)
    export("strip", home, ExportOptions(max_batch=3))
    return home


def test_checkpoint_keeps_the_shape(strip_home):
    ckpt = load_checkpoint(model_path(strip_home, "strip"))
    cfg = ckpt.preset.model
    assert cfg.input_size == STRIP and cfg.grid_hw == (4, 8)
    assert ckpt.state_dict["reconstructor.pos_embed"].shape[1] == 32
    assert torch.load(ckpt.path, weights_only=True)["preset"]["model"]["input_size"] == list(STRIP)


def test_evaluate_at_the_masks_resolution(strip_home, strip_root):
    r = evaluate("strip", strip_root, home=strip_home, device="cpu")
    assert r["image_auroc"] > 0.6 and r["pixel_auroc"] > 0.8, r


def test_export_records_height_and_width(strip_home):
    bundle = strip_home / "engines" / "strip"
    m = load_manifest(bundle)
    assert m.model_size == STRIP and m.mask_shape == STRIP and m.frame_shape == STRIP
    assert json.loads((bundle / "manifest.json").read_text())["model_size"] == list(STRIP)
    dims = [d.dim_value for d in onnx.load(str(bundle / "model.onnx")).graph.input[0].type.tensor_type.shape.dim]
    assert dims[1:] == [64, 128, 3]


@pytest.mark.parametrize("backend", ["torch", "onnxruntime"])
def test_backends_agree_with_the_graph(strip_home, strip_root, backend):
    frames, labels = labelled_frames(strip_root)
    ckpt = load_checkpoint(model_path(strip_home, "strip"))
    graph = build_inspection_model(ckpt, GraphSpec(STRIP, None, STRIP))
    with torch.no_grad():
        ref_s, ref_m = (t.numpy() for t in graph(torch.from_numpy(frames[:3])))
    with open_backend(backend, strip_home, "strip", device="cpu", threads=1) as b:
        assert b.frame_shape == STRIP
        r = b.infer(frames[:3])
    assert r.anomaly_map.shape == (3, *STRIP)
    span = ref_m.max() - ref_m.min()
    assert np.abs(r.anomaly_map - ref_m).max() <= 1e-3 * span
    np.testing.assert_allclose(r.score, ref_s, rtol=1e-3, atol=1e-4 * span)


def test_a_defect_lights_up_its_own_half(strip_home, strip_root):
    # The defect sits in one of the two parts: the map's peak is on that side of the strip.
    from inspector.data.dataset import load_dataset, read_image, read_mask

    ds = load_dataset(strip_root)
    bad = [s for s in ds.test if s.label == 1 and s.defect_type == "missing_wire"]
    frames = np.stack([read_image(s.path) for s in bad])
    with open_backend("onnxruntime", strip_home, "strip", device="cpu", threads=1) as b:
        maps = b.infer(frames).anomaly_map
    for s, m in zip(bad, maps, strict=True):
        mask = read_mask(s.mask_path, STRIP)
        side = int(mask[:, 64:].sum() > mask[:, :64].sum())
        halves = (m[:, :64].max(), m[:, 64:].max())
        assert int(np.argmax(halves)) == side, (s.path.name, halves)


def test_auto_input_size_comes_from_the_training_images(strip_root, tmp_path):
    from inspector.train.run import train

    preset = tiny_preset(input_size="auto")
    preset = dataclasses.replace(preset, train=dataclasses.replace(preset.train, epochs=1))
    r = train("strip", strip_root, preset, home=tmp_path, device="cpu", progress=False)
    cfg = load_checkpoint(r.model_path).preset.model
    assert cfg.input_size == (160, 320)  # the 1:2 strip at 224² pixels, aspect kept

"""benchmarks/peers.py: its pure parts in the normal suite; one tiny end-to-end run where .venv-peers exists."""

from __future__ import annotations

import argparse
import json
import subprocess
from pathlib import Path
from types import SimpleNamespace

import cv2
import numpy as np
import pytest

from benchmarks.peers import (
    lite0_layers,
    mask_at_own_size,
    matvec_update_distances,
    parse_args,
    parse_size,
    resize_to,
    score_metrics,
)
from inspector.errors import DataError

REPO = Path(__file__).resolve().parents[2]
PEERS_PYTHON = REPO / ".venv-peers" / "bin" / "python"


def test_parse_size_takes_hxw_or_one_side_and_refuses_the_rest():
    assert parse_size("256x256") == (256, 256)
    assert parse_size("560x224") == (560, 224)
    assert parse_size("256") == (256, 256)
    for bad in ("16x16", "256x250", "wide", "256x", "256x256x3"):
        with pytest.raises(argparse.ArgumentTypeError):
            parse_size(bad)


def test_parse_args_defaults_and_output_name():
    args = parse_args(["--data", "/d/ksdd", "--model", "padim", "--size", "560x224"])
    assert args.size == (560, 224) and args.norm == "backbone" and args.n_features == 100
    assert args.out == Path("runs/peers/ksdd_padim_560x224_backbone.json")
    assert parse_args(["--data", "/d/bottle", "--model", "patchcore"]).size == (256, 256)
    with pytest.raises(SystemExit):
        parse_args(["--data", "/d", "--model", "stfpm"])
    with pytest.raises(SystemExit):
        parse_args(["--data", "/d", "--model", "patchcore", "--coreset-ratio", "0"])


def test_lite0_layers_sit_at_the_strides_of_anomalibs_default_layers():
    # PaDiM's resnet18 layer1..3 are strides 4, 8, 16; PatchCore's wide_resnet50_2 layer2+3 are 8, 16.
    assert lite0_layers("padim") == ("blocks.1", "blocks.2", "blocks.4")
    assert lite0_layers("patchcore") == ("blocks.2", "blocks.4")


def test_resize_to_gives_the_masks_shape():
    amap = np.arange(32, dtype=np.float32).reshape(8, 4)
    big = resize_to(amap, (32, 16))
    assert big.shape == (32, 16)
    assert amap.min() <= big.min() and big.max() <= amap.max()
    assert resize_to(amap, (8, 4)) is amap


def _toy(shape=(32, 16)):
    """Two good and two defective images; masks at ``shape``, maps at a quarter of it, peaking on the defect."""
    masks = [np.zeros(shape, bool) for _ in range(4)]
    masks[2][8:16, 4:8] = True
    masks[3][20:28, 8:12] = True
    maps = [cv2.resize(m.astype(np.float32), (shape[1] // 4, shape[0] // 4), interpolation=cv2.INTER_AREA) for m in masks]
    return np.array([0, 0, 1, 1]), np.array([0.1, 0.2, 0.9, 0.8]), maps, masks


def test_score_metrics_at_the_masks_own_resolution():
    labels, scores, maps, masks = _toy()
    r = score_metrics(labels, scores, maps, masks)
    assert r["mask_shape"] == [32, 16]  # the masks', not the maps' (8 x 4)
    assert r["image_auroc"] == 1.0
    assert r["pixel_auroc"] > 0.99 and r["pixel_aupro"] > 0.9
    inverted = score_metrics(labels, -scores, [-m for m in maps], masks)
    assert inverted["image_auroc"] == 0.0 and inverted["pixel_auroc"] < 0.5  # reported, never flipped


def test_score_metrics_refuses_mixed_shapes_and_counts():
    labels, scores, maps, masks = _toy()
    masks[0] = np.zeros((16, 16), bool)
    with pytest.raises(DataError, match="several shapes"):
        score_metrics(labels, scores, maps, masks)
    with pytest.raises(DataError, match="expected one each"):
        score_metrics(labels, scores[:3], maps, masks)


def test_mask_at_own_size_reads_without_resizing(tmp_path):
    img, mask = tmp_path / "001.png", tmp_path / "001_mask.png"
    cv2.imwrite(str(img), np.zeros((40, 24), np.uint8))
    m = np.zeros((40, 24), np.uint8)
    m[5:9, 3:6] = 255
    cv2.imwrite(str(mask), m)
    got = mask_at_own_size(1, str(mask), str(img))
    assert got.shape == (40, 24) and got.dtype == bool and got.sum() == 12
    assert mask_at_own_size(0, None, str(img)).shape == (40, 24) and not mask_at_own_size(0, None, str(img)).any()
    with pytest.raises(DataError, match="no mask"):
        mask_at_own_size(1, None, str(img))


def test_matvec_step_gives_anomalibs_distances_in_the_projected_space():
    import torch

    # What anomalib's KCenterGreedy holds: the embedding (N, D), its projection P (K, D), features = E P'.
    g = torch.Generator().manual_seed(0)
    emb = torch.randn(500, 12, generator=g)
    proj = torch.randn(30, 12, generator=g) / 30 ** 0.5
    sampler = SimpleNamespace(embedding=emb, features=emb @ proj.T, min_distances=None,
                              model=SimpleNamespace(sparse_random_matrix=proj))
    matvec_update_distances(sampler, torch.tensor(7))
    direct = torch.linalg.norm(sampler.features - sampler.features[7], dim=1, keepdim=True)  # anomalib's step
    assert sampler.min_distances.shape == (500, 1)
    far = torch.ones(500, dtype=torch.bool)
    far[7] = False
    # The centre's own distance is sqrt of a rounding error (~1e-3, never the farthest); the rest agree.
    assert torch.allclose(sampler.min_distances[far], direct[far], rtol=0, atol=1e-5)
    assert sampler.min_distances[7, 0] < 1e-2
    matvec_update_distances(sampler, torch.tensor(42))  # a second centre: the running minimum
    both = torch.minimum(direct, torch.linalg.norm(sampler.features - sampler.features[42], dim=1, keepdim=True))
    far[42] = False
    assert torch.allclose(sampler.min_distances[far], both[far], rtol=0, atol=1e-5)


def _tiny_mvtec(root: Path) -> Path:
    rng = np.random.default_rng(0)
    for d in ("train/good", "test/good", "test/crack", "ground_truth/crack"):
        (root / d).mkdir(parents=True)

    def img():
        return (120 + rng.normal(0, 8, (96, 64))).clip(0, 255).astype(np.uint8)

    for i in range(8):
        cv2.imwrite(str(root / f"train/good/{i:03d}.png"), img())
    for i in range(3):
        cv2.imwrite(str(root / f"test/good/{i:03d}.png"), img())
        a, m = img(), np.zeros((96, 64), np.uint8)
        a[20 + 20 * i:32 + 20 * i, 10:22] = 250
        m[20 + 20 * i:32 + 20 * i, 10:22] = 255
        cv2.imwrite(str(root / f"test/crack/{i:03d}.png"), a)
        cv2.imwrite(str(root / f"ground_truth/crack/{i:03d}_mask.png"), m)
    return root


@pytest.mark.slow
@pytest.mark.skipif(not PEERS_PYTHON.exists(), reason="no .venv-peers (make peers): anomalib is not installed")
def test_anomalib_padim_runs_with_inspectors_lite0(tmp_path):
    data = _tiny_mvtec(tmp_path / "tiny")
    out = tmp_path / "r.json"
    proc = subprocess.run(
        [str(PEERS_PYTHON), str(REPO / "benchmarks" / "peers.py"), "--data", str(data), "--model", "padim",
         "--size", "64x64", "--threads", "1", "--batch", "4", "--out", str(out)],
        capture_output=True, text=True, timeout=600, cwd=REPO, env={"PATH": "/usr/bin:/bin", "OMP_NUM_THREADS": "1"},
    )
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    r = json.loads(out.read_text())
    assert r["weights"]["kind"] == "lite-package" and r["weights"]["max_abs_diff_vs_inspector"] == 0.0
    assert r["metrics"]["mask_resolution"]["mask_shape"] == [96, 64]
    assert r["metrics"]["input_resolution"]["mask_shape"] == [64, 64]
    # Our metrics at the input size and anomalib's own see the same maps and masks (batches of 4: the last
    # one holds good images only, which anomalib collates with mask_path None).
    ours, theirs = r["metrics"]["input_resolution"], r["metrics"]["anomalib"]
    assert abs(ours["image_auroc"] - theirs["image_AUROC"]) < 1e-6
    assert abs(ours["pixel_auroc"] - theirs["pixel_AUROC"]) < 1e-4

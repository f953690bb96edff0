"""`inspector visualize`: token labelling, balanced sampling, and the t-SNE outputs of a tiny trained model."""

from __future__ import annotations

import csv
import json

import cv2
import numpy as np
import pytest

from inspector.cli import main
from inspector.errors import ConfigError, DataError
from inspector.tools.visualize import (
    ANOMALY,
    EXCLUDED,
    NORMAL,
    reduce_pca,
    sample_balanced,
    token_labels,
    visualize,
)


def test_token_labels_follow_the_half_footprint_rule():
    mask = np.zeros((64, 64), bool)
    mask[0:16, 0:8] = True  # token (0, 0): exactly 50 % covered -> anomaly
    mask[0:16, 16:23] = True  # token (0, 1): 7/16 covered -> excluded
    mask[16:32, 16:32] = True  # token (1, 1): fully covered -> anomaly
    lab = token_labels(mask, (4, 4), 0.5)
    assert lab[0, 0] == ANOMALY and lab[1, 1] == ANOMALY and lab[0, 1] == EXCLUDED
    assert (lab == ANOMALY).sum() == 2 and (lab == EXCLUDED).sum() == 14
    assert (token_labels(None, (4, 4), 0.5) == NORMAL).all()
    # A non-square grid: 2 rows x 5 columns of tokens over a 32 x 80 mask.
    wide = np.zeros((32, 80), bool)
    wide[16:32, 64:80] = True
    lab = token_labels(wide, (2, 5), 0.5)
    assert lab.shape == (2, 5) and lab[1, 4] == ANOMALY and (lab == ANOMALY).sum() == 1


def test_sampling_is_balanced_seeded_and_refuses_too_few():
    labels = np.array([NORMAL] * 500 + [ANOMALY] * 100)
    a = sample_balanced(labels, 120, 0.5, seed=7)
    assert len(a) == len(set(a.tolist())) == 120 and (labels[a] == ANOMALY).sum() == 60
    assert np.array_equal(a, sample_balanced(labels, 120, 0.5, seed=7))
    assert not np.array_equal(a, sample_balanced(labels, 120, 0.5, seed=8))
    assert (labels[sample_balanced(labels, 100, 0.25, seed=0)] == ANOMALY).sum() == 25
    with pytest.raises(DataError, match="100 anomalous"):
        sample_balanced(labels, 600, 0.5, seed=0)


def test_pca_step_keeps_low_rank_geometry_and_can_be_switched_off():
    rng = np.random.default_rng(3)
    vectors = (rng.normal(size=(200, 3)) @ rng.normal(size=(3, 40))).astype(np.float32)  # rank 3 in 40-D
    reduced, kept = reduce_pca(vectors, 3)
    assert reduced.shape == (200, 3) and kept == pytest.approx(1.0, abs=1e-6)

    def dist(x):
        return np.linalg.norm(x[:, None] - x[None], axis=-1)

    np.testing.assert_allclose(dist(reduced), dist(vectors), rtol=1e-3, atol=1e-3)
    noisy = vectors + rng.normal(scale=3.0, size=vectors.shape).astype(np.float32)
    assert 0.0 < reduce_pca(noisy, 3)[1] < 0.99
    for dims in (0, 40, 500):  # off, or nothing to reduce
        same, share = reduce_pca(vectors, dims)
        assert same is vectors and share == 1.0
    flat = np.ones((10, 8), np.float32)  # no variance: the share is 1.0, never NaN
    assert reduce_pca(flat, 2)[1] == 1.0
    with pytest.raises(ConfigError, match="--pca-dims -1"):
        reduce_pca(vectors, -1)


@pytest.fixture(scope="module")
def big_defects(tmp_path_factory, synthetic_root):
    """A test set with enough anomalous tokens for n=600: 20 good images and 40 with the left half defaced.

    At 64 px a tiny model has 4x4 tokens per image: 20 x 16 = 320 normal and 40 x 8 = 320 anomalous tokens.
    """
    from inspector.data.synthetic import render

    root = tmp_path_factory.mktemp("big") / "cable"
    for d in ("train/good", "test/good", "test/stain", "ground_truth/stain"):
        (root / d).mkdir(parents=True)
    rng = np.random.default_rng(5)
    cv2.imwrite(str(root / "train/good/000.png"), render(rng, 64)[0])
    for i in range(20):
        cv2.imwrite(str(root / f"test/good/{i:03d}.png"), render(rng, 64)[0])
    for i in range(40):
        img = render(rng, 64)[0]
        img[:, :32] = rng.integers(0, 256, 3)  # a solid stain of random colour over the left half
        mask = np.zeros((64, 64), np.uint8)
        mask[:, :32] = 255
        cv2.imwrite(str(root / f"test/stain/{i:03d}.png"), img)
        cv2.imwrite(str(root / f"ground_truth/stain/{i:03d}_mask.png"), mask)
    return root


def test_default_600_vectors_one_to_one(trained, big_defects, tmp_path):
    out = tmp_path / "fig" / "tsne.png"
    r = visualize(trained["product"], big_defects, home=trained["home"], out=out, device="cpu")
    with open(out.with_suffix(".csv")) as f:
        rows = list(csv.reader(f))
    assert rows[0] == ["x", "y", "label", "score"]
    body = rows[1:]
    assert len(body) == 600
    assert sum(row[2] == "1" for row in body) == 300 and sum(row[2] == "0" for row in body) == 300
    assert all(np.isfinite(float(v)) for row in body for v in (row[0], row[1], row[3]))
    saved = json.loads(out.with_suffix(".json").read_text())
    assert saved["n"] == 600 and saved == json.loads(json.dumps(r))
    assert -1.0 <= saved["silhouette"] <= 1.0
    # Large stains are far from anything the model learned: their difference vectors are much longer.
    assert saved["norm_auroc"] > 0.9
    img = cv2.imread(str(out))
    assert img is not None and img.shape[0] > 300 and img.std() > 10


def test_cli_smaller_n_and_the_error_for_too_many(trained, capsys, tmp_path):
    out = tmp_path / "t.png"
    args = ["visualize", "--product", trained["product"], "--data", str(trained["data"]), "--home",
            str(trained["home"]), "--device", "cpu", "--out", str(out)]
    # The tiny synthetic test set has small defects: 3 tokens at 64 px are covered >= 50 % by a mask.
    assert main(args) == 1
    assert "3 anomalous" in capsys.readouterr().err
    assert main([*args, "--n", "8"]) == 1  # 4 anomalous tokens asked, 3 exist
    assert main([*args, "--n", "6"]) == 0
    assert "6 vectors (3 normal, 3 anomalous" in capsys.readouterr().out
    assert main([*args, "--n", "6", "--pca-dims", "2"]) == 0
    assert "t-SNE input dim 2 (" in capsys.readouterr().out
    saved = json.loads(out.with_suffix(".json").read_text())
    assert saved["tsne_input_dim"] == 2 and 0.0 < saved["pca_explained_variance"] <= 1.0
    assert main([*args, "--n", "6", "--pca-dims", "-3"]) == 1
    assert "--pca-dims -3" in capsys.readouterr().err
    labels = [row[2] for row in list(csv.reader(out.with_suffix(".csv").open()))[1:]]
    assert sorted(labels) == ["0", "0", "0", "1", "1", "1"]

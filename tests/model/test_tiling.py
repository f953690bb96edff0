"""Tiling: layouts cover the frame with the overlap asked for; cut + stitch is the identity; a tiled model
scores a sheet of parts as the untiled model scores each part."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from inspector.bundle import build_model, load_checkpoint, model_path
from inspector.errors import ConfigError
from inspector.model.graph import GraphSpec, default_mask_size, inspection_model
from inspector.model.tiling import cut, merge_scores, stitch, tile_layout, tile_starts


@pytest.mark.parametrize(("length", "tile", "overlap"), [(2048, 512, 64), (640, 256, 32), (300, 100, 0), (100, 128, 16)])
def test_starts_cover_the_length_with_the_overlap(length, tile, overlap):
    starts = tile_starts(length, tile, overlap)
    assert starts[0] == 0
    if length <= tile:
        assert starts == (0,)
        return
    assert starts[-1] + tile == length
    gaps = np.diff(starts)
    assert (tile - gaps >= overlap).all()  # every neighbour pair overlaps by at least `overlap`
    assert len(starts) == -(-(length - overlap) // (tile - overlap))  # and no more tiles than needed


def test_bad_overlap_is_a_config_error():
    with pytest.raises(ConfigError, match="overlap < tile"):
        tile_starts(100, 32, 32)


def test_cut_then_stitch_gives_the_image_back_on_a_2048_sheet():
    torch.manual_seed(0)
    img = torch.rand(2, 1, 2048, 2048)
    layout = tile_layout((2048, 2048), (512, 512), 64)
    assert layout.count == 25
    tiles = cut(img, layout)
    assert tiles.shape == (50, 1, 512, 512)
    torch.testing.assert_close(stitch(tiles[:, 0], layout), img[:, 0], rtol=0, atol=0)
    # A long strip with non-square tiles.
    strip = torch.rand(1, 1, 256, 3000)
    lay = tile_layout((256, 3000), (256, 640), 96)
    torch.testing.assert_close(stitch(cut(strip, lay)[:, 0], lay), strip[:, 0], rtol=0, atol=0)


def test_stitched_pixels_come_from_the_most_central_tile():
    # Each tile's map is its own index: the stitched map switches tile in the middle of each overlap.
    layout = tile_layout((100, 100), (60, 60), 20)
    assert layout.ys == (0, 40) and layout.ends_y == (50, 100)
    maps = torch.arange(layout.count, dtype=torch.float32).view(-1, 1, 1).expand(-1, 60, 60)
    out = stitch(maps, layout)[0]
    assert out[49, 49] == 0 and out[50, 49] == 2 and out[49, 50] == 1 and out[50, 50] == 3
    assert merge_scores(torch.tensor([0.1, 0.7, 0.3, 0.2, 0.9, 0.1, 0.0, 0.0]), layout).tolist() == pytest.approx([0.7, 0.9])


def _sheet(trained, rows: int, cols: int, defect_at: tuple[int, int]):
    """A sheet of 64 px synthetic parts, one with a defect: (frames (1, 64 rows, 64 cols, 3), parts)."""
    from inspector.data.synthetic import render

    rng = np.random.default_rng(5)
    parts = [[render(rng, 64, "missing_wire" if (r, c) == defect_at else None)[0] for c in range(cols)]
             for r in range(rows)]
    sheet = np.concatenate([np.concatenate(row, axis=1) for row in parts], axis=0)
    return torch.from_numpy(sheet[None]), parts


def test_a_tiled_model_scores_a_sheet_as_the_untiled_model_scores_each_part(trained):
    ckpt = load_checkpoint(model_path(trained["home"], "cable"))
    plain = build_model(ckpt)
    cfg = dataclasses.replace(plain.cfg, tile_size=64, tile_overlap=0)
    tiled_adtr = build_model(ckpt)
    tiled_adtr.cfg = cfg
    frames, parts = _sheet(trained, 2, 3, defect_at=(1, 2))
    spec = GraphSpec((128, 192), None, (128, 192))
    assert default_mask_size(cfg, (128, 192)) == (128, 192)
    tiled = inspection_model(tiled_adtr, *ckpt.mean_std, spec)
    single = inspection_model(plain, *ckpt.mean_std, GraphSpec((64, 64), None, (64, 64)))
    with torch.no_grad():
        score, amap = tiled(frames)
        each = [single(torch.from_numpy(p[None])) for row in parts for p in row]
    assert amap.shape == (1, 128, 192) and score.shape == (1,)
    torch.testing.assert_close(score[0], max(s[0] for s, _ in each))
    for k, (_, m) in enumerate(each):
        r, c = divmod(k, 3)
        torch.testing.assert_close(amap[0, 64 * r:64 * r + 64, 64 * c:64 * c + 64], m[0], rtol=1e-4, atol=1e-4)

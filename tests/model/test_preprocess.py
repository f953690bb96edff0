"""Frames -> model input: ROI, BGR->RGB, resize, normalisation."""

from __future__ import annotations

import torch

from inspector.model.preprocess import Preprocess


def test_bgr_to_rgb_and_normalisation():
    frame = torch.zeros(1, 32, 32, 3, dtype=torch.uint8)
    frame[..., 0] = 255  # blue in BGR
    x = Preprocess(32, (0.5, 0.5, 0.5), (0.5, 0.5, 0.5))(frame)
    assert x.shape == (1, 3, 32, 32)
    torch.testing.assert_close(x[0, 2], torch.ones(32, 32))  # B is the last RGB channel, (1-0.5)/0.5
    torch.testing.assert_close(x[0, 0], -torch.ones(32, 32))


def test_roi_crop_and_resize():
    frame = torch.zeros(2, 100, 200, 3, dtype=torch.uint8)
    frame[:, 10:50, 20:60] = 200
    pre = Preprocess(16, (0.0, 0.0, 0.0), (1.0, 1.0, 1.0), roi=(20, 10, 40, 40))
    x = pre(frame)
    assert x.shape == (2, 3, 16, 16)
    torch.testing.assert_close(x, torch.full_like(x, 200 / 255))


def test_large_frames_are_area_averaged_before_resizing():
    # A one-pixel checkerboard averages to grey; bilinear alone would alias it.
    frame = torch.zeros(1, 256, 256, 3, dtype=torch.uint8)
    frame[:, ::2, ::2] = 255
    frame[:, 1::2, 1::2] = 255
    x = Preprocess(32, (0.0, 0.0, 0.0), (1.0, 1.0, 1.0))(frame)
    torch.testing.assert_close(x, torch.full_like(x, 0.5))


def test_non_square_size_is_height_then_width():
    # A 640 x 256 (H x W) strip keeps its aspect at 560 x 224, and a bright top half stays on top.
    frame = torch.zeros(1, 640, 256, 3, dtype=torch.uint8)
    frame[:, :320] = 255
    x = Preprocess((560, 224), (0.0, 0.0, 0.0), (1.0, 1.0, 1.0))(frame)
    assert x.shape == (1, 3, 560, 224)
    assert float(x[0, 0, :270].min()) > 1 - 1e-6 and float(x[0, 0, 290:].max()) < 1e-6
    assert Preprocess(32, (0.0,) * 3, (1.0,) * 3).size == (32, 32)

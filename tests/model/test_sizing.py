"""input_size: auto keeps the training images' aspect ratio at the square presets' pixel count (224² px)."""

from __future__ import annotations

import dataclasses

import pytest

from inspector.errors import ConfigError
from inspector.model.adtr import ModelConfig
from inspector.model.sizing import auto_input_size, resolve_input_size, typical_size


@pytest.mark.parametrize(
    ("image_hw", "expect"),
    [((256, 256), (224, 224)), ((640, 256), (352, 144)), ((256, 640), (144, 352)), ((720, 1280), (176, 304)),
     ((256, 512), (160, 320)), ((100, 3000), (64, 1024)), ((300, 310), (224, 224))],
)
def test_auto_size_keeps_the_aspect_at_the_square_pixel_count(image_hw, expect):
    h, w = auto_input_size(image_hw)
    assert (h, w) == expect and h % 16 == 0 and w % 16 == 0
    if expect[0] * expect[1] != 64 * 1024:  # not at the caps: the cost of a 224 x 224 input, within rounding
        assert abs(h * w / 224**2 - 1) < 0.1


def test_typical_size_is_the_median_aspect():
    assert typical_size([(640, 256), (100, 100), (650, 250), (640, 260), (1280, 512)]) == (640, 256)
    with pytest.raises(ConfigError):
        typical_size([])


def test_resolve_replaces_only_auto():
    square = ModelConfig()
    assert resolve_input_size(square, [(640, 256)]) is square
    auto = dataclasses.replace(ModelConfig(), input_size="auto")
    resolved = resolve_input_size(auto, [(640, 256)] * 3)
    assert resolved.input_size == (352, 144) and resolved.grid_hw == (22, 9)

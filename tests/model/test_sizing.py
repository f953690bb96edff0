"""input_size: auto keeps the training images' aspect ratio, with the shorter side at 224 px."""

from __future__ import annotations

import dataclasses

import pytest

from inspector.errors import ConfigError
from inspector.model.adtr import ModelConfig
from inspector.model.sizing import auto_input_size, resolve_input_size, typical_size


@pytest.mark.parametrize(
    ("image_hw", "expect"),
    [((256, 256), (224, 224)), ((640, 256), (560, 224)), ((256, 640), (224, 560)), ((720, 1280), (224, 400)),
     ((100, 3000), (224, 1024)), ((300, 310), (224, 224))],
)
def test_auto_size_keeps_the_aspect_at_the_short_side(image_hw, expect):
    assert auto_input_size(image_hw) == expect


def test_typical_size_is_the_median_aspect():
    assert typical_size([(640, 256), (100, 100), (650, 250), (640, 260), (1280, 512)]) == (640, 256)
    with pytest.raises(ConfigError):
        typical_size([])


def test_resolve_replaces_only_auto():
    square = ModelConfig()
    assert resolve_input_size(square, [(640, 256)]) is square
    auto = dataclasses.replace(ModelConfig(), input_size="auto")
    resolved = resolve_input_size(auto, [(640, 256)] * 3)
    assert resolved.input_size == (560, 224) and resolved.grid_hw == (35, 14)

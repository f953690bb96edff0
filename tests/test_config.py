"""Strict configuration: unknown keys, wrong types and values out of range name the key and the file."""

from __future__ import annotations

import pytest

from inspector.config import load_dataclass
from inspector.errors import ConfigError
from inspector.preset import Preset, TrainConfig, load_preset, preset_names


def test_shipped_presets_load():
    assert {"default", "cpu-quick"} <= set(preset_names())
    d = load_preset("default")
    assert d.train.lr == 1e-4 and d.train.batch_size == 16 and d.train.lr_drop_at == 0.8
    assert d.model.hidden_dim == 256
    q = load_preset("cpu-quick")
    assert q.train.lr == 1e-3
    # Chosen on bottle and ksdd together (docs/benchmarks.md): the part's aspect at 224² pixels, a 32 px pool.
    assert q.model.input_size == d.model.input_size == "auto" and q.model.pool_size == 32
    assert q.model.feature_strides == (2, 4, 8, 16, 32) and q.model.map_strides == (2, 4, 8, 16)
    assert q.model.stage_resize == "area"


def test_yaml_file_preset(tmp_path):
    p = tmp_path / "mine.yaml"
    p.write_text("model:\n  hidden_dim: 64\n  heads: 4\ntrain:\n  epochs: 3\n")
    cfg = load_preset(p)
    assert cfg.model.hidden_dim == 64 and cfg.train.epochs == 3


@pytest.mark.parametrize(
    ("text", "match"),
    [
        ("model:\n  hiden_dim: 64\n", r"unknown key\(s\) \['model.hiden_dim'\]"),
        ("train:\n  epochs: ten\n", "'train.epochs' must be int"),
        ("train:\n  lr: -1\n", "'train.lr' = -1.0 is below the minimum 0.0"),
        ("model:\n  mixer: rnn\n", "'model.mixer' must be 'attention' | 'mlp' | 'cnn'"),
        ("model:\n  backbone: vgg\n", "not allowed; allowed:"),
        ("- a\n- b\n", "top level must be a mapping"),
        ("model: [\n", "invalid YAML"),
    ],
)
def test_bad_config_names_key_and_file(tmp_path, text, match):
    p = tmp_path / "bad.yaml"
    p.write_text(text)
    with pytest.raises(ConfigError, match=match) as e:
        load_preset(p)
    assert "bad.yaml" in str(e.value)


def test_unknown_preset_lists_the_shipped_ones():
    with pytest.raises(ConfigError, match="shipped presets"):
        load_preset("fast")


def test_bool_is_not_an_int():
    with pytest.raises(ConfigError, match="must be int"):
        load_dataclass(TrainConfig, {"epochs": True}, "x.yaml")
    assert load_dataclass(Preset, {}, "x").train == TrainConfig()


@pytest.mark.parametrize("value", [".nan", ".inf", "-.inf", ".NaN"])
def test_nan_and_infinity_are_refused_in_float_fields(tmp_path, value):
    """NaN passes every range check (NaN < min is False) and infinity means "never": both are refused."""
    p = tmp_path / "bad.yaml"
    p.write_text(f"train:\n  lr: {value}\n")
    with pytest.raises(ConfigError, match=r"'train.lr' must be a finite number") as e:
        load_preset(p)
    assert "bad.yaml" in str(e.value)


def test_a_binary_file_is_a_config_error_naming_it(tmp_path):
    from inspector.config import read_yaml

    p = tmp_path / "bin.yaml"
    p.write_bytes(bytes(range(256)))
    with pytest.raises(ConfigError, match="bin.yaml: not a UTF-8 text file"):
        read_yaml(p)


def test_names_are_matched_whole():
    from inspector.bundle import check_product
    from inspector.config import is_name
    from inspector.errors import CheckpointError

    assert is_name("cable-2.v1") and not is_name("cable\n") and not is_name("-x") and not is_name("a" * 65)
    with pytest.raises(CheckpointError, match="invalid product name"):
        check_product("cable\n")

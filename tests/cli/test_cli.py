"""The command line: --help everywhere, and train/evaluate end to end on synthetic data."""

from __future__ import annotations

import json

import pytest

from inspector.cli import build_parser, main, verb_modules


def test_every_verb_has_help(capsys):
    verbs = verb_modules()
    assert {"train", "evaluate", "synth"} <= set(verbs)
    for verb in verbs:
        with pytest.raises(SystemExit) as e:
            main([verb, "--help"])
        assert e.value.code == 0
        assert f"inspector {verb}" in capsys.readouterr().out
    assert build_parser().format_help().count("\n") > 5


def test_synth_train_evaluate(tmp_path, capsys):
    data = tmp_path / "p"
    assert main(["synth", "--out", str(data), "--train", "12", "--test-good", "4", "--per-defect", "1",
                 "--size", "64"]) == 0
    cfg = tmp_path / "tiny.yaml"
    cfg.write_text("model: {input_size: 64, hidden_dim: 16, enc_layers: 1, dec_layers: 1, heads: 2, ffn_dim: 32,"
                   " feature_strides: [8, 16]}\ntrain: {epochs: 2, batch_size: 4}\n")
    home = tmp_path / "home"
    assert main(["train", "--product", "p1", "--data", str(data), "--config", str(cfg), "--home", str(home),
                 "--device", "cpu", "--no-progress"]) == 0
    out = tmp_path / "m.json"
    assert main(["evaluate", "--product", "p1", "--data", str(data), "--home", str(home), "--device", "cpu",
                 "--json", str(out), "--images", str(tmp_path / "vis")]) == 0
    m = json.loads(out.read_text())
    assert {"image_auroc", "pixel_auroc", "pixel_aupro", "per_type"} <= set(m)
    assert all(0 <= m[k] <= 1 for k in ("image_auroc", "pixel_auroc", "pixel_aupro"))
    assert len(list((tmp_path / "vis").glob("*.png"))) > 0
    assert "image AUROC" in capsys.readouterr().out


def test_errors_are_clear_and_exit_1(tmp_path, capsys):
    assert main(["train", "--product", "x", "--data", str(tmp_path / "none"), "--home", str(tmp_path)]) == 1
    assert "inspector train: error:" in capsys.readouterr().err
    assert main(["evaluate", "--product", "ghost", "--data", str(tmp_path), "--home", str(tmp_path)]) == 1
    assert "run `inspector train`" in capsys.readouterr().err
    assert main(["train", "--product", "bad/name", "--data", str(tmp_path), "--home", str(tmp_path)]) == 1
    assert main(["train", "--product", "x", "--data", str(tmp_path), "--epochs", "0"]) == 1
    assert "train.epochs" in capsys.readouterr().err

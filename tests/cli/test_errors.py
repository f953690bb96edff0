"""The CLI's error boundary: every verb, given a bad argument, exits 1 with one line naming the problem."""

from __future__ import annotations

import pytest

from inspector.cli import main, verb_modules

# One bad argument per verb: each passes argparse and is refused by the verb itself. {tmp} is a fresh
# directory, {none} a path that does not exist. A new verb without a case fails the completeness test.
BAD = {
    "demo": (["--data", "{none}", "--home", "{tmp}"], "does not exist"),
    "train": (["--product", "p", "--data", "{none}", "--home", "{tmp}"], "does not exist"),
    "evaluate": (["--product", "ghost", "--data", "{tmp}", "--home", "{tmp}"], "no trained model"),
    "export": (["--product", "ghost", "--home", "{tmp}"], "no trained model"),
    "bridge": (["--config", "{none}"], "cannot read config file"),
    "build": (["--product", "ghost", "--home", "{tmp}"], ""),
    "bench": (["--product", "ghost", "--home", "{tmp}"], "no trained model"),
    "calibrate": (["--product", "ghost", "--home", "{tmp}", "--target-frr", "2"], "must be in (0, 1)"),
    "run": (["--config", "{none}"], "cannot read config file"),
    "listen": (["--connect", "not-an-endpoint", "--count", "1"], "cannot connect to 'not-an-endpoint'"),
    "ctl": (["--connect", "not-an-endpoint", "status"], "cannot connect to 'not-an-endpoint'"),
    "station": (["--connect", "not-an-endpoint"], "must look like 'tcp://"),
    "review": (["--product", "../x", "--home", "{tmp}"], "invalid product name"),
    "keys": (["--out", "/proc/inspector-cannot-write-here"], "No such file or directory"),
    "soak": (["--config", "{none}", "--minutes", "1"], "does not exist"),
    "ablate": (["--data", "{none}", "--out", "{tmp}/ablation"], "does not exist"),
    "visualize": (["--product", "ghost", "--data", "{tmp}", "--home", "{tmp}"], "no trained model"),
    "synth": (["--out", "{tmp}/s", "--size", "3"], "too small"),
}


def test_every_verb_has_a_bad_argument_case():
    assert set(verb_modules()) == set(BAD), "add a bad-argument case for each new verb"


@pytest.mark.parametrize("verb", sorted(BAD))
def test_a_bad_argument_gives_one_line_and_exit_1(verb, tmp_path, capsys):
    args, expected = BAD[verb]
    argv = [a.format(tmp=tmp_path, none=tmp_path / "does-not-exist") for a in args]
    assert main([verb, *argv]) == 1
    err = capsys.readouterr().err
    lines = [ln for ln in err.splitlines() if ln.startswith("inspector ")]
    assert len(lines) == 1 and lines[0].startswith(f"inspector {verb}: error: "), err
    assert "Traceback" not in err
    assert expected in lines[0]

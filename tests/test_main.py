"""``python -m inspector`` is the console script."""

from __future__ import annotations

import subprocess
import sys


def test_python_m_inspector_runs_the_cli():
    ok = subprocess.run([sys.executable, "-m", "inspector", "--version"], capture_output=True, text=True, timeout=120)
    assert ok.returncode == 0 and ok.stdout.startswith("inspector ")
    bad = subprocess.run([sys.executable, "-m", "inspector", "no-such-verb"], capture_output=True, text=True,
                         timeout=120)
    assert bad.returncode != 0 and "no-such-verb" in bad.stderr

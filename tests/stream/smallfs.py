"""A real small filesystem for the audit tests: a 2 MB tmpfs, or an ext4 image on a loop device that can be
unmounted and mounted again (same device, so the same st_dev). Needs root; the tests skip with the reason
otherwise."""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
from pathlib import Path

import pytest


def _run(*cmd: str) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, capture_output=True, text=True, timeout=30)


def need_root(tool: str = "mount") -> None:
    if os.geteuid() != 0:
        pytest.skip("mounting a small filesystem needs root")
    if shutil.which(tool) is None:
        pytest.skip(f"{tool} is not installed")


@contextlib.contextmanager
def tmpfs(where: Path, size: str = "2m"):
    """A tmpfs of ``size`` mounted at ``where`` for the block; unmounted (lazily if busy) after."""
    need_root()
    where.mkdir(parents=True, exist_ok=True)
    r = _run("mount", "-t", "tmpfs", "-o", f"size={size},mode=0755", "tmpfs", str(where))
    if r.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {r.stderr.strip()}")
    try:
        yield where
    finally:
        if _run("umount", str(where)).returncode != 0:
            _run("umount", "-l", str(where))


class LoopDisk:
    """An ext4 image on a loop device: ``mount()``, ``unmount()`` (lazy, as an admin pulling a busy disk),
    ``mount()`` again on the same device."""

    def __init__(self, image: Path, where: Path, size_mb: int = 4) -> None:
        need_root("losetup")
        if shutil.which("mkfs.ext4") is None:
            pytest.skip("mkfs.ext4 is not installed")
        self.image, self.where = image, where
        with open(image, "wb") as f:
            f.truncate(size_mb << 20)
        r = _run("mkfs.ext4", "-q", "-F", str(image))
        if r.returncode != 0:
            pytest.skip(f"mkfs.ext4 failed: {r.stderr.strip()}")
        r = _run("losetup", "-f", "--show", str(image))
        if r.returncode != 0:
            pytest.skip(f"no loop device: {r.stderr.strip()}")
        self.device = r.stdout.strip()
        where.mkdir(parents=True, exist_ok=True)
        self.mounted = False

    def mount(self) -> None:
        r = _run("mount", self.device, str(self.where))
        if r.returncode != 0:
            raise RuntimeError(f"mount {self.device}: {r.stderr.strip()}")
        self.mounted = True

    def unmount(self) -> None:
        _run("umount", "-l", str(self.where))
        self.mounted = False

    def close(self) -> None:
        if self.mounted:
            self.unmount()
        _run("losetup", "-d", self.device)

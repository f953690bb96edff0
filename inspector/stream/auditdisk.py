"""The audit trail's place on disk: a directory that is never silently moved, files that are not world-readable,
and FAIL images that never take the space the decision log needs.

- :class:`AuditDir` remembers which filesystem (``st_dev``) the audit directory is on at start. If the
  directory later disappears, it is re-created only when its parent is still on that filesystem; if the
  path now resolves to another filesystem (the audit disk was unmounted and the path is an empty mount
  point, or a directory on the root filesystem), it refuses with the reason instead of writing the
  audit to the wrong disk.
- Files are created 0640 and directories 0750 (``os.open`` / ``mkdir`` with the mode, not a chmod after).
- :class:`ImageStore` saves FAIL (and ERROR) frames only while more than ``reserve_bytes`` stay free, and
  deletes the oldest past ``budget_bytes``.
"""

from __future__ import annotations

import contextlib
import logging
import os
import stat
from collections import deque
from pathlib import Path

import cv2
import numpy as np

log = logging.getLogger(__name__)

FILE_MODE = 0o640
DIR_MODE = 0o750


def _nearest_existing(path: Path) -> Path:
    p = path
    while not p.exists() and p != p.parent:
        p = p.parent
    return p


def free_bytes(path: Path) -> int:
    """Bytes an unprivileged writer can still use on the filesystem holding ``path``."""
    st = os.statvfs(path)
    return st.f_bavail * st.f_frsize


def create_file(path: Path, append: bool = True) -> int:
    """Open ``path`` for writing, created 0640 from the start; returns the file descriptor."""
    flags = os.O_WRONLY | os.O_CREAT | (os.O_APPEND if append else os.O_TRUNC)
    return os.open(path, flags | getattr(os, "O_CLOEXEC", 0), FILE_MODE)


def fsync_dir(path: Path) -> None:
    """fsync a directory, so a new file's name survives a power cut."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class AuditDir:
    """The audit directory and the filesystem it must stay on."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.dev: int | None = None
        self.ino: int | None = None
        self.replaced = False  # set when the directory was swapped for another: open files point elsewhere

    def prepare(self) -> None:
        """At start: create the directory (0750) if needed, take o+rwx away, remember its filesystem.

        Raises OSError when it cannot be created (the caller raises the alarm and retries later).
        """
        if self.dev is None:
            self.dev = os.stat(_nearest_existing(self.path)).st_dev
        # The directory itself when it exists (it may be a mount point: then its filesystem is the audit disk),
        # else the ancestor it is created under.
        self.path.mkdir(parents=True, exist_ok=True, mode=DIR_MODE)
        st = os.stat(self.path)
        if st.st_mode & 0o007:
            os.chmod(self.path, st.st_mode & 0o770)
            log.info("audit: %s was world-accessible; now %o", self.path, st.st_mode & 0o770)
        self.ino = st.st_ino

    def problem(self) -> str | None:
        """Why the directory cannot take writes now (None: it can), re-creating it where that is safe."""
        try:
            st = os.stat(self.path)
        except FileNotFoundError:
            return self._recreate()
        except OSError as e:
            return f"cannot stat audit directory {self.path}: {e.strerror}"
        if not stat.S_ISDIR(st.st_mode):
            return f"audit directory {self.path} is no longer a directory"
        if self.dev is not None and st.st_dev != self.dev:
            return (f"audit directory {self.path} is now on another filesystem (device {st.st_dev}, was {self.dev}): "
                    "the audit disk is not mounted; records wait in memory, not written to the wrong disk")
        if self.ino is not None and st.st_ino != self.ino:
            log.warning("audit: %s was replaced by another directory on the same filesystem; using it", self.path)
            self.ino = st.st_ino
            self.replaced = True
        return None

    def _recreate(self) -> str | None:
        anchor = _nearest_existing(self.path.parent)
        try:
            dev = os.stat(anchor).st_dev
        except OSError as e:
            return f"audit directory {self.path} is gone and {anchor} cannot be read: {e.strerror}"
        if self.dev is not None and dev != self.dev:
            return (f"audit directory {self.path} is gone and {anchor} is on another filesystem (device {dev}, "
                    f"was {self.dev}): the audit disk is not mounted; not re-creating the audit there")
        try:
            self.path.mkdir(parents=True, exist_ok=True, mode=DIR_MODE)
            self.ino = os.stat(self.path).st_ino
            self.replaced = True
        except OSError as e:
            return f"audit directory {self.path} is gone and cannot be re-created: {e.strerror}"
        log.warning("audit: re-created %s on the same filesystem", self.path)
        return None


class ImageStore:
    """Frames and masks of FAIL (ERROR) results under ``<dir>/images``, within a budget and above a reserve."""

    def __init__(self, directory: Path, budget_bytes: float, reserve_bytes: float) -> None:
        self.dir, self.budget, self.reserve = directory, budget_bytes, reserve_bytes
        self.files: deque[tuple[Path, int]] = deque()
        self.bytes = 0
        self.skipped = 0  # results whose images were not saved (no room above the reserve, disk failing)
        self.failed = 0  # image writes that failed

    def scan(self) -> None:
        self.dir.mkdir(exist_ok=True, mode=DIR_MODE)
        for p in sorted(self.dir.iterdir()):
            if p.is_file():
                size = p.stat().st_size
                self.files.append((p, size))
                self.bytes += size

    def encode(self, items: list[tuple[str, np.ndarray]]) -> list[tuple[str, bytes]] | None:
        """Encode (file name, image) pairs; None (counted as skipped) when they do not fit above the reserve."""
        out = []
        for name, img in items:
            ok, buf = cv2.imencode(Path(name).suffix, img)
            if not ok:
                raise ValueError(f"cannot encode {name} ({img.shape} {img.dtype})")
            out.append((name, buf.tobytes()))
        need = sum(len(b) for _, b in out)
        try:
            room = free_bytes(self.dir.parent) - need
        except OSError:
            room = -1
        if room < self.reserve:
            self.skipped += 1
            return None
        return out

    def save(self, encoded: list[tuple[str, bytes]]) -> None:
        """Write encoded images (0640); a failed write removes its partial file and raises OSError."""
        if not self.dir.is_dir():
            self.dir.mkdir(exist_ok=True, mode=DIR_MODE)
        for name, data in encoded:
            path = self.dir / name
            try:
                fd = create_file(path, append=False)
                try:
                    if os.write(fd, data) != len(data):
                        raise OSError(28, "short write (disk full)")
                finally:
                    os.close(fd)
            except OSError:
                self.failed += 1
                with contextlib.suppress(OSError):
                    path.unlink()
                raise
            self.files.append((path, len(data)))
            self.bytes += len(data)
        self._enforce_budget()

    def _enforce_budget(self) -> None:
        while self.bytes > self.budget and len(self.files) > 1:
            p, size = self.files.popleft()
            p.unlink(missing_ok=True)
            self.bytes -= size

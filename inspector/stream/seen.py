"""Which files of a watched image folder were already taken, kept across source reopens and daemon restarts.

The log is one JSON string (a file name) per line, appended with one ``write`` as each file is taken, so a
crash can at worst leave a torn last line, which is ignored. At start it is rewritten atomically (a
temporary file, fsync, ``os.replace``) with only the names still in the folder, so it stays as small as
the folder. Its first line names the folder: a log of another folder is not used. Files are 0640.

A file is marked when it is read, before its result is published: SIGTERM finishes every frame read, so a
stop never loses one; a crash (power, kill -9) can lose the results of the frames in flight (at most
``pipeline.queue_size`` plus one batch), and never inspects a file twice.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
from pathlib import Path

log = logging.getLogger(__name__)

FILE_MODE = 0o640


class SeenLog:
    """The names already taken from ``folder``, persisted at ``path`` (None: in memory only)."""

    def __init__(self, path: Path | None, folder: Path) -> None:
        self.path, self.folder = path, str(folder)
        self.names: set[str] = set()
        self._fd: int | None = None
        self._warned = False
        if path is not None:
            self.names = self._read()

    def __contains__(self, name: str) -> bool:
        return name in self.names

    def _read(self) -> set[str]:
        try:
            lines = self.path.read_text(encoding="utf-8").splitlines()
        except FileNotFoundError:
            return set()
        except (OSError, UnicodeDecodeError) as e:
            log.error("cannot read %s (%s): files of %s may be inspected again", self.path, e, self.folder)
            return set()
        out: set[str] = set()
        for i, line in enumerate(lines):
            try:
                v = json.loads(line)
            except ValueError:
                continue  # a torn last line
            if i == 0:
                if not (isinstance(v, dict) and v.get("folder") == self.folder):
                    return set()  # the log of another folder
            elif isinstance(v, str):
                out.add(v)
        return out

    def compact(self, present: set[str]) -> None:
        """Keep only the names still in the folder; rewrite the log atomically and reopen it for appends."""
        self.names &= present
        if self.path is None:
            return
        self.close()
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            tmp = self.path.with_name(self.path.name + ".tmp")
            body = "".join(json.dumps(n) + "\n" for n in sorted(self.names))
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, FILE_MODE)
            try:
                os.write(fd, (json.dumps({"folder": self.folder}) + "\n" + body).encode())
                os.fsync(fd)
            finally:
                os.close(fd)
            os.replace(tmp, self.path)
            self._fd = os.open(self.path, os.O_WRONLY | os.O_APPEND, FILE_MODE)
        except OSError as e:
            self._failed(e)

    def add(self, name: str) -> None:
        self.names.add(name)
        if self._fd is None:
            return
        try:
            os.write(self._fd, (json.dumps(name) + "\n").encode())
        except OSError as e:
            self._failed(e)

    def _failed(self, e: OSError) -> None:
        if not self._warned:
            self._warned = True
            log.error("cannot write %s (%s): after a restart, files of %s may be inspected again",
                      self.path, e, self.folder)

    def close(self) -> None:
        if self._fd is not None:
            with contextlib.suppress(OSError):
                os.close(self._fd)
            self._fd = None

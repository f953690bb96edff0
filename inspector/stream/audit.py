"""The audit trail: every decision (and event) appended to JSON Lines files; FAIL frames saved as images.

Why JSONL and not SQLite: an append-only text file is the simplest durable log. A record is one
``write`` of one line; a crash can at worst leave a torn last line, which readers skip, and never
corrupts earlier records. It needs no schema migration when the header gains a field, is read by
``grep``/``jq`` and shipped by any log collector, and rotation is deleting whole files. SQLite would add
queries we do not need on the line, a journal to keep consistent, and a writer lock.

Durability: every record is flushed to the OS at once (a daemon crash loses nothing); ``fsync``
(a power loss) follows ``audit.fsync``: ``always`` (every record), ``interval`` (at most every
``fsync_interval_s``) or ``never``. Files rotate at ``log_file_mb``; the oldest are deleted past
``log_budget_mb``. Images (``images/<UTC time>_<frame>_<decision>.jpg`` and ``..._mask.png``) are kept under
``image_budget_mb``, oldest deleted first.

A disk error never stops inspection: it is reported through ``alarm(kind, message, detail)``
(``audit_error`` once per outage, ``audit_recovered`` when writes work again) and counted.
"""

from __future__ import annotations

import json
import logging
import os
import time
from collections import deque
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from inspector.stream.config import AuditConfig

log = logging.getLogger(__name__)

AlarmFn = Callable[[str, str, dict[str, Any]], None]
LOG_GLOB = "decisions-*.jsonl"


def _stamp(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).strftime("%Y%m%dT%H%M%S.%f")


def read_records(directory: str | Path) -> list[dict[str, Any]]:
    """All records of an audit directory, oldest file first; a torn (partial) last line is skipped."""
    out = []
    for p in sorted(Path(directory).glob(LOG_GLOB)):
        for line in p.read_text().splitlines():
            try:
                out.append(json.loads(line))
            except ValueError:
                continue
    return out


class AuditLog:
    """Append-only decision log plus FAIL images under a disk budget. Used by one thread (the output thread)."""

    def __init__(self, cfg: AuditConfig, alarm: AlarmFn, clock: Callable[[], float] = time.monotonic) -> None:
        self.cfg, self.alarm, self.clock = cfg, alarm, clock
        self.dir = Path(cfg.dir)
        self.images = self.dir / "images"
        self.fh = None
        self.path: Path | None = None
        self.written = 0
        self.last_fsync = clock()
        self.failing = False
        self.errors = 0
        self.last_retry = -1e9
        self.image_files: deque[tuple[Path, int]] = deque()
        self.image_bytes = 0
        try:
            self.dir.mkdir(parents=True, exist_ok=True)
            self.images.mkdir(exist_ok=True)
            self._scan_images()
            self._open()
        except OSError as e:
            self._error("cannot open the audit log", e)

    # -- files ------------------------------------------------------------------------------------------------
    def _open(self) -> None:
        self.close_file()
        # A new file per start and per rotation: never append after a previous run's possibly torn line.
        self.path = self.dir / f"decisions-{_stamp(time.time())}.jsonl"
        self.fh = open(self.path, "a", encoding="utf-8")  # noqa: SIM115 - kept open for the daemon's life
        self.written = 0
        self._enforce_log_budget()

    def close_file(self) -> None:
        if self.fh is not None:
            try:
                self.fh.flush()
                os.fsync(self.fh.fileno())
                self.fh.close()
            except OSError as e:
                self._error("cannot close the audit log", e)
            self.fh = None

    def _enforce_log_budget(self) -> None:
        files = sorted(self.dir.glob(LOG_GLOB))
        sizes = [(p, p.stat().st_size) for p in files]
        total = sum(s for _, s in sizes)
        budget = self.cfg.log_budget_mb * 1e6
        for p, s in sizes:
            if total <= budget or p == self.path:
                break
            p.unlink(missing_ok=True)
            total -= s
            log.info("audit: deleted %s (log budget %.0f MB)", p.name, self.cfg.log_budget_mb)

    def _scan_images(self) -> None:
        for p in sorted(self.images.iterdir()):
            if p.is_file():
                size = p.stat().st_size
                self.image_files.append((p, size))
                self.image_bytes += size

    # -- errors -----------------------------------------------------------------------------------------------
    def _error(self, what: str, e: OSError) -> None:
        self.errors += 1
        if not self.failing:
            self.failing = True
            log.error("audit: %s: %s (inspection continues)", what, e)
            self.alarm("audit_error", f"audit trail: {what}: {e}; inspection continues without it",
                       {"dir": str(self.dir), "error": str(e)})

    def _ok(self) -> None:
        if self.failing:
            self.failing = False
            log.warning("audit: writes work again after %d error(s)", self.errors)
            self.alarm("audit_recovered", "audit trail writes work again", {"dir": str(self.dir), "errors": self.errors})

    # -- public -----------------------------------------------------------------------------------------------
    def record(self, header: dict[str, Any], image: np.ndarray | None = None, mask: np.ndarray | None = None) -> None:
        """Append one record; for FAIL (and ERROR when configured) results also save the frame and mask."""
        if not self.cfg.enabled:
            return
        header = dict(header)
        try:
            if self._wants_image(header) and image is not None:
                header["audit_images"] = self._save_images(header, image, mask)
            if self.fh is None:
                now = self.clock()
                if now - self.last_retry < 1.0:
                    self.errors += 1
                    return
                self.last_retry = now
                self.dir.mkdir(parents=True, exist_ok=True)
                self._open()
            self.fh.write(json.dumps(header, separators=(",", ":")) + "\n")
            self.fh.flush()
            self.written += 1
            now = self.clock()
            if self.cfg.fsync == "always" or (self.cfg.fsync == "interval" and now - self.last_fsync
                                              >= self.cfg.fsync_interval_s):
                os.fsync(self.fh.fileno())
                self.last_fsync = now
            if self.fh.tell() > self.cfg.log_file_mb * 1e6:
                self._open()
            self._ok()
        except OSError as e:
            self._error("cannot write", e)
            try:
                if self.fh is not None:
                    self.fh.close()
            except OSError:
                pass
            self.fh = None

    def _wants_image(self, header: dict[str, Any]) -> bool:
        d = header.get("decision")
        return (self.cfg.save_images == "fail" and d == "FAIL") or (
            self.cfg.save_images == "fail_and_error" and d in ("FAIL", "ERROR"))

    def _save_images(self, header: dict[str, Any], image: np.ndarray, mask: np.ndarray | None) -> list[str]:
        stem = f"{_stamp(header.get('capture_ts') or time.time())}_{header.get('frame_id')}_{header.get('decision')}"
        out = []
        items = [(self.images / f"{stem}.{self.cfg.image_format}", image)]
        if mask is not None:
            items.append((self.images / f"{stem}_mask.png", mask))
        for path, img in items:
            ok, buf = cv2.imencode(path.suffix, img)
            if not ok:
                raise OSError(f"cannot encode {path.name}")
            if not self.images.is_dir():
                self.images.mkdir(parents=True, exist_ok=True)
            path.write_bytes(buf.tobytes())
            self.image_files.append((path, len(buf)))
            self.image_bytes += len(buf)
            out.append(str(path.relative_to(self.dir)))
        self._enforce_image_budget()
        return out

    def _enforce_image_budget(self) -> None:
        budget = self.cfg.image_budget_mb * 1e6
        while self.image_bytes > budget and len(self.image_files) > 1:
            p, size = self.image_files.popleft()
            p.unlink(missing_ok=True)
            self.image_bytes -= size

    def flush(self) -> None:
        """Flush and fsync now (shutdown, SIGHUP)."""
        if self.fh is None:
            return
        try:
            self.fh.flush()
            os.fsync(self.fh.fileno())
            self.last_fsync = self.clock()
        except OSError as e:
            self._error("cannot flush", e)

    def close(self) -> None:
        self.flush()
        self.close_file()

"""The audit trail: every decision (and event) appended to JSON Lines files; FAIL frames saved as images.

Why JSONL and not SQLite: an append-only text file is the simplest durable log. A record is one ``write``
of one line; a write the disk cuts short is truncated back, so no line is ever torn, and earlier records
are never touched. It needs no schema migration when the header gains a field, is read by ``grep``/``jq``
and shipped by any log collector, and rotation is deleting whole files.

What it promises (docs/zeromq.md, "Audit trail"):

- Order and completeness: while the disk refuses writes (full, read-only, unmounted), records wait in a
  spool in memory (``audit.spool_records``) and are written in order once it takes writes again (retried
  every second). Only when the spool is full are records lost: counted exactly (``lost``; heartbeat
  ``audit_lost``, metrics, an ``audit_records_lost`` event) and marked by an ``audit_gap`` record in the log.
- The decision line first: a FAIL's line is written before its images, and images are saved only while
  more than ``audit.image_reserve_mb`` stays free on the disk (:mod:`inspector.stream.auditdisk`).
- A log file is created only to write a line into it, so retries leave no empty files.
- The directory is never re-created on another filesystem (:class:`~inspector.stream.auditdisk.AuditDir`).
- Durability: each record reaches the OS at once (a daemon crash loses none that was written); ``fsync``
  follows ``audit.fsync`` (always / interval / never), so a power cut loses at most the records since the
  last fsync, plus whatever waited in the spool. Files are 0640, the directory 0750.

A disk error never stops inspection: it raises ``audit_error`` once per outage and ``audit_recovered`` when
the spool has been written. Used by one thread (the output thread).
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import time
from collections import deque
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from inspector.stream.auditdisk import AuditDir, ImageStore, create_file, fsync_dir
from inspector.stream.config import AuditConfig

log = logging.getLogger(__name__)

AlarmFn = Callable[[str, str, dict[str, Any]], None]
LOG_GLOB = "decisions-*.jsonl"
RETRY_S = 1.0


def _stamp(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).strftime("%Y%m%dT%H%M%S.%f")


def read_records(directory: str | Path) -> list[dict[str, Any]]:
    """All records of an audit directory, oldest file first; a torn (partial) line is skipped."""
    out = []
    for p in sorted(Path(directory).glob(LOG_GLOB)):
        for line in p.read_text().splitlines():
            try:
                out.append(json.loads(line))
            except ValueError:
                continue
    return out


class AuditLog:
    """Append-only decision log plus FAIL images under a disk budget, with a spool for a failing disk."""

    def __init__(self, cfg: AuditConfig, alarm: AlarmFn, clock: Callable[[], float] = time.monotonic) -> None:
        self.cfg, self.alarm, self.clock = cfg, alarm, clock
        self.dir = Path(cfg.dir)
        self.where = AuditDir(self.dir)
        self.images = ImageStore(self.dir / "images", cfg.image_budget_mb * 1e6, cfg.image_reserve_mb * 1e6)
        self.fd: int | None = None
        self.path: Path | None = None
        self.size = 0
        self.spool: deque[bytes] = deque()
        self.written = 0
        self.lost = 0
        self._gap: dict[str, Any] | None = None
        self.failing = False
        self.errors = 0
        self.last_retry = -1e9
        self.last_fsync = clock()
        self.last_check = clock()
        try:
            self.where.prepare()
            self.images.scan()
        except OSError as e:
            self._error("cannot open the audit directory", str(e))

    @property
    def spooled(self) -> int:
        return len(self.spool)

    # -- public -----------------------------------------------------------------------------------------------
    def record(self, header: dict[str, Any], image: np.ndarray | None = None, mask: np.ndarray | None = None) -> None:
        """Append one record; for FAIL (and ERROR when configured) results also save the frame and mask."""
        if not self.cfg.enabled:
            return
        header = dict(header)
        encoded = self._images_for(header, image, mask)
        if encoded is not None:
            header["audit_images"] = [f"images/{name}" for name, _ in encoded]
        line = (json.dumps(header, separators=(",", ":"), default=str) + "\n").encode()
        self._enqueue(line)
        self._drain()
        if encoded is not None and not self.spool:
            try:
                self.images.save(encoded)
            except OSError as e:
                self.last_check = -1e9  # look at the directory at the next poll
                self._error(f"cannot save the images of frame {header.get('frame_id')}", str(e))

    def poll(self) -> None:
        """Called regularly (every heartbeat): retry a failing disk, fsync on the interval, check the directory."""
        if not self.cfg.enabled:
            return
        now = self.clock()
        if now - self.last_check >= RETRY_S:
            self.last_check = now
            problem = self.where.problem()
            if problem is not None:
                self._detach(problem)
            elif self.fd is not None and (self.where.replaced or self._deleted()):
                self._close_fd()  # the file is not where a reader looks any more: the next line starts a new one
            self.where.replaced = False
        self._drain()
        if self.cfg.fsync == "interval" and self.fd is not None and now - self.last_fsync >= self.cfg.fsync_interval_s:
            self._fsync()

    def flush(self) -> None:
        """Write what the spool holds if the disk allows, and fsync now (shutdown, SIGHUP)."""
        self.last_retry = -1e9
        self._drain()
        self._fsync()

    def close(self) -> None:
        self.flush()
        if self.spool:
            log.error("audit: %d record(s) could not be written before the stop", len(self.spool))
        self._close_fd()

    # -- the spool and the file ------------------------------------------------------------------------------
    def _enqueue(self, line: bytes) -> None:
        # When the disk works the spool is empty and this line is written at once.
        if len(self.spool) >= max(1, self.cfg.spool_records):
            self._lose(line)
            return
        self.spool.append(line)

    def _lose(self, line: bytes) -> None:
        self.lost += 1
        try:
            rec = json.loads(line)
            ts = rec.get("publish_ts") or rec.get("ts")
        except ValueError:
            ts = None
        if self._gap is None:
            self._gap = {"type": "audit_gap", "lost": 0, "first_ts": ts, "last_ts": ts}
            self.alarm("audit_records_lost", f"audit spool full ({self.cfg.spool_records} records): records are "
                       f"being lost ({self.lost} since start); the disk still refuses writes",
                       {"dir": str(self.dir), "lost_total": self.lost, "spool_records": self.cfg.spool_records})
        self._gap["lost"] += 1
        self._gap["last_ts"] = ts

    def _drain(self) -> None:
        """Write the spool in order, as far as the disk takes it (retried at most every RETRY_S when failing)."""
        if not self.spool:
            return
        now = self.clock()
        if self.failing and now - self.last_retry < RETRY_S:
            return
        self.last_retry = now
        try:
            if self.failing:
                problem = self.where.problem()
                if problem is not None:
                    raise OSError(problem)
            while self.spool:
                self._write(self.spool[0])
                self.spool.popleft()
                if self._gap is not None and not self.spool:
                    gap, self._gap = self._gap, None
                    self._write((json.dumps(gap) + "\n").encode())
        except OSError as e:
            self._error("cannot write", str(e))
            return
        self._ok()

    def _write(self, line: bytes) -> None:
        """One line, whole or not at all: a write the disk cuts short is truncated back."""
        if self.fd is None or self.size > self.cfg.log_file_mb * 1e6:
            self._open()
        try:
            n = os.write(self.fd, line)
        except OSError:
            self._truncate_back()
            raise
        if n != len(line):
            self._truncate_back()
            raise OSError(28, f"short write ({n} of {len(line)} bytes): disk full")
        self.size += n
        self.written += 1
        if self.cfg.fsync == "always":
            self._fsync()

    def _deleted(self) -> bool:
        try:
            return os.fstat(self.fd).st_nlink == 0
        except OSError:
            return True

    def _truncate_back(self) -> None:
        with contextlib.suppress(OSError):
            os.ftruncate(self.fd, self.size)
        if self.size == 0:
            self._close_fd(remove=True)  # a retry must not leave an empty file behind

    def _open(self) -> None:
        self._close_fd()
        problem = self.where.problem()
        if problem is not None:
            raise OSError(problem)
        # A new file per start and per rotation: never append after a previous run's last line.
        path = self.dir / f"decisions-{_stamp(time.time())}.jsonl"
        self.fd, self.path, self.size = create_file(path), path, 0
        with contextlib.suppress(OSError):
            fsync_dir(self.dir)
        self._enforce_log_budget()

    def _close_fd(self, remove: bool = False) -> None:
        if self.fd is None:
            return
        if not remove:
            self._fsync()
        with contextlib.suppress(OSError):
            os.close(self.fd)
        if remove and self.path is not None:
            with contextlib.suppress(OSError):
                self.path.unlink()
        self.fd = None

    def _fsync(self) -> None:
        if self.fd is None:
            return
        try:
            os.fsync(self.fd)
            self.last_fsync = self.clock()
        except OSError as e:
            self._error("cannot fsync", str(e))

    def _detach(self, problem: str) -> None:
        """The directory moved to another filesystem: stop writing into a file nobody will find."""
        self._close_fd()
        self._error("the audit directory is not usable", problem)

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

    # -- images and alarms ------------------------------------------------------------------------------------
    def _images_for(self, header: dict[str, Any], image: np.ndarray | None,
                    mask: np.ndarray | None) -> list[tuple[str, bytes]] | None:
        d = header.get("decision")
        wanted = (self.cfg.save_images == "fail" and d == "FAIL") or (
            self.cfg.save_images == "fail_and_error" and d in ("FAIL", "ERROR"))
        if not wanted or image is None:
            return None
        if self.failing or self.spool:
            self.images.skipped += 1  # the decision lines come first
            return None
        stem = f"{_stamp(header.get('capture_ts') or time.time())}_{header.get('frame_id')}_{d}"
        items = [(f"{stem}.{self.cfg.image_format}", image)]
        if mask is not None:
            items.append((f"{stem}_mask.png", mask))
        try:
            return self.images.encode(items)
        except (OSError, ValueError) as e:
            log.error("audit: cannot encode the images of frame %s: %s", header.get("frame_id"), e)
            return None

    def _error(self, what: str, why: str) -> None:
        self.errors += 1
        if not self.failing:
            self.failing = True
            log.error("audit: %s: %s (inspection continues; records wait in memory)", what, why)
            self.alarm("audit_error", f"audit trail: {what}: {why}; inspection continues, records wait in memory "
                       f"(up to {self.cfg.spool_records})", {"dir": str(self.dir), "error": why})

    def _ok(self) -> None:
        if self.failing:
            self.failing = False
            log.warning("audit: writes work again after %d error(s); %d record(s) lost", self.errors, self.lost)
            self.alarm("audit_recovered", f"audit trail writes work again; the spool was written in order, "
                       f"{self.lost} record(s) lost since start",
                       {"dir": str(self.dir), "errors": self.errors, "lost_total": self.lost})

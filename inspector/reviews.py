"""A product's reviews on disk: an operator's verdict on each reject, with the frame and mask it was about.

Layout (``<home>/reviews/<product>/``, directory mode 0700, files 0600: frames of a line and who said what
are nobody else's business on a shared line PC)::

    reviews.sqlite          one row per review: what was decided, the verdict, who, when, a note
    frames/<id>.png         the inspected frame, lossless, exactly as the daemon inspected it
    masks/<id>.png          the published defect mask at frame size (0 / 255), when there was one

Verdicts: ``false_reject`` (a good part the line rejected) and ``confirmed_defect``. A reject may be reviewed
again; every review is kept and the latest one per reject counts (:meth:`ReviewStore.latest`).

Written by the operator station (``inspector station``); read by ``inspector review``,
``inspector calibrate --reviewed`` (false rejects as good images, confirmed defects as defective ones) and
``inspector train --add-reviewed`` (false rejects as good training images).
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import shutil
import sqlite3
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import cv2
import numpy as np

from inspector.bundle import check_product, home_dir
from inspector.errors import DataError

SCHEMA = 1
VERDICTS = ("false_reject", "confirmed_defect")
MAX_NOTE = 1000
# The folder-layout directory of confirmed defects in an export (and their defect type in calibration).
DEFECT_DIR = "reviewed_defect"

_COLUMNS = ("id", "reject_key", "line", "product", "frame_id", "part_id", "capture_ts", "decision", "score",
            "normalized_score", "threshold", "calibration_id", "model_sha", "verdict", "note", "who",
            "reviewed_at", "frame", "mask", "frame_sha256")
_CREATE = f"""
CREATE TABLE IF NOT EXISTS reviews (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    reject_key TEXT NOT NULL, line TEXT NOT NULL, product TEXT NOT NULL, frame_id INTEGER, part_id TEXT,
    capture_ts REAL NOT NULL, decision TEXT NOT NULL, score REAL, normalized_score REAL, threshold REAL,
    calibration_id TEXT, model_sha TEXT,
    verdict TEXT NOT NULL CHECK (verdict IN {VERDICTS!r}), note TEXT NOT NULL, who TEXT NOT NULL,
    reviewed_at TEXT NOT NULL, frame TEXT NOT NULL, mask TEXT, frame_sha256 TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS reviews_key ON reviews (reject_key);
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
INSERT OR IGNORE INTO meta VALUES ('schema', '{SCHEMA}');
"""


@dataclass(frozen=True)
class Rejected:
    """What the line decided about one frame (from its published result)."""

    line: str
    product: str
    frame_id: int | None
    part_id: str | None
    capture_ts: float  # Unix seconds
    decision: str  # FAIL or ERROR
    score: float | None = None
    normalized_score: float | None = None
    threshold: float | None = None
    calibration_id: str | None = None
    model_sha: str | None = None

    @property
    def key(self) -> str:
        """Identifies the reject across reviews: line, frame id and capture time (ms)."""
        return f"{self.line}:{self.frame_id}:{round(self.capture_ts * 1000)}"


@dataclass(frozen=True)
class Review:
    """One stored review; ``frame`` and ``mask`` are absolute paths (mask None when none was published)."""

    id: int
    reject_key: str
    line: str
    product: str
    frame_id: int | None
    part_id: str | None
    capture_ts: float
    decision: str
    score: float | None
    normalized_score: float | None
    threshold: float | None
    calibration_id: str | None
    model_sha: str | None
    verdict: str
    note: str
    who: str
    reviewed_at: str  # ISO 8601, UTC
    frame: Path
    mask: Path | None
    frame_sha256: str


def reviews_dir(home: str | Path | None, product: str) -> Path:
    """``<home>/reviews/<product>``."""
    return home_dir(home) / "reviews" / check_product(product)


def reviewed_products(home: str | Path | None) -> list[str]:
    """Products with a review database under ``<home>/reviews``."""
    root = home_dir(home) / "reviews"
    return sorted(p.name for p in root.iterdir() if (p / "reviews.sqlite").is_file()) if root.is_dir() else []


def _private_dir(path: Path) -> None:
    path.mkdir(mode=0o700, parents=True, exist_ok=True)
    os.chmod(path, 0o700)


def _write_private(path: Path, data: bytes) -> None:
    """Write ``data`` atomically to a file only its owner can read."""
    tmp = path.with_name(f".{path.name}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    os.replace(tmp, path)


def _check_png(data: bytes, what: str, gray: bool) -> np.ndarray:
    img = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_GRAYSCALE if gray else cv2.IMREAD_COLOR) \
        if data[:8] == b"\x89PNG\r\n\x1a\n" else None
    if img is None:
        raise DataError(f"the {what} of a review must be a PNG image; got {len(data)} bytes that are not one")
    return img


class ReviewStore:
    """The reviews of one product under ``<home>/reviews/<product>``; created (private) on first write."""

    def __init__(self, home: str | Path | None, product: str) -> None:
        self.product = check_product(product)
        self.dir = reviews_dir(home, product)
        self.db = self.dir / "reviews.sqlite"

    @contextlib.contextmanager
    def _connect(self, create: bool) -> Iterator[sqlite3.Connection]:
        if create:
            for d in (self.dir, self.dir / "frames", self.dir / "masks"):
                _private_dir(d)
            if not self.db.exists():  # created 0600 before SQLite touches it (its journals inherit the mode)
                os.close(os.open(self.db, os.O_WRONLY | os.O_CREAT, 0o600))
        elif not self.db.is_file():
            raise DataError(f"no reviews for product '{self.product}' at {self.db}; review rejects in "
                            "`inspector station` first")
        con = sqlite3.connect(self.db, timeout=10.0)
        try:
            if create:
                con.executescript(_CREATE)
            yield con
            con.commit()
        finally:
            con.close()

    def add(self, rejected: Rejected, verdict: str, who: str, frame_png: bytes, mask_png: bytes | None = None,
            note: str = "", now: datetime | None = None) -> Review:
        """Store a review with its frame (PNG, colour) and mask (PNG, grey, frame size); DataError on bad input."""
        if rejected.product != self.product:
            raise DataError(f"a reject of product '{rejected.product}' cannot be stored with '{self.product}'")
        if verdict not in VERDICTS:
            raise DataError(f"verdict must be one of {VERDICTS}, got {verdict!r}")
        if not who or len(who) > 100:
            raise DataError("a review needs who made it (1 to 100 characters)")
        if len(note) > MAX_NOTE:
            raise DataError(f"a review note is at most {MAX_NOTE} characters, got {len(note)}")
        frame = _check_png(frame_png, "frame", gray=False)
        if mask_png is not None and _check_png(mask_png, "mask", gray=True).shape != frame.shape[:2]:
            raise DataError("the review's mask must have the frame's size")
        when = (now or datetime.now(UTC)).astimezone(UTC).replace(microsecond=0).isoformat()
        with self._connect(create=True) as con:
            cur = con.execute(
                "INSERT INTO reviews (reject_key, line, product, frame_id, part_id, capture_ts, decision, score, "
                "normalized_score, threshold, calibration_id, model_sha, verdict, note, who, reviewed_at, frame, "
                "mask, frame_sha256) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, '', NULL, ?)",
                (rejected.key, rejected.line, rejected.product, rejected.frame_id, rejected.part_id,
                 rejected.capture_ts, rejected.decision, rejected.score, rejected.normalized_score,
                 rejected.threshold, rejected.calibration_id, rejected.model_sha, verdict, note, who, when,
                 hashlib.sha256(frame_png).hexdigest()))
            rid = int(cur.lastrowid)
            frame_rel, mask_rel = f"frames/{rid:06d}.png", None if mask_png is None else f"masks/{rid:06d}.png"
            _write_private(self.dir / frame_rel, frame_png)
            if mask_png is not None:
                _write_private(self.dir / mask_rel, mask_png)
            con.execute("UPDATE reviews SET frame = ?, mask = ? WHERE id = ?", (frame_rel, mask_rel, rid))
        return self.get(rid)

    def _rows(self, where: str = "", args: tuple = ()) -> list[Review]:
        with self._connect(create=False) as con:
            rows = con.execute(f"SELECT {', '.join(_COLUMNS)} FROM reviews {where} ORDER BY id", args).fetchall()
        out = []
        for row in rows:
            d = dict(zip(_COLUMNS, row, strict=True))
            d["frame"] = self.dir / d["frame"]
            d["mask"] = self.dir / d["mask"] if d["mask"] else None
            out.append(Review(**d))
        return out

    def get(self, review_id: int) -> Review:
        rows = self._rows("WHERE id = ?", (review_id,))
        if not rows:
            raise DataError(f"no review {review_id} for product '{self.product}'")
        return rows[0]

    def all(self) -> list[Review]:
        """Every review, oldest first (an empty list when none was ever stored)."""
        return self._rows() if self.db.is_file() else []

    def latest(self) -> list[Review]:
        """The latest review of each reject, oldest reject first."""
        by_key: dict[str, Review] = {}
        for r in self.all():
            by_key[r.reject_key] = r
        return sorted(by_key.values(), key=lambda r: r.id)

    def export(self, out: str | Path) -> dict[str, int]:
        """Write the latest reviews in the folder layout: ``good/`` (false rejects), ``reviewed_defect/``
        (confirmed defects) and ``masks/`` (their masks), usable as ``--data``. Returns the counts."""
        out = Path(out)
        counts = {"good": 0, DEFECT_DIR: 0, "masks": 0}
        for r in self.latest():
            kind = "good" if r.verdict == "false_reject" else DEFECT_DIR
            (out / kind).mkdir(parents=True, exist_ok=True)
            name = f"review_{r.id:06d}.png"
            shutil.copyfile(r.frame, out / kind / name)
            counts[kind] += 1
            if kind == DEFECT_DIR and r.mask is not None and r.mask.is_file():
                (out / "masks").mkdir(parents=True, exist_ok=True)
                shutil.copyfile(r.mask, out / "masks" / name)
                counts["masks"] += 1
        return counts

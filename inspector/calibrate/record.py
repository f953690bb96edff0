"""A product's calibration record: ``<home>/calibration/<product>.yaml``, bound to one model.

The record is read at run time by the daemon, so this module needs no scipy or sklearn. It is written
by ``inspector calibrate`` and is meant to be read and signed by a quality engineer: thresholds, what
they were fitted on, and the false-reject and escape rates to expect, each with a 95% interval.

Decision rule: an image FAILS iff ``score >= image_threshold``; defect regions are the 8-connected
components of ``anomaly_map >= pixel_threshold`` with at least ``min_region_area`` pixels at the map's
resolution (``mask_size``). See :mod:`inspector.calibrate.thresholds`.

A record whose ``model_sha256`` differs from the bundle's model (``Manifest.model_sha``) is refused:
a threshold is only meaningful for the exact model whose scores it was fitted to. Saving over an
existing record first renames the old one to ``<product>.<its creation time>.yaml``.

Integrity: ``content_sha256`` is the sha256 of the record's canonical content (:func:`content_hash`),
written by ``inspector calibrate``. A record whose content does not match it (edited by hand, corrupted)
is refused with the reason; a deliberate change goes through ``inspector calibrate --set-threshold``,
which writes a new record with a new id and keeps the old one. A record written before hashes existed
(no ``content_sha256``) still loads, flagged unsigned (``signed`` is False): the daemon raises a
``calibration_unsigned`` event and shows it in ``status`` until ``inspector calibrate --sign`` adds the hash.
The hash guards against accidents and unreviewed edits, not against someone who recomputes it.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from inspector.bundle import check_product, home_dir
from inspector.config import load_dataclass, read_yaml, to_dict
from inspector.errors import CalibrationError, ConfigError
from inspector.files import write_text_atomic
from inspector.manifest import Manifest

SCHEMA = 1
POLICIES = ("conformal", "f1", "cost", "escape", "manual")  # manual: --set-threshold
PIXEL_POLICIES = ("conformal", "f1")


@dataclass(frozen=True)
class Rate:
    """An error rate: point ``estimate`` and 95% Clopper-Pearson [``lower``, ``upper``] from ``count`` of ``n``.

    ``basis`` says in words how the estimate was obtained (conformal bound, held-out count, leave-one-out).
    """

    estimate: float = field(metadata={"min": 0.0, "max": 1.0})
    lower: float = field(metadata={"min": 0.0, "max": 1.0})
    upper: float = field(metadata={"min": 0.0, "max": 1.0})
    count: int = field(metadata={"min": 0})
    n: int = field(metadata={"min": 1})
    basis: str = ""

    def contains(self, rate: float) -> bool:
        return self.lower <= rate <= self.upper


@dataclass(frozen=True)
class ScoreStats:
    """Summary of a set of image scores (raw model units)."""

    n: int
    mean: float
    std: float
    min: float
    p50: float
    p95: float
    p99: float
    max: float

    @staticmethod
    def of(scores: np.ndarray) -> ScoreStats:
        s = np.asarray(scores, dtype=np.float64).ravel()
        p50, p95, p99 = (float(v) for v in np.quantile(s, [0.5, 0.95, 0.99]))
        return ScoreStats(int(s.size), float(s.mean()), float(s.std()), float(s.min()), p50, p95, p99, float(s.max()))


@dataclass(frozen=True)
class CalibrationRecord:
    """Everything a calibration decided and why. Loaded strictly: unknown keys and bad values are errors."""

    id: str  # "<product>-<UTC time>", unique per calibration
    product: str
    created: str  # ISO 8601, UTC
    model_sha256: str  # the checkpoint the thresholds belong to (manifest checkpoint.sha256)
    onnx_sha256: Any  # {"fp32": sha, "fp16": sha, "fp32-ort": sha, "int8": sha}: the manifest's, as exported
    policy: str = field(metadata={"choices": POLICIES})
    parameters: Any  # the policy's parameters: target_frr, target_escape, c_escape, c_reject, pixel_alpha
    image_threshold: float
    pixel_threshold: float
    pixel_policy: str = field(metadata={"choices": PIXEL_POLICIES})
    min_region_area: int = field(metadata={"min": 1})  # pixels at mask_size
    mask_size: tuple[int, ...]  # (h, w) of the anomaly maps the pixel threshold applies to
    n_good: int = field(metadata={"min": 1})
    n_defective: int = field(metadata={"min": 0})
    good_scores: ScoreStats
    defective_scores: ScoreStats | None
    expected_frr: Rate | None  # None after --set-threshold: the rates were not re-estimated for it
    expected_escape: Rate | None  # None without defective images: no escape-rate promise is made
    backend: Any  # Backend.describe() of what scored the images
    versions: Any
    data: Any  # where the images came from and their fingerprints
    schema: int = SCHEMA
    content_sha256: str = ""  # sha256 of everything above (content_hash); "" in records made before hashes

    @property
    def signed(self) -> bool:
        return bool(self.content_sha256)

    def validate(self, source: str) -> None:
        if self.schema != SCHEMA:
            raise ConfigError(f"{source}: calibration schema {self.schema} is not supported (expected {SCHEMA})")
        if not (np.isfinite(self.image_threshold) and np.isfinite(self.pixel_threshold)):
            raise ConfigError(f"{source}: thresholds must be finite numbers")
        if len(self.mask_size) != 2:
            raise ConfigError(f"{source}: key 'mask_size' must be [h, w], got {list(self.mask_size)}")


def calibration_dir(home: str | Path | None) -> Path:
    """``<home>/calibration``."""
    return home_dir(home) / "calibration"


def calibration_path(home: str | Path | None, product: str) -> Path:
    """``<home>/calibration/<product>.yaml``."""
    return calibration_dir(home) / f"{check_product(product)}.yaml"


def report_path(home: str | Path | None, product: str) -> Path:
    """``<home>/calibration/<product>.report.png``."""
    return calibration_dir(home) / f"{check_product(product)}.report.png"


def record_from_dict(data: dict[str, Any], source: str) -> CalibrationRecord:
    """Strictly build a record from parsed YAML; ConfigError names the key and the file."""
    return load_dataclass(CalibrationRecord, data, source)


def content_hash(record: CalibrationRecord) -> str:
    """sha256 of the record's canonical content: its fields but the hash, as sorted compact JSON."""
    data = to_dict(record)
    data.pop("content_sha256", None)
    text = json.dumps(data, sort_keys=True, separators=(",", ":"), allow_nan=False, default=str)
    return hashlib.sha256(text.encode()).hexdigest()


def signed(record: CalibrationRecord) -> CalibrationRecord:
    """The record with its content hash filled in."""
    return dataclasses.replace(record, content_sha256=content_hash(record))


def verify(record: CalibrationRecord, source: str) -> None:
    """Refuse a record whose content does not match its hash (an unsigned one passes: see the module doc)."""
    if not record.content_sha256:
        return
    actual = content_hash(record)
    if actual != record.content_sha256:
        raise CalibrationError(
            f"{source}: content hash mismatch (the record says {record.content_sha256[:12]}, its content hashes to "
            f"{actual[:12]}): it was edited by hand or corrupted. A deliberate threshold change goes through "
            f"`inspector calibrate --product {record.product} --set-threshold X`; to start over, "
            f"`inspector calibrate --product {record.product}`"
        )


def load_calibration(home: str | Path | None, product: str, manifest: Manifest | None = None) -> CalibrationRecord:
    """Load ``<home>/calibration/<product>.yaml``; with ``manifest``, refuse a record for another model."""
    path = calibration_path(home, product)
    if not path.is_file():
        raise CalibrationError(
            f"no calibration for product '{product}' at {path}; run `inspector calibrate --product {product}`"
        )
    try:
        record = record_from_dict(read_yaml(path), str(path))
    except ConfigError as e:
        raise CalibrationError(f"invalid calibration record: {e}") from e
    verify(record, str(path))
    if record.product != product:
        raise CalibrationError(f"{path} is the calibration of product '{record.product}', not '{product}'")
    if manifest is not None:
        sha = manifest.model_sha
        if record.model_sha256 != sha:
            raise CalibrationError(
                f"{path} was made for model {record.model_sha256[:12]}, but the bundle's model is {sha[:12]}; "
                f"its thresholds do not apply to this model: re-run `inspector calibrate --product {product}`"
            )
    return record


def _stamp(created: str) -> str:
    """A file-name-safe UTC time stamp from an ISO time: 20250101T120000Z."""
    try:
        t = datetime.fromisoformat(created)
    except ValueError:
        return "undated"
    return t.strftime("%Y%m%dT%H%M%SZ")


def archive_previous(path: Path) -> Path | None:
    """Rename an existing record (and its report) to a name dated by its creation time; return the new path."""
    if not path.exists():
        return None
    try:
        created = str(read_yaml(path).get("created", ""))
    except ConfigError:
        created = ""  # an unreadable record is still kept, under an 'undated' name
    stem = path.name[: -len(".yaml")]
    base = f"{stem}.{_stamp(created)}"
    i = 0
    while (dest := path.with_name(f"{base}{f'.{i}' if i else ''}.yaml")).exists():
        i += 1
    os.replace(path, dest)
    report = path.with_name(f"{stem}.report.png")
    if report.exists():
        os.replace(report, dest.with_name(dest.name[: -len(".yaml")] + ".report.png"))
    return dest


HEADER = """\
# inspector calibration record (schema {schema}) for product '{product}'.
# An image FAILS iff score >= image_threshold. Defect regions: connected components of
# anomaly_map >= pixel_threshold with area >= min_region_area pixels (at mask_size).
# Valid only for the model with sha256 {model}; re-run `inspector calibrate` after retraining.
# content_sha256 seals this record: a hand edit is refused. Change the threshold with
# `inspector calibrate --product {product} --set-threshold X` (a new record; this one is kept, dated).
"""


def save_calibration(record: CalibrationRecord, path: Path, archive: bool = True) -> Path | None:
    """Write ``record`` signed (its content hash filled in) as YAML at ``path``, atomically, archiving any
    previous one (unless ``archive`` is False: re-signing the same record); returns the archive path."""
    path.parent.mkdir(parents=True, exist_ok=True)
    archived = archive_previous(path) if archive else None
    record = signed(record)
    text = HEADER.format(schema=record.schema, product=record.product, model=record.model_sha256)
    text += yaml.safe_dump(to_dict(record), sort_keys=False, default_flow_style=None, width=110)
    write_text_atomic(path, text)
    return archived

"""`inspector calibrate`: fit a product's thresholds on images the model never trained on, and check them.

Images (``inspector.calibrate.images``): by default the good images that training held out;
``--data`` adds every image of another dataset (MVTec: train/good and the whole test split; folder
layout: good/ and the defect directories, masks included). Any calibration image whose fingerprint is
in the checkpoint's training set is refused by name: a threshold fitted on training images promises a
false-reject rate the line will not see.

Scores come from a :class:`inspector.runtime.base.Backend`, so a calibration made with one backend
records which, and holds for the others up to their numerical agreement.

``check`` applies an existing record to new labelled data and compares the observed rates with the
record's 95% intervals. The thresholds themselves are fitted in :mod:`inspector.calibrate.thresholds`.
"""

from __future__ import annotations

import dataclasses
import json
import logging
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from inspector.bundle import Checkpoint, bundle_dir, load_checkpoint, model_path
from inspector.calibrate import rule
from inspector.calibrate import thresholds as th
from inspector.calibrate.images import Scored, gather, refuse_overlap, reviewed_samples, score
from inspector.calibrate.record import (
    CalibrationRecord,
    Rate,
    ScoreStats,
    calibration_path,
    load_calibration,
    report_path,
    save_calibration,
    signed,
)
from inspector.data.dataset import fingerprint, load_dataset
from inspector.device import versions
from inspector.errors import CalibrationError, CheckpointError, ConfigError, DataError
from inspector.runtime.base import Backend

log = logging.getLogger(__name__)
CONFIDENCE = 0.95


@dataclass(frozen=True)
class Policy:
    """How to set the thresholds. ``name``: conformal | f1 | cost | escape (target escape rate).

    ``target_frr`` is also the alpha of the minimum region area; ``pixel_alpha`` the per-pixel rate of
    the conformal pixel threshold; ``pixel_policy`` auto = f1 when defect masks are given, else conformal.
    """

    name: str = "conformal"
    target_frr: float = 0.01
    target_escape: float | None = None
    c_escape: float | None = None
    c_reject: float | None = None
    pixel_alpha: float = 0.001
    pixel_policy: str = "auto"
    min_area: int | None = None  # fixed minimum region area instead of the fitted one

    def validate(self) -> None:
        if self.name not in ("conformal", "f1", "cost", "escape"):
            raise ConfigError(f"unknown policy {self.name!r}; allowed: conformal, f1, cost, escape")
        if not 0 < self.target_frr < 1 or not 0 < self.pixel_alpha < 1:
            raise ConfigError(f"--target-frr and --pixel-alpha must be in (0, 1); got {self.target_frr}, {self.pixel_alpha}")
        if self.name == "cost" and (self.c_escape is None or self.c_reject is None):
            raise ConfigError("--policy cost needs both --c-escape and --c-reject (cost per escaped / rejected part)")
        if self.name == "escape" and self.target_escape is None:
            raise ConfigError("the escape policy needs --target-escape R")
        if self.pixel_policy not in ("auto", "conformal", "f1"):
            raise ConfigError(f"unknown pixel policy {self.pixel_policy!r}; allowed: auto, conformal, f1")
        if self.min_area is not None and self.min_area < 1:
            raise ConfigError(f"--min-area must be >= 1 pixel, got {self.min_area}")


@dataclass(frozen=True)
class CalibrationRun:
    """What `calibrate` produced: the record, where it was written, what it replaced, and the scores."""

    record: CalibrationRecord
    path: Path
    report: Path | None
    archived: Path | None
    scored: Scored


# --- fitting -------------------------------------------------------------------------------------


def rate(count: int, n: int, basis: str, estimate: float | None = None) -> Rate:
    lo, hi = th.clopper_pearson(count, n, CONFIDENCE)
    return Rate(float(count / n if estimate is None else estimate), lo, hi, int(count), int(n), basis)


def fit_image(policy: Policy, good: np.ndarray, bad: np.ndarray) -> tuple[float, Rate, Rate | None]:
    """(image threshold, expected FRR, expected escape rate or None) for ``policy``."""
    if policy.name == "conformal":
        q = th.conformal_quantile(good, policy.target_frr)
        n_fail = int(rule.fails(good, q.threshold).sum())
        frr = rate(n_fail, q.n, f"conformal: a new good image fails with probability (n+1-k)/(n+1) = "
                   f"{q.n + 1 - q.rank}/{q.n + 1} <= {policy.target_frr:g} (k={q.rank}, n={q.n}); the interval is "
                   f"Clopper-Pearson on the {n_fail} of {q.n} calibration images that fail", q.expected_rate)
        esc = None
        if bad.size:
            n_esc = int((~rule.fails(bad, q.threshold)).sum())
            esc = rate(n_esc, bad.size, "count of defective images passing a threshold fitted on good images only")
        return q.threshold, frr, esc

    def fit(g: np.ndarray, b: np.ndarray) -> th.Operating:
        if policy.name == "f1":
            return th.f1_threshold(g, b)
        if policy.name == "cost":
            return th.cost_threshold(g, b, policy.c_escape, policy.c_reject)
        return th.escape_target_threshold(g, b, policy.target_escape)

    op = fit(good, bad)
    fr, esc = th.leave_one_out(good, bad, lambda g, b: fit(g, b).threshold)
    basis = (f"leave-one-out: each image judged by the {policy.name} threshold fitted without it "
             f"(in-sample: {op.false_rejects} false rejects, {op.escapes} escapes)")
    return op.threshold, rate(fr, good.size, basis), rate(esc, bad.size, basis)


def fit_pixels(policy: Policy, scored: Scored) -> tuple[float, str, int]:
    """(pixel threshold, pixel policy used, minimum region area in pixels)."""
    good = scored.labels == 0
    masked_bad = (scored.labels == 1) & scored.has_mask
    kind = policy.pixel_policy
    if kind == "auto":
        kind = "f1" if masked_bad.any() else "conformal"
    if kind == "f1":
        if not masked_bad.any():
            raise CalibrationError("--pixel-policy f1 needs defective images with masks in --data")
        sel = good | masked_bad
        thr = th.pixel_f1_threshold(scored.maps[sel], scored.masks[sel]).threshold
    else:
        thr = th.pixel_conformal_threshold(scored.maps[good], policy.pixel_alpha).threshold
    if policy.min_area is not None:
        return thr, kind, policy.min_area
    try:
        area = th.min_region_area(scored.maps[good], thr, policy.target_frr)
    except CalibrationError as e:
        raise CalibrationError(f"{e}; or fix the minimum region area with --min-area N") from e
    return thr, kind, area


def calibrate(product: str, home: str | Path | None = None, data: str | Path | None = None,
              policy: Policy | None = None, backend: str | Backend = "auto", device: str = "auto",
              threads: int = 0, write_report: bool = True, reviewed: bool = False) -> CalibrationRun:
    """Calibrate ``product`` and write ``<home>/calibration/<product>.yaml`` (and the report PNG).

    ``backend`` is a backend name for :func:`inspector.runtime.open_backend` or an open Backend (which
    the caller keeps ownership of). ``reviewed`` adds the operators' reviews of rejects (inspector.reviews).
    """
    from inspector.manifest import load_manifest

    policy = policy or Policy()
    policy.validate()
    ckpt = load_checkpoint(model_path(home, product))
    manifest = load_manifest(bundle_dir(home, product))
    if manifest.model_sha != ckpt.sha256:
        raise CheckpointError(
            f"the export manifest of '{product}' belongs to model {manifest.model_sha[:12]}, but model.pt is "
            f"{ckpt.sha256[:12]}; re-run `inspector export --product {product}` first"
        )
    extra = reviewed_samples(home, product) if reviewed else []
    if data is None:  # fail before scoring when the hold-out (and reviews) alone cannot do what was asked
        if policy.name != "conformal" and not any(s.label for s in extra):
            raise CalibrationError(f"policy {policy.name} needs defective images: give them with --data DIR")
        n_good = len(ckpt.fingerprints("holdout")) + sum(s.label == 0 for s in extra)
        th.require_samples(n_good, policy.target_frr,
                           "held-out and reviewed good images" if extra else "held-out good images")
    samples, fps = gather(ckpt, data, extra)
    with _opened(backend, home, product, device, threads) as be:
        scored = score(be, samples, fps, manifest.roi_box)
        described = be.describe()
    labels = scored.labels
    good, bad = scored.scores[labels == 0], scored.scores[labels == 1]
    log.info("scored %d good and %d defective images with %s", good.size, bad.size, described.get("backend"))
    if good.size == 0:
        raise CalibrationError("no good images to calibrate on")
    image_thr, frr, esc = fit_image(policy, good, bad)
    pixel_thr, pixel_kind, area = fit_pixels(policy, scored)
    now = datetime.now(UTC).replace(microsecond=0)
    onnx = {k: v.sha256 for k, v in manifest.onnx.items()}
    record = CalibrationRecord(
        id=f"{product}-{now.strftime('%Y%m%dT%H%M%SZ')}", product=product, created=now.isoformat(),
        model_sha256=manifest.model_sha, onnx_sha256=onnx, policy=policy.name,
        parameters=_parameters(policy), image_threshold=float(image_thr), pixel_threshold=float(pixel_thr),
        pixel_policy=pixel_kind, min_region_area=int(area), mask_size=tuple(int(v) for v in scored.maps.shape[1:]),
        n_good=int(good.size), n_defective=int(bad.size), good_scores=ScoreStats.of(good),
        defective_scores=ScoreStats.of(bad) if bad.size else None, expected_frr=frr, expected_escape=esc,
        backend=_plain(described), versions=versions(), data=_data_info(ckpt, data, scored, extra),
    )
    path = calibration_path(home, product)
    record = signed(record)  # what is written: sealed by its content hash
    archived = save_calibration(record, path)
    if archived:
        log.info("the previous calibration was kept as %s", archived)
    png = None
    if write_report:
        from inspector.calibrate.report import write_report as _write

        png = _write(report_path(home, product), record, scored)
    return CalibrationRun(record, path, png, archived, scored)


def _parameters(policy: Policy) -> dict[str, Any]:
    keys = {"conformal": ("target_frr",), "f1": (), "cost": ("c_escape", "c_reject"), "escape": ("target_escape",)}
    out = {k: getattr(policy, k) for k in keys[policy.name]}
    out.update(pixel_policy=policy.pixel_policy, pixel_alpha=policy.pixel_alpha, region_alpha=policy.target_frr,
               min_area=policy.min_area, confidence=CONFIDENCE)
    return out


def _data_info(ckpt: Checkpoint, data: str | Path | None, scored: Scored,
               reviewed: list | None = None) -> dict[str, Any]:
    used = [s for s in reviewed or () if s.path in {t.path for t in scored.samples}]  # after de-duplication
    return {
        "holdout_root": ckpt.data.root,
        "extra": str(Path(data).resolve()) if data is not None else None,
        # Reviews by operators (inspector station): how many of each verdict this calibration includes.
        "reviewed": None if not reviewed else {
            "dir": str(Path(reviewed[0].path).resolve().parents[1]),
            "false_rejects": sum(s.label == 0 for s in used), "confirmed_defects": sum(s.label for s in used),
        },
        "resized": scored.resized,
        "images": [{"name": s.path.name, "label": int(s.label), "sha256": fp}
                   for s, fp in zip(scored.samples, scored.fingerprints, strict=True)],
    }


def _plain(obj: Any) -> Any:
    """JSON round trip: tuples, numpy scalars and paths become plain YAML-able values."""
    return json.loads(json.dumps(obj, default=str))


@contextmanager
def _opened(backend: str | Backend, home: str | Path | None, product: str, device: str,
            threads: int) -> Iterator[Backend]:
    """Open a backend by name (and close it after), or pass an open one through (the caller closes it)."""
    if isinstance(backend, Backend):
        yield backend
        return
    from inspector.runtime import open_backend

    opened = open_backend(backend, home, product, device=device, threads=threads)
    try:
        yield opened
    finally:
        opened.close()


# --- deliberate changes ---------------------------------------------------------------------------


def set_threshold(product: str, threshold: float, home: str | Path | None = None) -> tuple[CalibrationRecord, Path,
                                                                                          Path | None]:
    """A new record for ``product`` with the image threshold set by hand: a new id, policy ``manual``, the old
    record kept under its dated name. Returns (record, path, archived).

    The expected rates are not re-estimated for a hand-set threshold (``expected_frr``/``expected_escape``
    become None, "no promise"); ``inspector calibrate --check --data DIR`` measures them. The pixel threshold
    and minimum region area are kept.
    """
    if not (np.isfinite(threshold) and threshold > 0):
        raise ConfigError(f"--set-threshold must be a finite number > 0 (scores are >= 0), got {threshold}")
    path = calibration_path(home, product)
    old = load_calibration(home, product)
    now = datetime.now(UTC).replace(microsecond=0)
    new_id = f"{product}-{now.strftime('%Y%m%dT%H%M%SZ')}"
    if new_id == old.id:
        raise CalibrationError(f"calibration {old.id} was written this second; wait a second so the new one gets "
                               "its own id")
    record = dataclasses.replace(
        old, id=new_id, created=now.isoformat(), policy="manual", image_threshold=float(threshold),
        parameters={"set_by_hand": True, "previous_id": old.id, "previous_policy": old.policy,
                    "previous_image_threshold": old.image_threshold},
        expected_frr=None, expected_escape=None, versions=versions(), content_sha256="")
    archived = save_calibration(record, path)
    return load_calibration(home, product), path, archived


def sign(product: str, home: str | Path | None = None) -> tuple[CalibrationRecord, Path]:
    """Add the content hash to a record written before hashes existed (same id, same content)."""
    path = calibration_path(home, product)
    record = load_calibration(home, product)
    if record.signed:
        raise CalibrationError(f"{path} is already signed ({record.content_sha256[:12]}); nothing to do")
    save_calibration(record, path, archive=False)
    return load_calibration(home, product), path


# --- check ---------------------------------------------------------------------------------------


def check(product: str, data: str | Path, home: str | Path | None = None, backend: str | Backend = "auto",
          device: str = "auto", threads: int = 0, json_out: str | Path | None = None) -> dict[str, Any]:
    """Apply the saved calibration to labelled ``data`` (MVTec: its test split; folder: all images).

    Returns (and with ``json_out`` writes) observed FRR and escape rate with 95% intervals, the record's
    promises, and ``drift`` flags where an observed rate falls outside the promised interval.
    """
    from inspector.manifest import load_manifest

    manifest = load_manifest(bundle_dir(home, product))
    record = load_calibration(home, product, manifest)
    ckpt = load_checkpoint(model_path(home, product))
    ds = load_dataset(data)
    samples = list(ds.test) if ds.layout == "mvtec" else list(ds.train) + list(ds.test)
    if not samples:
        raise DataError(f"{data}: no labelled images to check ({ds.summary()})")
    fps = [fingerprint(s.path) for s in samples]
    refuse_overlap(samples, fps, ckpt.fingerprints("train"), "the model was trained on them")
    refuse_overlap(samples, fps, {i["sha256"] for i in record.data.get("images", [])},
                   f"calibration {record.id} was fitted on them")
    with _opened(backend, home, product, device, threads) as be:
        scored = score(be, samples, fps, keep_maps=False)
        described = be.describe()
    labels = scored.labels
    fail = rule.fails(scored.scores, record.image_threshold)
    n_good, n_bad = int((labels == 0).sum()), int((labels == 1).sum())
    out: dict[str, Any] = {
        "product": product, "calibration": record.id, "data": str(Path(data).resolve()),
        "image_threshold": record.image_threshold, "n_good": n_good, "n_defective": n_bad,
        "frr": None, "escape_rate": None, "backend": _plain(described), "drift": {},
    }
    for key, sel, count, promise in (
        ("frr", labels == 0, int(fail[labels == 0].sum()), record.expected_frr),
        ("escape_rate", labels == 1, int((~fail[labels == 1]).sum()), record.expected_escape),
    ):
        n = int(sel.sum())
        if n == 0:
            continue
        lo, hi = th.clopper_pearson(count, n, CONFIDENCE)
        out[key] = count / n
        out[f"{key}_count"] = count
        out[f"{key}_interval"] = [lo, hi]
        out[f"promised_{key}"] = None if promise is None else {
            "estimate": promise.estimate, "interval": [promise.lower, promise.upper]}
        if promise is not None and not promise.contains(count / n):
            out["drift"][key] = "above" if count / n > promise.upper else "below"
    if json_out:
        Path(json_out).parent.mkdir(parents=True, exist_ok=True)
        Path(json_out).write_text(json.dumps(out, indent=2) + "\n")
    return out

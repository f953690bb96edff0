"""What the inference thread runs: a product's backend plus its calibration, and the loader that makes one.

:class:`BundleLoader` is the real loader: the product's export manifest (``inspector.manifest``), a backend
from ``inspector.runtime.open_backend`` and the calibration from ``inspector.calibrate.record``, which
refuses a calibration made for another model, and warms the backend up before it takes the line. The pipeline takes any ``ProductLoader``, so tests inject a
fake backend and thresholds without a model.
"""

from __future__ import annotations

import dataclasses
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import numpy as np

from inspector.errors import CalibrationError, CheckpointError
from inspector.manifest import Manifest
from inspector.runtime.base import Backend
from inspector.stream.decide import Thresholds

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Product:
    """A loaded product: ``frame_hw`` (H, W) frames the backend takes, ``roi`` (x, y, w, h) or None."""

    name: str
    backend: Backend
    calibration: Thresholds
    model_sha: str
    roi: tuple[int, int, int, int] | None
    frame_hw: tuple[int, int]
    manifest: Manifest | None = None


class ProductLoader(Protocol):
    def load(self, name: str) -> Product:
        """Open the backend and calibration of ``name``; InspectorError when it cannot."""

    def reload_calibration(self, product: Product) -> Product:
        """The same product with its calibration read again; InspectorError (and nothing changed) on failure."""


def warm_up(backend: Backend, batch: int, calls: int = 2) -> None:
    """Run a few black frames through a new backend, so the first part on the line (or after a product switch)
    does not pay for memory arenas, kernel selection or CUDA-graph capture."""
    warm = getattr(backend, "warm_up", None)
    if callable(warm):
        warm(min(batch, backend.max_batch))
    frames = np.zeros((1, *backend.frame_shape, 3), np.uint8)
    for _ in range(calls):
        backend.infer(frames)


class BundleLoader:
    """Products from ``<home>/engines/<name>`` (manifest, engines) and ``<home>/calibration/<name>.yaml``."""

    def __init__(self, home: str | Path, backend: str = "auto", device: str = "auto", threads: int = 0,
                 precision: str = "auto", max_batch: int | None = None, spin: bool = False) -> None:
        self.home, self.backend, self.device = home, backend, device
        self.threads, self.precision, self.max_batch, self.spin = threads, precision, max_batch, spin

    def _manifest(self, name: str) -> Manifest:
        from inspector.bundle import bundle_dir
        from inspector.manifest import load_manifest

        return load_manifest(bundle_dir(self.home, name))

    def _calibration(self, name: str, manifest: Manifest) -> Thresholds:
        from inspector.calibrate.record import load_calibration

        return load_calibration(self.home, name, manifest)

    def load(self, name: str) -> Product:
        from inspector.runtime import open_backend

        manifest = self._manifest(name)
        # The calibration is checked first: a product without a valid calibration must not take the line.
        cal = self._calibration(name, manifest)
        backend = open_backend(self.backend, self.home, name, device=self.device, threads=self.threads,
                               max_batch=self.max_batch or None, precision=self.precision, spin=self.spin)
        frame_hw = manifest.frame_shape
        if tuple(backend.frame_shape) != frame_hw:
            backend.close()
            raise CheckpointError(f"{name}: backend frame shape {backend.frame_shape} differs from the manifest's "
                                  f"{frame_hw}; re-run `inspector export --product {name}`")
        try:
            warm_up(backend, self.max_batch or backend.max_batch)
        except Exception:
            backend.close()
            raise
        log.info("product %s: backend %s, calibration %s, model %s", name, backend.describe(),
                 getattr(cal, "id", "?"), manifest.model_sha[:12])
        return Product(name, backend, cal, manifest.model_sha, manifest.roi_box, frame_hw, manifest)

    def reload_calibration(self, product: Product) -> Product:
        if product.manifest is None:
            raise CalibrationError(f"{product.name}: no manifest to check a calibration against")
        cal = self._calibration(product.name, product.manifest)
        return dataclasses.replace(product, calibration=cal)

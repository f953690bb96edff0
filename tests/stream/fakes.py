"""Fakes for the stream tests: a deterministic backend, calibration records, a product loader, test videos.

The fake backend's score is the frame's mean brightness in [0, 1] and its anomaly map is the frame's
grey level in [0, 1] at 16x16, so a test knows every decision in advance: dark frames PASS, frames with a
bright square FAIL with one region where the square is.

``python -m tests.stream.fakes CONFIG.yaml`` runs the real daemon (signals included) with these fakes,
for the subprocess tests.
"""

from __future__ import annotations

import dataclasses
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from inspector.errors import BackendError, CalibrationError, CheckpointError
from inspector.result import InferenceResult
from inspector.runtime.base import Backend
from inspector.stream.product import Product
from inspector.stream.sources import Read, Source

FRAME_HW = (48, 64)
MAP_HW = (16, 16)
SQUARE = (20, 12, 24, 24)  # x, y, w, h of the bright square in FAIL frames
DARK, BRIGHT = 40, 255


class FakeBackend(Backend):
    """score = mean brightness / 255; anomaly_map = grey / 255 at 16x16. ``delay_s`` per batch simulates work."""

    name = "fake"

    def __init__(self, frame_hw: tuple[int, int] = FRAME_HW, max_batch: int = 4, delay_s: float = 0.0,
                 fail: bool = False, nan: bool = False) -> None:
        self._hw, self._max, self.delay_s, self.fail, self.nan = frame_hw, max_batch, delay_s, fail, nan
        self.closed = False
        self.batches: list[int] = []

    @property
    def max_batch(self) -> int:
        return self._max

    @property
    def frame_shape(self) -> tuple[int, int]:
        return self._hw

    def infer(self, frames: np.ndarray) -> InferenceResult:
        if self.closed:
            raise BackendError("fake backend used after close()")
        if frames.dtype != np.uint8 or frames.shape[1:] != (*self._hw, 3) or len(frames) > self._max:
            raise BackendError(f"fake backend: bad input {frames.shape} {frames.dtype}")
        if self.fail:
            raise BackendError("fake backend failure")
        if self.delay_s:
            time.sleep(self.delay_s)
        self.batches.append(len(frames))
        small = np.stack([cv2.resize(f, MAP_HW[::-1], interpolation=cv2.INTER_AREA) for f in frames])
        maps = small.mean(axis=3, dtype=np.float32) / 255.0
        score = np.array([cv2.mean(f)[:3] for f in frames], np.float32).mean(axis=1) / 255.0
        if self.nan:  # a broken model: NaN scores, which must never read as PASS
            score[:] = np.nan
        return InferenceResult(score, maps)

    def describe(self) -> dict:
        return {"backend": "fake", "max_batch": self._max}

    def close(self) -> None:
        self.closed = True


@dataclass(frozen=True)
class FakeCalibration:
    id: str = "fake-cal-1"
    image_threshold: float = 0.25
    pixel_threshold: float = 0.6
    min_region_area: int = 4


class FakeLoader:
    """Products by name: ``products`` maps name -> (frame_hw, FakeCalibration). Unknown names fail like a
    missing bundle. ``reload_calibration`` bumps the calibration id, or fails when ``cal_broken`` is set."""

    def __init__(self, products: dict | None = None, delay_s: float = 0.0, load_s: float = 0.0) -> None:
        self.products = products or {"cable": (FRAME_HW, FakeCalibration()),
                                     "cable2": (FRAME_HW, FakeCalibration("fake-cal-2", 0.3, 0.6, 4)),
                                     "wide": ((48, 96), FakeCalibration()),
                                     "big": ((480, 640), FakeCalibration()),
                                     "broken": (FRAME_HW, FakeCalibration("broken-cal")),
                                     "nan": (FRAME_HW, FakeCalibration("nan-cal"))}
        self.delay_s, self.load_s = delay_s, load_s
        self.cal_broken = False
        self.loaded: list[Product] = []
        self.reloads = 0
        self.lock = threading.Lock()

    def load(self, name: str) -> Product:
        if name not in self.products:
            raise CheckpointError(f"no bundle for product {name!r}: run `inspector export --product {name}` first")
        time.sleep(self.load_s)
        hw, cal = self.products[name]
        backend = FakeBackend(hw, delay_s=self.delay_s, fail=name == "broken", nan=name == "nan")
        p = Product(name, backend, cal, f"sha-{name}", None, hw, {"product": name})
        with self.lock:
            self.loaded.append(p)
        return p

    def reload_calibration(self, product: Product) -> Product:
        if self.cal_broken:
            raise CalibrationError(f"calibration of {product.name} was made for another model; re-run "
                                   f"`inspector calibrate --product {product.name}`")
        self.reloads += 1
        cal = dataclasses.replace(product.calibration, id=f"{product.calibration.id}-r{self.reloads}")
        return dataclasses.replace(product, calibration=cal)


class GatedSource(Source):
    """Wraps a source; ``open()`` waits until ``gate()`` is true, so a subscriber can connect first
    (ZeroMQ's slow joiner would otherwise miss the first results)."""

    def __init__(self, inner: Source, gate) -> None:
        self.inner, self.gate, self.live = inner, gate, inner.live

    def open(self) -> None:
        while not self.gate():
            time.sleep(0.01)
        self.inner.open()

    def read(self) -> Read:
        return self.inner.read()

    def close(self) -> None:
        self.inner.close()

    def rewind(self) -> None:
        self.inner.rewind()

    def describe(self) -> str:
        return self.inner.describe()


def expected_decision(i: int) -> str:
    """Frame i of :func:`write_video` is a FAIL frame every third frame."""
    return "FAIL" if i % 3 == 0 else "PASS"


def make_frame(i: int, hw: tuple[int, int] = FRAME_HW) -> np.ndarray:
    img = np.full((*hw, 3), DARK, np.uint8)
    if expected_decision(i) == "FAIL":
        x, y, w, h = SQUARE
        img[y : y + h, x : x + w] = BRIGHT
    return img


def frame_folder(path: Path, n: int) -> Path:
    """Frames 0..n-1 of :func:`make_frame` as PNG files in ``path`` (created), named so they sort in order."""
    path.mkdir(parents=True, exist_ok=True)
    for i in range(n):
        cv2.imwrite(str(path / f"{i:05d}.png"), make_frame(i))
    return path


def write_video(path: Path, n: int, hw: tuple[int, int] = FRAME_HW, fps: float = 25.0) -> Path:
    """An MJPG .avi of ``n`` frames (works with the headless OpenCV wheel)."""
    w = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), fps, (hw[1], hw[0]))
    if not w.isOpened():
        raise RuntimeError(f"cannot write {path}")
    for i in range(n):
        w.write(make_frame(i, hw))
    w.release()
    return path


def daemon_yaml(path: Path, source: dict, pub: str, control: str, audit_dir: Path | str, extra: str = "") -> Path:
    """A daemon config for the fake product 'cable'."""
    import yaml

    cfg = {
        "line": "t1", "home": str(path.parent), "product": "cable", "backend": "auto",
        "source": source,
        "pipeline": {"queue_size": 4, "drop_policy": "block", "batch_timeout_ms": 2},
        "zmq": {"publish": [pub], "control": control, "heartbeat_ms": 100, "linger_ms": 2000},
        "audit": {"dir": str(audit_dir), "fsync": "never"},
        "log": {"format": "json", "level": "info"},
    }
    path.write_text(yaml.safe_dump(cfg) + extra)
    return path


def main(argv: list[str]) -> int:
    """``CONFIG [DELAY_S GATE_FILE]``: the real daemon with the fake loader (DELAY_S per batch, default 5 ms);
    the source opens once GATE_FILE exists (at once without one)."""
    import logging

    from inspector.stream.config import load_daemon_config
    from inspector.stream.daemon import Daemon, seen_log_path, setup_logging
    from inspector.stream.sources import open_source

    logging.basicConfig(level=logging.INFO, stream=sys.stderr)
    cfg = load_daemon_config(argv[0])
    setup_logging(cfg.log)
    gate = Path(argv[2]) if len(argv) > 2 else None
    source = GatedSource(open_source(cfg.source, seen_log_path(cfg)), gate.exists if gate else lambda: True)
    return Daemon(cfg, loader=FakeLoader(delay_s=float(argv[1]) if len(argv) > 1 else 0.005), source=source).run()


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

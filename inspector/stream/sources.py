"""Frame sources behind one small interface: OpenCV ``VideoCapture`` (device, file, URL, GStreamer), image folders
and an in-memory source for benchmarks.

``Source.read()`` returns a :class:`Read`: a frame, an unusable frame (still a captured frame: it gets an
ERROR result), the end of a finite stream, or "nothing yet" (a watched folder with no new file). A live
source that fails raises :class:`SourceError`; the capture loop then reconnects with backoff. ``open()``
after a failure resumes where the source was; ``rewind()`` starts a finite source over (``at_end: loop``).

Image files are decoded strictly (``imagefile.py``): a truncated JPEG or PNG is an unusable frame with the
reason. A video file's failed read is a corrupt frame only when a later read succeeds; failures up to the
end are the end of the file (a truncated recording), not ERROR results for frames that do not exist.

PyPI's OpenCV wheels are built without GStreamer. A GStreamer pipeline on such a build is refused at start
with a hint, instead of opening to an empty stream.
"""

from __future__ import annotations

import logging
import os
import re
from abc import ABC, abstractmethod
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from inspector.errors import SourceError
from inspector.stream.config import SourceConfig
from inspector.stream.imagefile import IMAGE_SUFFIXES, read_image
from inspector.stream.seen import SeenLog

log = logging.getLogger(__name__)

# A video file's read failing this many times in a row is the end of the file, not corrupt frames.
MAX_BAD_READS = 5
GSTREAMER_HINT = (
    "this OpenCV build has no GStreamer (cv2.getBuildInformation() says 'GStreamer: NO'; PyPI's "
    "opencv-python wheels never have it). On a Jetson use JetPack's system OpenCV: "
    "`sudo apt install python3-opencv` (JetPack ships it built with GStreamer), create the venv with "
    "`python3 -m venv --system-site-packages`, and `pip uninstall opencv-python opencv-python-headless` inside "
    "it so the system cv2 is imported. Or use the container in deploy/jetson/. Check with "
    "`python3 -c \"import cv2; print(cv2.getBuildInformation())\" | grep GStreamer`."
)


@dataclass(frozen=True)
class Read:
    """One read: ``kind`` is 'frame' (``image`` uint8 (H, W, 3) BGR), 'bad' (unusable, ``reason``),
    'end' (finite stream finished) or 'idle' (no frame available yet). ``name``: the file it came from
    (image folders), else ''."""

    kind: str
    image: np.ndarray | None = None
    reason: str = ""
    name: str = ""


END = Read("end")
IDLE = Read("idle")


class Source(ABC):
    """A stream of frames. ``live`` sources reconnect on failure; finite ones end."""

    live: bool = False

    @abstractmethod
    def open(self) -> None:
        """Open (or reopen) the source; SourceError when it cannot be opened now."""

    @abstractmethod
    def read(self) -> Read:
        """The next frame. Raises SourceError when a live source has failed."""

    def close(self) -> None:  # noqa: B027 - optional hook
        """Release the device or file."""

    def rewind(self) -> None:
        """Start a finite source over (``at_end: loop``); ``open()`` follows."""
        self.close()

    def describe(self) -> str:
        return type(self).__name__


def gstreamer_available(build_info: str | None = None) -> bool:
    """Does this OpenCV have GStreamer? Reads the 'GStreamer:' line of ``cv2.getBuildInformation()``."""
    info = cv2.getBuildInformation() if build_info is None else build_info
    m = re.search(r"^\s*GStreamer:\s*(\S+)", info, re.MULTILINE)
    return bool(m) and m.group(1).upper() != "NO"


class CaptureSource(Source):
    """``cv2.VideoCapture`` on a device index, a video file, an RTSP/HTTP URL or a GStreamer pipeline."""

    def __init__(self, cfg: SourceConfig) -> None:
        if cfg.kind == "gstreamer" and not gstreamer_available():
            raise SourceError(f"cannot open GStreamer pipeline {cfg.uri!r}: {GSTREAMER_HINT}")
        if cfg.kind == "file" and not Path(cfg.uri).is_file():
            raise SourceError(f"video file {cfg.uri} does not exist (source.uri)")
        self.cfg = cfg
        self.live = cfg.kind != "file"
        self.cap: cv2.VideoCapture | None = None
        self.ahead: list[Read] = []

    def describe(self) -> str:
        return f"{self.cfg.kind}:{self.cfg.uri}"

    def open(self) -> None:
        self.close()
        cfg = self.cfg
        if cfg.kind == "device":
            cap = cv2.VideoCapture(int(cfg.uri))
            if cfg.fourcc:
                cap.set(cv2.CAP_PROP_FOURCC, cv2.VideoWriter_fourcc(*cfg.fourcc))
            for prop, v in ((cv2.CAP_PROP_FRAME_WIDTH, cfg.width), (cv2.CAP_PROP_FRAME_HEIGHT, cfg.height),
                            (cv2.CAP_PROP_FPS, cfg.fps)):
                if v:
                    cap.set(prop, v)
        elif cfg.kind == "gstreamer":
            cap = cv2.VideoCapture(cfg.uri, cv2.CAP_GSTREAMER)
        elif cfg.kind == "url":
            # Without these timeouts a dead RTSP camera can block read() for a very long time.
            params = [cv2.CAP_PROP_OPEN_TIMEOUT_MSEC, cfg.open_timeout_ms, cv2.CAP_PROP_READ_TIMEOUT_MSEC,
                      cfg.read_timeout_ms]
            cap = cv2.VideoCapture(cfg.uri, cv2.CAP_FFMPEG, params)
        else:
            cap = cv2.VideoCapture(cfg.uri)
        if not cap.isOpened():
            cap.release()
            raise SourceError(f"cannot open {self.describe()} (OpenCV VideoCapture.isOpened() is false)")
        self.cap = cap
        self.ahead = []

    def read(self) -> Read:
        if self.ahead:
            return self.ahead.pop(0)
        if self.cap is None:
            raise SourceError(f"{self.describe()} is not open")
        ok, img = self.cap.read()
        if ok and img is not None:
            return Read("frame", img)
        if self.live:
            raise SourceError(f"{self.describe()}: read failed (camera disconnected, stalled or stream ended)")
        # A file: the failed reads are corrupt frames only if the decoder gets past them to a good one.
        bad = []
        for _ in range(MAX_BAD_READS):
            pos = int(self.cap.get(cv2.CAP_PROP_POS_FRAMES) or 0)
            bad.append(Read("bad", reason=f"frame {pos} of {self.cfg.uri} could not be decoded"))
            ok, img = self.cap.read()
            if ok and img is not None:
                self.ahead = [*bad[1:], Read("frame", img)]
                return bad[0]
        return END

    def close(self) -> None:
        if self.cap is not None:
            self.cap.release()
            self.cap = None
        self.ahead = []


class ImageDirSource(Source):
    """Images of a folder in name order; ``watch`` mode also takes files that appear later.

    In watch mode a file is taken once its size is the same on two scans, so a half-written file is not
    read, and each file is taken once: across a reopen (the folder went away and came back) and, with
    ``state`` (a :class:`SeenLog` path, beside the audit), across daemon restarts. An unreadable, truncated
    or corrupt image is an unusable frame (ERROR result, naming the file), not the end of the stream.
    """

    def __init__(self, cfg: SourceConfig, state: Path | None = None) -> None:
        self.dir = Path(cfg.uri)
        if not self.dir.is_dir():
            raise SourceError(f"image folder {self.dir} does not exist (source.uri)")
        self.watch = cfg.images_mode == "watch"
        self.live = False
        self.seen = SeenLog(state if self.watch else None, self.dir.resolve())
        self._compacted = False
        self.pending: list[str] = []
        self.sizes: dict[str, int] = {}
        self.current: str | None = None

    def describe(self) -> str:
        return f"images:{self.dir}"

    def open(self) -> None:
        if not self.dir.is_dir():
            raise SourceError(f"image folder {self.dir} is gone")
        # What was taken stays taken; only files not yet read are looked for again.
        self.pending = []
        self.sizes = {}
        if not self._compacted:
            self._compacted = True
            self.seen.compact({e.name for e in self._entries()})

    def rewind(self) -> None:
        self.seen.names.clear()
        self.pending = []

    def close(self) -> None:
        pass

    def _entries(self) -> list[os.DirEntry]:
        try:
            return sorted(os.scandir(self.dir), key=lambda e: e.name)
        except OSError as e:
            raise SourceError(f"cannot list {self.dir}: {e.strerror}") from e

    def _scan(self) -> None:
        queued = set(self.pending)
        for e in self._entries():
            if e.name in self.seen or e.name in queued or not e.name.lower().endswith(IMAGE_SUFFIXES) \
                    or not e.is_file():
                continue
            size = e.stat().st_size
            if not self.watch or self.sizes.get(e.name) == size:
                self.pending.append(e.name)
            self.sizes[e.name] = size

    def read(self) -> Read:
        if not self.pending:
            self._scan()
        if not self.pending:
            return IDLE if self.watch else END
        name = self.pending.pop(0)
        self.sizes.pop(name, None)
        self.current = name
        self.seen.add(name)  # taken when read: a stop inspects every frame read, and none twice
        img, why = read_image(self.dir / name)
        if img is None:
            return Read("bad", reason=why, name=name)
        return Read("frame", img, name=name)


class MemorySource(Source):
    """``uint8 (height, width, 3)`` frames from memory: measures the daemon without camera or disk.

    The ring of frames is made once: the images of the folder ``uri`` resized to the frame size (at most 32;
    real parts, so decisions and masks are realistic), or 8 random noise frames when ``uri`` is empty.
    ``frames`` = 0 is endless.
    """

    def __init__(self, cfg: SourceConfig, seed: int = 0) -> None:
        self.width, self.height, self.limit = cfg.width, cfg.height, cfg.frames
        if cfg.uri:
            folder = Path(cfg.uri)
            files = sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES) if folder.is_dir() else []
            imgs = [read_image(p)[0] for p in files[:32]]
            self.ring = [cv2.resize(i, (self.width, self.height), interpolation=cv2.INTER_AREA) for i in imgs
                         if i is not None]
            if not self.ring:
                raise SourceError(f"memory source: no readable images in {folder} (source.uri)")
        else:
            rng = np.random.default_rng(seed)
            self.ring = [rng.integers(0, 256, (self.height, self.width, 3), dtype=np.uint8) for _ in range(8)]
        self.n = 0
        self.live = False

    def describe(self) -> str:
        return f"memory:{self.width}x{self.height}"

    def open(self) -> None:
        self.n = 0

    def read(self) -> Read:
        if self.limit and self.n >= self.limit:
            return END
        img = self.ring[self.n % len(self.ring)]
        self.n += 1
        return Read("frame", img)


def open_source(cfg: SourceConfig, state: Path | None = None) -> Source:
    """The source for a config (not opened yet). Refuses at once what can never work (no GStreamer).

    ``state``: where a watched image folder keeps the names of the files it took (see ``seen.py``).
    """
    if cfg.kind == "images":
        return ImageDirSource(cfg, state)
    if cfg.kind == "memory":
        return MemorySource(cfg)
    return CaptureSource(cfg)

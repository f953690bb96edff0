"""Datasets on disk: the MVTec AD layout and a plain folder layout, with strict image reading.

MVTec AD layout (``<root>`` is one category)::

    <root>/train/good/*.png
    <root>/test/<type>/*.png            (type "good" or a defect type)
    <root>/ground_truth/<type>/<name>_mask.png

Folder layout (a user's own product)::

    <root>/good/*                       good images (required)
    <root>/<defect type>/*              any other directory: defective images (optional)
    <root>/masks/<name>[_mask].<ext>    masks matched by file name (optional)

In the folder layout every good image is a training candidate and the defective ones are test images.
A corrupt or unreadable file is an error naming it, never skipped.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import cv2
import numpy as np

from inspector.errors import DataError
from inspector.files import sha256_file

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp", ".pgm", ".ppm", ".jp2")
MASK_DIRS = ("masks", "mask", "ground_truth")
GOOD = "good"


@dataclass(frozen=True)
class Sample:
    """One image: its path, label (0 good, 1 defective), defect type and mask path (None: no mask)."""

    path: Path
    label: int
    defect_type: str
    mask_path: Path | None = None


@dataclass(frozen=True)
class Dataset:
    """What was found under a dataset root."""

    root: Path
    layout: Literal["mvtec", "folder"]
    train: tuple[Sample, ...]  # good images available for training (and the calibration hold-out)
    test: tuple[Sample, ...]  # labelled test images (good and defective)

    def summary(self) -> str:
        """One line per split: how many images of each kind were found."""
        def count(samples: tuple[Sample, ...]) -> str:
            c = Counter(s.defect_type for s in samples)
            masks = sum(s.mask_path is not None for s in samples)
            kinds = ", ".join(f"{k}={v}" for k, v in sorted(c.items())) or "none"
            return f"{len(samples)} images ({kinds}; {masks} with masks)"

        return f"{self.root} [{self.layout} layout]: train {count(self.train)}; test {count(self.test)}"


def _images(directory: Path) -> list[Path]:
    return sorted(p for p in directory.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS)


def detect_layout(root: Path) -> Literal["mvtec", "folder"]:
    """``mvtec`` if ``root/train/good`` exists, ``folder`` if ``root/good`` exists; else DataError."""
    root = Path(root)
    if not root.is_dir():
        raise DataError(f"dataset directory {root} does not exist or is not a directory")
    if (root / "train" / GOOD).is_dir():
        return "mvtec"
    if (root / GOOD).is_dir():
        return "folder"
    raise DataError(
        f"{root}: unknown dataset layout; expected an MVTec AD category (train/good, test/<type>, "
        f"ground_truth/<type>) or a folder layout (good/, optional <defect>/ and masks/)"
    )


def load_dataset(root: str | Path) -> Dataset:
    """Discover a dataset; raises DataError for a missing path, an unknown layout or no good images."""
    root = Path(root)
    layout = detect_layout(root)
    ds = _load_mvtec(root) if layout == "mvtec" else _load_folder(root)
    if not ds.train:
        raise DataError(f"{root}: no good training images found (extensions: {', '.join(IMAGE_EXTENSIONS)})")
    return ds


def _load_mvtec(root: Path) -> Dataset:
    train = tuple(Sample(p, 0, GOOD) for p in _images(root / "train" / GOOD))
    test: list[Sample] = []
    test_dir = root / "test"
    if test_dir.is_dir():
        for type_dir in sorted(d for d in test_dir.iterdir() if d.is_dir()):
            kind = type_dir.name
            for p in _images(type_dir):
                if kind == GOOD:
                    test.append(Sample(p, 0, GOOD))
                    continue
                mask = root / "ground_truth" / kind / f"{p.stem}_mask.png"
                test.append(Sample(p, 1, kind, mask if mask.is_file() else None))
    return Dataset(root, "mvtec", train, tuple(test))


def _find_mask(mask_dir: Path | None, stem: str) -> Path | None:
    if mask_dir is None:
        return None
    for name in (stem, f"{stem}_mask"):
        for ext in IMAGE_EXTENSIONS:
            p = mask_dir / f"{name}{ext}"
            if p.is_file():
                return p
    return None


def _load_folder(root: Path) -> Dataset:
    mask_dir = next((root / d for d in MASK_DIRS if (root / d).is_dir()), None)
    train = tuple(Sample(p, 0, GOOD) for p in _images(root / GOOD))
    test: list[Sample] = []
    for d in sorted(x for x in root.iterdir() if x.is_dir() and x.name not in (GOOD, *MASK_DIRS)):
        for p in _images(d):
            test.append(Sample(p, 1, d.name, _find_mask(mask_dir, p.stem)))
    return Dataset(root, "folder", train, tuple(test))


# --- reading ------------------------------------------------------------------------------------


def read_image(path: str | Path) -> np.ndarray:
    """Read an image as ``uint8 (H, W, 3)`` BGR (grayscale is expanded, alpha dropped, 16-bit scaled).

    Raises DataError naming the file when it is missing, unreadable or corrupt.
    """
    path = Path(path)
    try:
        buf = np.fromfile(path, dtype=np.uint8)
    except OSError as e:
        raise DataError(f"cannot read image {path}: {e.strerror or e}") from e
    img = cv2.imdecode(buf, cv2.IMREAD_UNCHANGED) if buf.size else None
    if img is None:
        raise DataError(f"cannot decode image {path}: the file is corrupt or not an image format OpenCV reads")
    if img.dtype == np.uint16:
        img = (img >> 8).astype(np.uint8)
    if img.dtype != np.uint8:
        raise DataError(f"image {path} has unsupported pixel type {img.dtype}; expected 8- or 16-bit")
    if img.ndim == 2:
        img = cv2.cvtColor(img, cv2.COLOR_GRAY2BGR)
    elif img.shape[2] == 4:
        img = cv2.cvtColor(img, cv2.COLOR_BGRA2BGR)
    elif img.shape[2] == 1:
        img = cv2.cvtColor(img[:, :, 0], cv2.COLOR_GRAY2BGR)
    if img.shape[0] < 16 or img.shape[1] < 16:
        raise DataError(f"image {path} is {img.shape[1]}x{img.shape[0]} px; at least 16x16 is needed")
    return np.ascontiguousarray(img)


def read_mask(path: str | Path | None, size: tuple[int, int]) -> np.ndarray:
    """Read a mask as ``bool (h, w)`` at ``size`` = (h, w); None gives an all-False mask (good image)."""
    if path is None:
        return np.zeros(size, dtype=bool)
    img = read_image(path)[:, :, 0]
    if img.shape != size:
        img = cv2.resize(img, (size[1], size[0]), interpolation=cv2.INTER_NEAREST)
    return img > 127


def fingerprint(path: str | Path) -> str:
    """sha256 of a file's bytes: identifies an image independently of its name or location."""
    return sha256_file(path)


def split_holdout(samples: tuple[Sample, ...], fraction: float, seed: int) -> tuple[list[Sample], list[Sample]]:
    """Split good samples into (train, held-out) deterministically by seed.

    The held-out part gets round(n * fraction) images, at least one when fraction > 0.
    """
    n = len(samples)
    n_hold = max(1, int(round(n * fraction))) if fraction > 0 else 0
    if n - n_hold < 1:
        raise DataError(f"only {n} good images: cannot hold out {fraction:.0%} and still train")
    order = np.random.default_rng(seed).permutation(n)
    hold = set(order[:n_hold].tolist())
    train = [s for i, s in enumerate(samples) if i not in hold]
    held = [s for i, s in enumerate(samples) if i in hold]
    return train, held

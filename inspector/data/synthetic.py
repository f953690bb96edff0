"""Synthetic product generator with injected defects and their ground-truth masks.

The product is ``cable``: a cable seen end-on, as a camera over a cable cutter sees it. Three coloured
wires sit in a round grey sheath on a dark background, with small natural variation in position,
rotation, lighting and noise. Defects, each with its pixel mask:

- ``missing_wire``: one wire absent (filler shows);
- ``swapped_wires``: two wires' colours exchanged;
- ``cut``: a dark cut through the insulation;
- ``poke``: a small hole poked into the sheath;
- ``bent_wire``: a wire displaced out of its place;
- ``scratch``: a bright scratch line;
- ``spot``: a contamination spot;
- ``color_shift``: one wire's colour shifted.

It serves the fast tests and the demo, and writes the MVTec AD layout so every verb reads it.
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from inspector.errors import DataError

DEFECT_TYPES = (
    "missing_wire",
    "swapped_wires",
    "cut",
    "poke",
    "bent_wire",
    "scratch",
    "spot",
    "color_shift",
)

# Wire colours in BGR: brown, blue, green-yellow (IEC 60446 flexible cable colours).
WIRE_COLORS = ((30, 60, 130), (170, 80, 20), (40, 190, 170))
SHEATH = (150, 150, 155)
FILLER = (205, 205, 200)
BACKGROUND = (40, 38, 36)


MIN_SIZE = 32  # pixels: below this the wires and their defects are a few pixels wide

def _geometry(rng: np.random.Generator, size: int) -> dict:
    c = size / 2 + rng.normal(0, size * 0.008, 2)
    angle = rng.uniform(-0.15, 0.15)  # small rotation: the cutter holds the cable
    return {
        "center": c,
        "sheath_r": size * (0.40 + rng.normal(0, 0.004)),
        "filler_r": size * 0.34,
        "wire_r": size * 0.12,
        "wire_d": size * 0.175,
        "angle": angle,
    }


def _wire_centers(g: dict) -> list[np.ndarray]:
    return [
        g["center"] + g["wire_d"] * np.array([np.cos(g["angle"] + k * 2 * np.pi / 3), np.sin(g["angle"] + k * 2 * np.pi / 3)])
        for k in range(3)
    ]


def _pt(p: np.ndarray) -> tuple[int, int]:
    return int(round(p[0])), int(round(p[1]))


def render_good(rng: np.random.Generator, size: int = 256) -> tuple[np.ndarray, dict]:
    """A good part, ``uint8 (size, size, 3)`` BGR, and its geometry."""
    g = _geometry(rng, size)
    img = np.empty((size, size, 3), np.float32)
    img[:] = BACKGROUND
    cv2.circle(img, _pt(g["center"]), int(g["sheath_r"]), SHEATH, -1, cv2.LINE_AA)
    cv2.circle(img, _pt(g["center"]), int(g["filler_r"]), FILLER, -1, cv2.LINE_AA)
    colors = list(WIRE_COLORS)
    for p, col in zip(_wire_centers(g), colors, strict=True):
        cv2.circle(img, _pt(p), int(g["wire_r"]), col, -1, cv2.LINE_AA)
        # Copper core: the part a cutter's camera checks for.
        cv2.circle(img, _pt(p), int(g["wire_r"] * 0.45), (60, 120, 200), -1, cv2.LINE_AA)
    g["colors"] = colors
    gain = rng.uniform(0.93, 1.07)
    img = img * gain + rng.normal(0, 4.0, img.shape)
    return np.clip(img, 0, 255).astype(np.uint8), g


def _redraw_wire(img: np.ndarray, g: dict, k: int, color: tuple, center: np.ndarray | None = None) -> None:
    p = _wire_centers(g)[k] if center is None else center
    cv2.circle(img, _pt(p), int(g["wire_r"]), color, -1, cv2.LINE_AA)
    cv2.circle(img, _pt(p), int(g["wire_r"] * 0.45), (60, 120, 200), -1, cv2.LINE_AA)


def inject(img: np.ndarray, g: dict, kind: str, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Apply defect ``kind`` to a good part. Returns (image, mask ``uint8`` 0/255)."""
    size = img.shape[0]
    before = img.copy()
    out = img.copy()
    centers = _wire_centers(g)
    k = int(rng.integers(3))
    if kind == "missing_wire":
        cv2.circle(out, _pt(centers[k]), int(g["wire_r"]) + 1, FILLER, -1, cv2.LINE_AA)
    elif kind == "swapped_wires":
        j = (k + 1) % 3
        _redraw_wire(out, g, k, g["colors"][j])
        _redraw_wire(out, g, j, g["colors"][k])
    elif kind == "cut":
        a = rng.uniform(0, 2 * np.pi)
        r0, r1 = g["filler_r"] * 0.9, g["sheath_r"] * 1.02
        d = np.array([np.cos(a), np.sin(a)])
        cv2.line(out, _pt(g["center"] + r0 * d), _pt(g["center"] + r1 * d), (20, 20, 20), max(2, size // 50), cv2.LINE_AA)
    elif kind == "poke":
        a = rng.uniform(0, 2 * np.pi)
        r = (g["filler_r"] + g["sheath_r"]) / 2
        cv2.circle(out, _pt(g["center"] + r * np.array([np.cos(a), np.sin(a)])), max(2, size // 28), (25, 25, 25), -1)
    elif kind == "bent_wire":
        shift = g["wire_r"] * 0.8 * np.array([np.cos(rng.uniform(0, 6.3)), np.sin(rng.uniform(0, 6.3))])
        cv2.circle(out, _pt(centers[k]), int(g["wire_r"]) + 1, FILLER, -1, cv2.LINE_AA)
        _redraw_wire(out, g, k, g["colors"][k], centers[k] + shift)
    elif kind == "scratch":
        p0 = g["center"] + rng.uniform(-0.3, 0.3, 2) * size
        p1 = p0 + rng.uniform(-0.25, 0.25, 2) * size
        cv2.line(out, _pt(p0), _pt(p1), (240, 240, 240), max(1, size // 90), cv2.LINE_AA)
    elif kind == "spot":
        p = g["center"] + rng.uniform(-0.3, 0.3, 2) * size
        cv2.circle(out, _pt(p), max(2, size // 22), (30, 160, 60), -1, cv2.LINE_AA)
    elif kind == "color_shift":
        col = tuple(int(c) for c in np.clip(np.array(g["colors"][k]) + rng.choice([-1, 1], 3) * 70, 0, 255))
        _redraw_wire(out, g, k, col)
    else:
        raise DataError(f"unknown defect type {kind!r}; known: {DEFECT_TYPES}")
    diff = np.abs(out.astype(np.int16) - before.astype(np.int16)).max(axis=2)
    mask = (diff > 25).astype(np.uint8) * 255
    mask = cv2.morphologyEx(mask, cv2.MORPH_CLOSE, np.ones((3, 3), np.uint8))
    return out, mask


def render(rng: np.random.Generator, size: int = 256, defect: str | None = None) -> tuple[np.ndarray, np.ndarray]:
    """One part, good (``defect=None``) or with the named defect: (image BGR, mask 0/255)."""
    img, g = render_good(rng, size)
    if defect is None:
        return img, np.zeros(img.shape[:2], np.uint8)
    return inject(img, g, defect, rng)


def write_product(
    root: str | Path,
    n_train: int = 60,
    n_test_good: int = 12,
    n_test_per_defect: int = 4,
    size: int = 256,
    defects: tuple[str, ...] = DEFECT_TYPES,
    seed: int = 0,
) -> Path:
    """Write a synthetic product in the MVTec AD layout under ``root`` and return ``root``."""
    if size < MIN_SIZE:
        raise DataError(f"a synthetic image side of {size} px is too small to draw the cable; at least {MIN_SIZE}")
    if min(n_train, n_test_good, n_test_per_defect) < 0:
        raise DataError(f"image counts must be >= 0; got train={n_train}, test good={n_test_good}, "
                        f"per defect={n_test_per_defect}")
    root = Path(root)
    rng = np.random.default_rng(seed)
    (root / "train" / "good").mkdir(parents=True, exist_ok=True)
    (root / "test" / "good").mkdir(parents=True, exist_ok=True)
    for i in range(n_train):
        cv2.imwrite(str(root / "train" / "good" / f"{i:03d}.png"), render(rng, size)[0])
    for i in range(n_test_good):
        cv2.imwrite(str(root / "test" / "good" / f"{i:03d}.png"), render(rng, size)[0])
    for kind in defects:
        (root / "test" / kind).mkdir(parents=True, exist_ok=True)
        (root / "ground_truth" / kind).mkdir(parents=True, exist_ok=True)
        for i in range(n_test_per_defect):
            img, mask = render(rng, size, kind)
            cv2.imwrite(str(root / "test" / kind / f"{i:03d}.png"), img)
            cv2.imwrite(str(root / "ground_truth" / kind / f"{i:03d}_mask.png"), mask)
    return root

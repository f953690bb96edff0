"""How long does a lossless reject frame take to encode? OpenCV's default PNG settings against Huffman-only
deflate, at each image's own size and at 1920x1080 (docs/benchmarks.md, operator station). Not a pytest test.

    python -m tests.stream.png_bench ../shared/datasets/mvtec_ad/bottle/test/broken_large/000.png \
        ../shared/datasets/ksdd/test/crack/kos01_part5.png
"""

from __future__ import annotations

import argparse
import time

import cv2
import numpy as np

SETTINGS = {"default": [], "huffman-only": [cv2.IMWRITE_PNG_COMPRESSION, 1, cv2.IMWRITE_PNG_STRATEGY,
                                             cv2.IMWRITE_PNG_STRATEGY_HUFFMAN_ONLY]}


def encode_ms(img: np.ndarray, params: list[int], n: int) -> tuple[float, float]:
    """Mean milliseconds per encoding over ``n`` (after one warm-up) and the size in kB."""
    ok, buf = cv2.imencode(".png", img, params)
    if not ok:
        raise ValueError(f"PNG encoding failed for an image of shape {img.shape}")
    t0 = time.perf_counter()
    for _ in range(n):
        cv2.imencode(".png", img, params)
    return (time.perf_counter() - t0) / n * 1000, len(buf) / 1000


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("images", nargs="+")
    ap.add_argument("--repeat", type=int, default=10)
    args = ap.parse_args()
    print(f"OpenCV {cv2.__version__}")
    for path in args.images:
        img = cv2.imread(path, cv2.IMREAD_COLOR)
        if img is None:
            raise SystemExit(f"{path}: not a readable image")
        for label, im, n in (("own size", img, args.repeat), ("1920x1080", cv2.resize(img, (1920, 1080)), 3)):
            row = ", ".join("{} {:.2f} ms {:.0f} kB".format(k, *encode_ms(im, p, n)) for k, p in SETTINGS.items())
            print(f"{path} {im.shape[1]}x{im.shape[0]} ({label}): {row}")


if __name__ == "__main__":
    main()

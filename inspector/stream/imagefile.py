"""Reading one image file strictly: a truncated or corrupt file is an unusable frame with the reason, never a
silently grey-filled picture.

``cv2.imread`` decodes a JPEG cut short by filling the missing rows with grey (libjpeg only warns "Premature
end of JPEG file"), so a defect in the missing part would pass. Before decoding, the file's structure is
checked where the format allows it cheaply: a JPEG must end with its end-of-image marker (FF D9), a PNG
must hold its IEND chunk, a BMP must be as long as its header says. Other formats rely on the decoder.
"""

from __future__ import annotations

import struct
from pathlib import Path

import cv2
import numpy as np

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff")
JPEG_SOI, JPEG_SOS, JPEG_EOI = b"\xff\xd8", b"\xff\xda", b"\xff\xd9"
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
PNG_IEND = b"IEND\xaeB`\x82"  # the IEND chunk's type and CRC
# Some writers pad a file after its end marker; this much trailing data is still looked through.
TAIL_BYTES = 4096


def structure_problem(data: bytes) -> str | None:
    """Why ``data`` is not a complete image file (truncated, wrong header), or None when it looks whole."""
    if data.startswith(JPEG_SOI):
        # The image's end marker follows its last scan (an embedded thumbnail's comes before it).
        eoi = data.rfind(JPEG_EOI)
        if eoi < 0 or eoi < data.rfind(JPEG_SOS) or eoi < len(data) - TAIL_BYTES:
            return "JPEG is truncated: no end-of-image marker (FF D9) after its last scan"
        return None
    if data.startswith(PNG_SIGNATURE):
        if PNG_IEND not in data[-TAIL_BYTES:]:
            return "PNG is truncated: no IEND chunk at its end"
        return None
    if data.startswith(b"BM") and len(data) >= 6:
        (size,) = struct.unpack("<I", data[2:6])
        if len(data) < size:
            return f"BMP is truncated: {len(data)} of the {size} bytes its header gives"
    return None


def decode_image(data: bytes) -> tuple[np.ndarray | None, str]:
    """``(uint8 (H, W, 3) BGR image, "")``, or ``(None, why)`` for a truncated, corrupt or empty file."""
    if not data:
        return None, "the file is empty"
    problem = structure_problem(data)
    if problem is not None:
        return None, problem
    img = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
    if img is None:
        return None, "OpenCV cannot decode it (corrupt or not an image)"
    return img, ""


def read_image(path: str | Path) -> tuple[np.ndarray | None, str]:
    """Read and strictly decode the image at ``path``; the reason names the file when it is unusable."""
    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as e:
        return None, f"cannot read image {path}: {e.strerror}"
    img, why = decode_image(data)
    return img, (f"cannot decode image {path}: {why}" if img is None else "")

"""File hashing and atomic writes: the one place every artifact of a product is hashed and written.

Atomic: the bytes go to a temporary file in the target's directory, are flushed and fsynced, and the file
is renamed onto the target (``os.replace``, atomic on POSIX). A reader sees the old file or the new one,
never a half-written one; a crash or an error mid-write leaves the old file and no temporary behind.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import secrets
from collections.abc import Iterator
from pathlib import Path


def sha256_file(path: str | Path, chunk: int = 1 << 20) -> str:
    """Hex sha256 of a file's bytes."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


@contextlib.contextmanager
def staged_file(path: str | Path) -> Iterator[Path]:
    """A temporary path beside ``path`` for a writer that wants a file name (``torch.save``, the ONNX exporter).

    When the block ends without an error the file is fsynced and moved onto ``path``; otherwise it is
    removed. The parent directory is created when missing.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    # The real suffix stays last: some writers choose the format by it. Created as open() would create it
    # (mode 0o666 less the umask; mkstemp's 0o600 would hide a manifest from a daemon run as another user).
    tmp = path.with_name(f".{path.stem}.{secrets.token_hex(8)}.tmp{path.suffix}")
    os.close(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666))
    try:
        yield tmp
        _fsync(tmp)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def write_bytes_atomic(path: str | Path, data: bytes | bytearray | memoryview) -> None:
    """Write ``data`` to ``path`` atomically."""
    with staged_file(path) as tmp, open(tmp, "wb") as f:
        f.write(data)


def write_text_atomic(path: str | Path, text: str) -> None:
    """Write ``text`` (UTF-8) to ``path`` atomically."""
    write_bytes_atomic(path, text.encode("utf-8"))


def _fsync(path: Path) -> None:
    # The rename is atomic, but without an fsync first a power loss can leave the new name on empty blocks.
    with open(path, "rb+") as f:
        f.flush()
        os.fsync(f.fileno())

"""Hashing and atomic writes: a failed write leaves the old file and no temporary behind."""

from __future__ import annotations

import hashlib

import pytest

from inspector.files import sha256_file, staged_file, write_bytes_atomic, write_text_atomic


def test_sha256_of_a_file(tmp_path):
    p = tmp_path / "a.bin"
    data = bytes(range(256)) * 5000  # more than one read chunk
    p.write_bytes(data)
    assert sha256_file(p) == hashlib.sha256(data).hexdigest()
    assert sha256_file(p, chunk=7) == sha256_file(p)


def test_atomic_writes_replace_the_file_and_leave_nothing_else(tmp_path):
    p = tmp_path / "sub" / "manifest.json"
    write_text_atomic(p, "one\n")
    write_text_atomic(p, "two\n")
    write_bytes_atomic(tmp_path / "sub" / "plan.bin", memoryview(b"\x00\x01"))
    assert p.read_text() == "two\n" and (tmp_path / "sub" / "plan.bin").read_bytes() == b"\x00\x01"
    assert sorted(f.name for f in (tmp_path / "sub").iterdir()) == ["manifest.json", "plan.bin"]


def test_written_files_get_the_usual_permissions(tmp_path):
    write_text_atomic(tmp_path / "manifest.json", "{}")
    (tmp_path / "plain.json").write_text("{}")
    assert (tmp_path / "manifest.json").stat().st_mode == (tmp_path / "plain.json").stat().st_mode


def test_a_failed_write_keeps_the_old_file_and_removes_the_temporary(tmp_path):
    p = tmp_path / "model.pt"
    p.write_bytes(b"old")
    with pytest.raises(RuntimeError, match="disk full"), staged_file(p) as tmp:
        assert tmp.parent == tmp_path and tmp.suffix == ".pt" and tmp != p
        tmp.write_bytes(b"half")
        raise RuntimeError("disk full")
    assert p.read_bytes() == b"old" and [f.name for f in tmp_path.iterdir()] == ["model.pt"]


def test_a_write_that_cannot_encode_leaves_nothing(tmp_path):
    with pytest.raises(UnicodeEncodeError):
        write_text_atomic(tmp_path / "x.yaml", "\ud800")  # a lone surrogate has no UTF-8 form
    assert list(tmp_path.iterdir()) == []

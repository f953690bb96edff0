"""The audit trail (stream/audit.py, auditdisk.py) on real files and real small filesystems: budgets, a full
disk (nothing lost while the spool holds, the exact count when it overflows), decision lines before images,
no empty files, never re-created on another filesystem, not world-readable."""

from __future__ import annotations

import os
import stat

import numpy as np
import pytest

from inspector.stream.audit import AuditLog, read_records
from inspector.stream.config import AuditConfig

from .fakes import make_frame, write_video
from .harness import Line, config
from .smallfs import LoopDisk, tmpfs


class Clock:
    """A monotonic clock the test moves: retries (every second) happen without waiting."""

    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t

    def step(self, s: float = 1.1) -> None:
        self.t += s


def _result(i: int, decision: str = "PASS", pad: int = 100) -> dict:
    return {"type": "result", "frame_id": i, "decision": decision, "capture_ts": 1e9 + i, "publish_ts": 1e9 + i,
            "pad": "x" * pad}


def _fill(directory, leave: int = 0):
    """Fill the filesystem of ``directory`` up to ``leave`` free bytes with one file; return it."""
    filler = directory / "filler.bin"
    st = os.statvfs(directory)
    free = st.f_bavail * st.f_frsize
    with open(filler, "wb") as f:
        try:
            f.write(b"\0" * max(0, free - leave))
            f.flush()
            os.fsync(f.fileno())
        except OSError:
            pass
    return filler


def _lines_are_whole(directory) -> None:
    for p in directory.glob("decisions-*.jsonl"):
        text = p.read_text()
        assert text == "" or text.endswith("\n"), f"{p.name} ends in a torn line"
        assert p.stat().st_size > 0, f"{p.name} is an empty file"


def test_audit_rotation_and_budgets(tmp_path):
    alarms = []
    cfg = AuditConfig(dir=str(tmp_path / "a"), fsync="always", log_file_mb=0.002, log_budget_mb=0.006,
                      image_budget_mb=0.01, image_format="png", image_reserve_mb=0)
    audit = AuditLog(cfg, lambda *a: alarms.append(a))
    img = np.random.default_rng(0).integers(0, 255, (40, 40, 3), dtype=np.uint8)  # ~4.8 kB as PNG
    for i in range(60):
        audit.record({"type": "result", "frame_id": i, "decision": "FAIL" if i % 2 else "PASS", "capture_ts": 1e9 + i,
                      "pad": "x" * 100}, img, np.zeros((40, 40), np.uint8))
    audit.close()
    logs = sorted((tmp_path / "a").glob("decisions-*.jsonl"))
    assert len(logs) >= 2
    assert sum(p.stat().st_size for p in logs) <= 0.006e6 + 0.002e6 + 300  # budget plus the file being written
    ids = [r["frame_id"] for r in read_records(tmp_path / "a")]
    assert ids == sorted(ids) and ids[-1] == 59 and ids[0] > 0  # the oldest files went first
    images = sorted((tmp_path / "a" / "images").iterdir())
    assert sum(p.stat().st_size for p in images) <= 0.01e6
    assert images and "_59_FAIL" in images[-1].name  # the newest survive
    assert alarms == []


def test_audit_disk_errors_raise_an_alarm_never_stop_and_lose_nothing(tmp_path):
    blocker = tmp_path / "not_a_dir"
    blocker.write_text("a file where the audit directory should be")
    alarms, clock = [], Clock()
    audit = AuditLog(AuditConfig(dir=str(blocker / "audit")), lambda *a: alarms.append(a), clock)
    for i in range(5):
        audit.record({"type": "result", "frame_id": i, "decision": "PASS"})  # must not raise
        clock.step(0.3)
    assert [a[0] for a in alarms] == ["audit_error"] and audit.errors >= 1 and audit.spooled == 5
    blocker.unlink()  # the disk comes back
    clock.step()
    audit.record({"type": "result", "frame_id": 5, "decision": "PASS"})
    audit.close()
    assert [a[0] for a in alarms] == ["audit_error", "audit_recovered"]
    # issue 13, 7: what waited in the spool is written, in order, before the new record
    assert [r["frame_id"] for r in read_records(blocker / "audit")] == [0, 1, 2, 3, 4, 5]
    assert audit.lost == 0


def test_a_full_disk_spools_in_order_and_the_overflow_is_counted_exactly(tmp_path):
    with tmpfs(tmp_path / "mnt", "2m") as mnt:
        alarms, clock = [], Clock()
        cfg = AuditConfig(dir=str(mnt / "audit"), fsync="always", spool_records=50, image_reserve_mb=0.2,
                          save_images="fail", image_format="png")
        audit = AuditLog(cfg, lambda *a: alarms.append(a), clock)
        for i in range(20):
            audit.record(_result(i))
        filler = _fill(mnt)
        for i in range(20, 100):  # the disk fills (the log's last page still takes a few lines): then 50 wait
            audit.record(_result(i))
            clock.step(0.05)
        fitted = audit.written - 20  # lines that still fit after the filler
        lost = 80 - fitted - 50
        assert audit.failing and audit.spooled == 50 and lost > 0 and audit.lost == lost
        assert [a[0] for a in alarms] == ["audit_error", "audit_records_lost"]
        assert alarms[1][2]["lost_total"] == 1  # raised at the first loss, once per outage
        filler.unlink()
        clock.step()
        audit.poll()
        audit.record(_result(100))
        audit.close()
        recs = read_records(mnt / "audit")
        ids = [r["frame_id"] for r in recs if r["type"] == "result"]
        kept = 20 + fitted + 50
        assert ids == list(range(kept)) + [100]  # in order; exactly the overflow is missing
        gap = next(r for r in recs if r["type"] == "audit_gap")
        assert gap["lost"] == lost and gap["first_ts"] == 1e9 + kept and gap["last_ts"] == 1e9 + 99
        assert [a[0] for a in alarms][-1] == "audit_recovered" and alarms[-1][2]["lost_total"] == lost
        _lines_are_whole(mnt / "audit")


def test_no_torn_lines_and_no_empty_files_while_the_disk_is_full(tmp_path):
    with tmpfs(tmp_path / "mnt", "2m") as mnt:
        clock = Clock()
        audit = AuditLog(AuditConfig(dir=str(mnt / "audit"), fsync="never", log_file_mb=0.01), lambda *a: None,
                         clock)
        audit.record(_result(0))
        filler = _fill(mnt, leave=300)  # room for part of a line only
        for i in range(1, 200):
            audit.record(_result(i, pad=400))  # rotations and retries against a full disk
            clock.step(0.5)
        _lines_are_whole(mnt / "audit")
        filler.unlink()
        clock.step()
        audit.close()
        ids = [r["frame_id"] for r in read_records(mnt / "audit")]
        assert ids == list(range(200))
        _lines_are_whole(mnt / "audit")


def test_decision_lines_come_before_images_and_images_keep_a_reserve(tmp_path):
    with tmpfs(tmp_path / "mnt", "2m") as mnt:
        cfg = AuditConfig(dir=str(mnt / "audit"), fsync="never", save_images="fail", image_format="png",
                          image_reserve_mb=0.5, image_budget_mb=100)
        audit = AuditLog(cfg, lambda *a: None)
        noisy = np.random.default_rng(0).integers(0, 255, (160, 200, 3), dtype=np.uint8)  # ~96 kB as PNG
        for i in range(60):
            audit.record(_result(i, "FAIL"), noisy, np.zeros((160, 200), np.uint8))
        audit.close()
        recs = read_records(mnt / "audit")
        assert [r["frame_id"] for r in recs] == list(range(60))  # every decision, though images filled the disk
        st = os.statvfs(mnt)
        assert st.f_bavail * st.f_frsize >= 0.5e6 - 100_000  # images stopped at the reserve (one image of slack)
        with_images = [r for r in recs if r.get("audit_images")]
        assert 0 < len(with_images) < 60 and audit.images.skipped == 60 - len(with_images)
        assert all((mnt / "audit" / p).is_file() for r in with_images for p in r["audit_images"])


def test_the_audit_is_never_recreated_on_another_filesystem(tmp_path):
    disk = LoopDisk(tmp_path / "disk.img", tmp_path / "mnt")
    try:
        disk.mount()
        alarms, clock = [], Clock()
        audit_dir = tmp_path / "mnt" / "audit"
        audit = AuditLog(AuditConfig(dir=str(audit_dir), fsync="always"), lambda *a: alarms.append(a), clock)
        for i in range(5):
            audit.record(_result(i))
        disk.unmount()  # the audit disk goes away; tmp_path/mnt is now a directory on the root filesystem
        for i in range(5, 10):
            clock.step()
            audit.poll()
            audit.record(_result(i))
        assert not audit_dir.exists(), "the audit directory was re-created on the root filesystem"
        assert audit.failing and audit.spooled == 5
        assert alarms[0][0] == "audit_error" and "another filesystem" in alarms[0][1]
        disk.mount()  # the same disk is back
        clock.step()
        audit.poll()
        audit.close()
        assert [r["frame_id"] for r in read_records(audit_dir)] == list(range(10))
        assert [a[0] for a in alarms] == ["audit_error", "audit_recovered"]
    finally:
        disk.close()


def test_audit_files_are_not_world_readable(tmp_path):
    d = tmp_path / "audit"
    d.mkdir(mode=0o755)
    os.chmod(d, 0o755)
    old = os.umask(0)
    try:
        audit = AuditLog(AuditConfig(dir=str(d), save_images="fail", image_reserve_mb=0), lambda *a: None)
        audit.record(_result(0, "FAIL"), make_frame(0), np.zeros((48, 64), np.uint8))
        audit.close()
    finally:
        os.umask(old)
    assert stat.S_IMODE(d.stat().st_mode) & 0o007 == 0
    files = [*d.glob("decisions-*.jsonl"), *(d / "images").iterdir()]
    assert len(files) == 3
    for p in files:
        assert stat.S_IMODE(p.stat().st_mode) & 0o137 == 0, (p.name, oct(p.stat().st_mode))  # 0640 or stricter
    assert stat.S_IMODE((d / "images").stat().st_mode) & 0o007 == 0


def test_a_broken_audit_disk_raises_an_alarm_and_inspection_goes_on(tmp_path):
    video = write_video(tmp_path / "v.avi", 30)
    audit = tmp_path / "audit"
    cfg = config(tmp_path, {"kind": "file", "uri": str(video), "rate_fps": 60}, audit={"dir": str(audit)})
    with Line(cfg) as line:
        got = line.go()
        line.collect(got, 10, until=lambda g: len(g.results) >= 3)
        os.replace(audit, tmp_path / "audit_gone")  # the disk goes away under the daemon:
        audit.write_text("not a directory")  # FAIL images can no longer be saved there
        line.collect(got, 20)
    assert [r.frame_id for r in got.results] == list(range(30)) and got.eos.results == 30
    alarms = [e for e in got.events if e.kind == "audit_error"]
    assert len(alarms) == 1 and "inspection continues" in alarms[0].message
    assert got.heartbeats[-1].audit == "failing" and got.heartbeats[0].audit == "ok"


def _noisy_video(path, n: int):
    """640x480 frames; every third is bright noise (a FAIL whose PNG image is large), the others dark (PASS)."""
    import cv2

    rng = np.random.default_rng(0)
    w = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 25.0, (640, 480))
    for i in range(n):
        w.write(rng.integers(100, 255, (480, 640, 3), np.uint8) if i % 3 == 0 else np.full((480, 640, 3), 40, np.uint8))
    w.release()
    return path


def test_the_daemon_on_a_full_2mb_disk_loses_no_decision(tmp_path):
    """issue 13, 7 end to end: FAIL images fill a 2 MB audit disk; every decision still reaches the audit, the
    heartbeat and the end of stream count what was lost (nothing), and no empty file is left."""
    with tmpfs(tmp_path / "mnt", "2m") as mnt:
        video = _noisy_video(tmp_path / "v.avi", 240)
        cfg = config(tmp_path, {"kind": "file", "uri": str(video)}, product="big",
                     audit={"dir": str(mnt / "audit"), "save_images": "fail", "image_format": "png",
                            "image_reserve_mb": 0.4, "fsync": "interval"})
        with Line(cfg) as line:
            got = line.collect(line.go(), 120)
        assert got.eos is not None and got.eos.results == 240 and got.eos.audit_lost == 0
        recs = [r for r in read_records(mnt / "audit") if r["type"] == "result"]
        assert [r["frame_id"] for r in recs] == list(range(240))
        fails = [r for r in recs if r["decision"] == "FAIL"]
        assert len(fails) == 80 and any(not r.get("audit_images") for r in fails)  # some images did not fit
        assert max(h.audit_lost for h in got.heartbeats) == 0
        _lines_are_whole(mnt / "audit")


@pytest.mark.parametrize("fsync", ["always", "interval", "never"])
def test_every_fsync_policy_keeps_every_record(tmp_path, fsync):
    audit = AuditLog(AuditConfig(dir=str(tmp_path / fsync), fsync=fsync, fsync_interval_s=0.0), lambda *a: None)
    for i in range(20):
        audit.record(_result(i))
        audit.poll()
    audit.close()
    assert [r["frame_id"] for r in read_records(tmp_path / fsync)] == list(range(20))

"""The watched folder's memory (stream/seen.py): names survive a restart, torn lines and other folders are ignored."""

from __future__ import annotations

import json
import stat

from inspector.stream.seen import SeenLog


def test_names_survive_a_restart_and_the_log_is_compacted(tmp_path):
    folder, path = tmp_path / "in", tmp_path / "audit" / "seen.jsonl"
    log = SeenLog(path, folder)
    log.compact(set())
    for n in ("a.png", "b.png", "we\nird.png"):
        log.add(n)
    log.close()
    again = SeenLog(path, folder)
    assert again.names == {"a.png", "b.png", "we\nird.png"}
    again.compact({"b.png", "c.png"})  # a.png left the folder: forgotten, so the log stays as small as the folder
    again.close()
    assert SeenLog(path, folder).names == {"b.png"}
    assert stat.S_IMODE(path.stat().st_mode) & 0o007 == 0


def test_a_torn_line_and_another_folders_log_are_ignored(tmp_path):
    path = tmp_path / "seen.jsonl"
    path.write_text(json.dumps({"folder": str(tmp_path / "in")}) + '\n"a.png"\n"b.pn')
    assert SeenLog(path, tmp_path / "in").names == {"a.png"}
    assert SeenLog(path, tmp_path / "elsewhere").names == set()
    assert SeenLog(None, tmp_path / "in").names == set()

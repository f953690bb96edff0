"""The soak's figures and verdicts, computed from what it observed (pure: no sockets, no processes).

Promises checked (each a PASS/FAIL line):

- no lost decision: the end of stream's identity holds (results == frames - dropped + trigger_errors), the
  subscriber received every published result, and the audit holds every one of them;
- no duplicated decision: no frame id twice at the subscriber or in the audit;
- the control socket answered throughout: every ``status`` probe and every garbage request that reached it;
- memory: RSS grew less than ``RSS_GROWTH_MAX`` from the end of the warm-up to the end;
- open files and threads flat: no more at the end than after the warm-up;
- inspection p99 during a control-garbage burst within ``GARBAGE_P99_MAX`` x that of the quiet ``BESIDE_S``
  seconds before each burst (the same background load; the whole run's quiet p99 is reported too);
- every requested fault injected at least ``min_each`` (5) times with its expected effect;
- SIGTERM at the end: end of stream, exit status 0.
"""

from __future__ import annotations

import os
import platform
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from inspector.protocol.messages import EndOfStream, Heartbeat
from inspector.stream.audit import read_records
from inspector.tools.soakfaults import Injection


@dataclass
class Observed:
    """What the soak saw, filled by its threads."""

    results: list[tuple[int | None, float, float, str]] = field(default_factory=list)  # frame, publish, ms, decision
    events: list[tuple[str, float]] = field(default_factory=list)
    heartbeat: Heartbeat | None = None
    eos: EndOfStream | None = None
    probes: list[tuple[float, bool, float]] = field(default_factory=list)  # ts, answered, ms
    samples: list[tuple[float, int, int, int]] = field(default_factory=list)  # ts, rss bytes, fds, threads
    injections: list[Injection] = field(default_factory=list)


RSS_GROWTH_MAX = 0.02
GARBAGE_P99_MAX = 1.2
SETTLE_S = 10.0  # after a fault ends, its effects (backlog, reconnect) still count to its phase
EFFECTS = {"camera": ("camera_lost", "camera_restored"), "sighup": ("calibration_reloaded",),
           "disk": ("audit_error", "audit_recovered")}
EFFECT_WINDOW_S = 30.0
BESIDE_S = 30.0  # the quiet seconds before a fault that are its baseline


def _pct(values: list[float]) -> dict[str, Any]:
    if not values:
        return {"n": 0, "p50": None, "p99": None}
    a = np.asarray(values)
    return {"n": int(a.size), "p50": round(float(np.percentile(a, 50)), 2), "p99": round(float(np.percentile(a, 99)), 2)}


def phases(obs, started: float, grace_s: float = 30.0) -> dict[str, dict[str, Any]]:
    """Latency (ms) per phase: results published during a fault (plus SETTLE_S) count to its class; the rest,
    after the first ``grace_s`` (start-up), to 'quiet'."""
    windows = [(i.kind, i.start, i.end + SETTLE_S) for i in obs.injections if i.injected]
    out: dict[str, list[float]] = {"quiet": []}
    for _fid, ts, ms, _d in obs.results:
        kind = next((k for k, a, b in windows if a <= ts <= b), None)
        if kind is None and ts >= started + grace_s:
            out["quiet"].append(ms)
        elif kind is not None:
            out.setdefault(kind, []).append(ms)
    return {k: _pct(v) for k, v in out.items()}


def beside(obs, kind: str, before_s: float = BESIDE_S) -> dict[str, Any]:
    """Latency (ms) of the quiet results in the ``before_s`` seconds before each ``kind`` fault: the baseline a
    fault is compared with, under the same background load (on a shared machine the load drifts by the
    minute, and the run's overall quiet p99 mostly measures the neighbours)."""
    windows = [(i.start, i.end + SETTLE_S) for i in obs.injections if i.injected]
    starts = [i.start for i in obs.injections if i.injected and i.kind == kind]
    out = []
    for _fid, ts, ms, _d in obs.results:
        if any(a - before_s <= ts < a for a in starts) and not any(a <= ts <= b for a, b in windows):
            out.append(ms)
    return _pct(out)


def _effects(obs) -> dict[str, dict[str, int]]:
    out: dict[str, dict[str, int]] = {}
    for inj in obs.injections:
        row = out.setdefault(inj.kind, {"injected": 0, "not_injectable": 0, "effect_seen": 0})
        if not inj.injected:
            row["not_injectable"] += 1
            continue
        row["injected"] += 1
        want = EFFECTS.get(inj.kind)
        if want is None:
            if inj.kind != "garbage" or inj.counts.get("unanswered", 0) == 0:
                row["effect_seen"] += 1
            continue
        seen = {k for k, ts in obs.events if inj.start - 1 <= ts <= inj.end + EFFECT_WINDOW_S}
        row["effect_seen"] += int(set(want) <= seen)
    return out


def _audit(audit_dir: Path, started: float) -> list[int | None]:
    try:
        recs = read_records(audit_dir)
    except OSError:
        return []
    return [r.get("frame_id") for r in recs if r.get("type") == "result" and (r.get("publish_ts") or 0) >= started - 1]


def _process(obs, started: float, warmup_s: float) -> dict[str, Any]:
    if not obs.samples:
        return {}
    warm_at = started + min(warmup_s, 300.0)
    warm = next((s for s in obs.samples if s[0] >= warm_at), obs.samples[-1])
    first, last = obs.samples[0], obs.samples[-1]
    mb = 1 / (1 << 20)
    # Growth is judged on the highest RSS after the warm-up, not the last sample: the kernel can reclaim a
    # process's file-backed pages under memory pressure, which would make a leak look like a shrink.
    peak = max(s[1] for s in obs.samples if s[0] >= warm[0])
    return {
        "rss_mb": {"start": round(first[1] * mb, 1), "after_warmup": round(warm[1] * mb, 1),
                   "end": round(last[1] * mb, 1), "max_after_warmup": round(peak * mb, 1),
                   "growth_after_warmup_pct": round(100 * (peak - warm[1]) / warm[1], 3),
                   "end_vs_warmup_pct": round(100 * (last[1] - warm[1]) / warm[1], 3)},
        "open_files": {"start": first[2], "after_warmup": warm[2], "end": last[2],
                       "max": max(s[2] for s in obs.samples)},
        "threads": {"start": first[3], "after_warmup": warm[3], "end": last[3], "max": max(s[3] for s in obs.samples)},
        "samples": len(obs.samples),
    }


def _decisions(obs, audit_ids: list) -> dict[str, Any]:
    e = obs.eos
    ids = [r[0] for r in obs.results if r[0] is not None]
    audit_frames = [i for i in audit_ids if i is not None]
    counts = {d: sum(r[3] == d for r in obs.results) for d in ("PASS", "FAIL", "ERROR")}
    out = {"received": len(obs.results), "by_decision": counts, "audit_records": len(audit_ids),
           "duplicated": {"subscriber": len(ids) - len(set(ids)), "audit": len(audit_frames) - len(set(audit_frames))}}
    if e is None:
        out["lost"] = {"subscriber": None, "audit": None, "identity_holds": False}
        return out
    out["lost"] = {"subscriber": e.results - len(obs.results), "audit": e.results - len(audit_ids),
                   "identity_holds": e.results == e.frames - e.dropped + e.trigger_errors,
                   "published_not_audited": len(set(ids) - set(audit_frames))}
    return out


def _verdicts(opts, dec, proc, lat, eff, ctl, rc, eos) -> list[tuple[str, bool, str]]:
    lost, dup = dec["lost"], dec["duplicated"]
    rss = proc.get("rss_mb", {})
    q, g = lat.get("before_garbage", {}).get("p99"), lat.get("garbage", {}).get("p99")
    out = [
        ("no lost decisions", bool(lost["identity_holds"]) and lost["subscriber"] == 0 and lost["audit"] == 0
         and eos is not None and eos.audit_lost == 0, f"{lost}, audit_lost {eos.audit_lost if eos else None}"),
        ("no duplicated decisions", dup["subscriber"] == 0 and dup["audit"] == 0, str(dup)),
        ("control answered throughout", ctl["probes_unanswered"] == 0 and ctl["garbage_unanswered"] == 0,
         f"{ctl['probes']} probes, {ctl['probes_unanswered']} unanswered; {ctl['garbage_sent']} garbage requests, "
         f"{ctl['garbage_unanswered']} unanswered"),
        (f"RSS growth after the warm-up < {100 * RSS_GROWTH_MAX:g}%",
         bool(rss) and rss["growth_after_warmup_pct"] < 100 * RSS_GROWTH_MAX,
         f"{rss.get('after_warmup')} MB after the warm-up, at most {rss.get('max_after_warmup')} MB after "
         f"({rss.get('growth_after_warmup_pct')}%), {rss.get('end')} MB at the end"),
        ("open files and threads flat", bool(proc) and proc["open_files"]["end"] <= proc["open_files"]["after_warmup"]
         and proc["threads"]["end"] <= proc["threads"]["after_warmup"],
         f"files {proc.get('open_files')}, threads {proc.get('threads')}"),
    ]
    if "garbage" in opts.faults:
        out.append((f"p99 during control garbage <= {GARBAGE_P99_MAX:g}x the quiet {BESIDE_S:g} s before each burst",
                    q is not None and g is not None and g <= GARBAGE_P99_MAX * q,
                    f"garbage {g} ms, quiet before {q} ms (whole run's quiet {lat.get('quiet', {}).get('p99')} ms)"))
    short = [k for k in opts.faults if eff.get(k, {}).get("effect_seen", 0) < opts.min_each]
    out.append((f"every fault class injected >= {opts.min_each} times with its effect", not short,
                "; ".join(f"{k}: {v}" for k, v in eff.items()) + (f"; short: {short}" if short else "")))
    out.append(("SIGTERM: end of stream and exit 0", rc == 0 and eos is not None and eos.reason == "signal",
                f"exit {rc}, end of stream {eos.reason if eos else None}"))
    return out


def report(opts, cfg, obs, rc: int, started: float, load_start, load_end) -> dict[str, Any]:
    """The soak's JSON report, with ``lines`` (what is printed) and ``pass``."""
    audit_ids = _audit(Path(cfg.audit.dir), started) if cfg.audit.enabled else []
    dec = _decisions(obs, audit_ids)
    proc = _process(obs, started, opts.warmup_s)
    lat = phases(obs, started, min(30.0, opts.warmup_s))
    if "garbage" in opts.faults:
        lat["before_garbage"] = beside(obs, "garbage")
    eff = _effects(obs)
    garbage = [i for i in obs.injections if i.kind == "garbage"]
    ctl = {"probes": len(obs.probes), "probes_unanswered": sum(not ok for _, ok, _ in obs.probes),
           "probe_ms": _pct([ms for _, ok, ms in obs.probes if ok]),
           "garbage_sent": sum(i.counts.get("sent", 0) for i in garbage),
           "garbage_unanswered": sum(i.counts.get("unanswered", 0) for i in garbage),
           "oversized_sent": sum(i.counts.get("oversized", 0) for i in garbage)}
    e = obs.eos
    verdicts = _verdicts(opts, dec, proc, lat, eff, ctl, rc, e)
    out = {
        "config": str(opts.config), "product": cfg.product, "source": f"{cfg.source.kind}:{cfg.source.uri}",
        "minutes": opts.minutes, "faults_requested": list(opts.faults), "every_s": opts.every_s,
        "warmup_s": opts.warmup_s, "started": datetime.fromtimestamp(started, UTC).isoformat(timespec="seconds"),
        "started_ts": started,
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform(),
                    "load_start": [round(x, 2) for x in load_start], "load_end": [round(x, 2) for x in load_end]},
        "frames_captured": e.frames if e else None, "results_published": e.results if e else None,
        "decisions": dec,
        "drops": {"queue_policy": e.dropped if e else None, "trigger_errors": e.trigger_errors if e else None,
                  "audit_spool_overflow": e.audit_lost if e else None},
        "latency_ms": lat, "control": ctl, "process": proc, "faults": eff,
        "injections": [{"kind": i.kind, "start": round(i.start, 3), "end": round(i.end, 3), "injected": i.injected,
                        "note": i.note, **({"counts": i.counts} if i.counts else {})} for i in obs.injections],
        "events": _count_events(obs), "daemon_exit": rc,
        "promises": [{"promise": p, "ok": ok, "detail": d} for p, ok, d in verdicts],
        "pass": all(ok for _, ok, _ in verdicts),
    }
    out["lines"] = _lines(out)
    return out


def _count_events(obs) -> dict[str, int]:
    out: dict[str, int] = {}
    for k, _ in obs.events:
        out[k] = out.get(k, 0) + 1
    return out


def _lines(r: dict[str, Any]) -> list[str]:
    lat = ", ".join(f"{k} p50 {v['p50']} / p99 {v['p99']} ms (n={v['n']})" for k, v in r["latency_ms"].items())
    proc = r["process"]
    lines = [
        f"soak: {r['minutes']:g} min, frames {r['frames_captured']}, results {r['results_published']} "
        f"(received {r['decisions']['received']}, audit {r['decisions']['audit_records']}), drops {r['drops']}",
        f"latency: {lat}",
        f"process: RSS {proc.get('rss_mb')}, open files {proc.get('open_files')}, threads {proc.get('threads')}",
        f"load average {r['machine']['load_start']} -> {r['machine']['load_end']} on {r['machine']['cpus']} CPUs",
    ]
    lines += [f"{'PASS' if p['ok'] else 'FAIL'}  {p['promise']}: {p['detail']}" for p in r["promises"]]
    lines.append(f"soak: {'PASS' if r['pass'] else 'FAIL'}")
    return lines


def recompute(out_dir: Path, opts) -> dict[str, Any]:
    """The report again from a soak's ``observed.json`` and ``daemon.yaml`` (same observations, this module's
    rules): for re-reading a run after the rules changed. The original soak.json is kept as soak.<n>.json."""
    import json

    from inspector.stream.config import load_daemon_config

    raw = json.loads((out_dir / "observed.json").read_text())
    obs = Observed([tuple(r) for r in raw["results"]], [tuple(e) for e in raw["events"]], None,
                   EndOfStream(**{k: v for k, v in raw["eos"].items() if k != "type"}) if raw["eos"] else None,
                   [tuple(p) for p in raw["probes"]], [tuple(x) for x in raw["samples"]],
                   [Injection(**i) for i in raw["injections"]])
    old = json.loads((out_dir / "soak.json").read_text())
    cfg = load_daemon_config(out_dir / "daemon.yaml")
    started = old.get("started_ts") or datetime.fromisoformat(old["started"]).timestamp()
    out = report(opts, cfg, obs, old["daemon_exit"], started, old["machine"]["load_start"], old["machine"]["load_end"])
    n = 0
    while (out_dir / f"soak.{n}.json").exists():
        n += 1
    (out_dir / "soak.json").rename(out_dir / f"soak.{n}.json")
    (out_dir / "soak.json").write_text(json.dumps(out, indent=2) + "\n")
    return out

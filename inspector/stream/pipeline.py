"""The inspection pipeline: capture -> bounded queue -> inference (micro-batched) -> output (publish + audit).

Threads and what each owns:

- capture (capture.py): the source; puts :class:`Frame` s on the :class:`FrameQueue`;
- inference: the active product's backend; takes up to ``max_batch`` frames, waiting at most
  ``batch_timeout_ms`` to fill a batch, and makes exactly one :class:`Result` per frame (ERROR when the
  frame is unusable or inference fails: a PLC treats ERROR as a reject, so the line fails safe);
- output (output.py): the PUB socket's sends, the audit log and metrics; stamps ``publish_ts`` and the
  latency (capture to publish, monotonic clock) and sends heartbeats.

Results stay in capture order: one inference thread, one FIFO to one output thread. A product switch is
prepared on the caller's thread (loading an engine takes seconds) and adopted by the inference thread
between two batches, so the stream never stops and no backend is closed while in use.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Any

import numpy as np

from inspector.errors import CalibrationError, InspectorError, SourceError
from inspector.protocol.messages import EndOfStream, Event, Heartbeat, Result, Status
from inspector.stream.audit import AuditLog
from inspector.stream.capture import Capture
from inspector.stream.config import DaemonConfig, drop_policy_for
from inspector.stream.decide import decide
from inspector.stream.frames import Frame, FrameQueue, TriggerBook
from inspector.stream.output import Outgoing, Output
from inspector.stream.product import Product, ProductLoader
from inspector.stream.prometheus import Metrics
from inspector.stream.publisher import Publisher
from inspector.stream.sources import Source

log = logging.getLogger(__name__)

SWITCH_TIMEOUT_S = 60.0
# A dead camera can block read() until its driver's timeout; stopping does not wait longer than this for it.
CAPTURE_JOIN_S = 10.0


class Pipeline:
    """Runs one line. ``start()``, then ``stop(reason)`` drains every captured frame and ends the stream."""

    def __init__(self, cfg: DaemonConfig, product: Product, loader: ProductLoader, source: Source,
                 publisher: Publisher, audit: AuditLog | None = None, metrics: Metrics | None = None,
                 clock: Callable[[], float] = time.monotonic, wall: Callable[[], float] = time.time) -> None:
        self.cfg, self.line, self.loader = cfg, cfg.line, loader
        self.publisher, self.metrics = publisher, metrics or Metrics(0)
        self.clock, self.wall = clock, wall
        self.active = product
        self._pending: Product | None = None
        self._adopted = threading.Event()
        self._switch_lock = threading.Lock()
        self.queue = FrameQueue(cfg.pipeline.queue_size, drop_policy_for(cfg.pipeline.drop_policy, cfg.source.kind))
        self.triggers = TriggerBook()
        # Results (with their frames) are bounded: a slow output thread backs up into the capture queue and its
        # drop policy. Events and status go through an unbounded side queue: the output thread itself raises
        # audit alarms, and must never block on its own full queue.
        self.output = Output(cfg, publisher, None, self.metrics, self._heartbeat, clock, wall)
        # The audit's disk alarms are events like any other (so the output thread exists first).
        self.audit = audit if audit is not None or not cfg.audit.enabled else AuditLog(cfg.audit, self.event)
        self.output.audit = self.audit
        self.capture = Capture(source, cfg.source, cfg.pipeline.mode, self.queue, self.triggers, self.event,
                               clock, wall)
        self.started = clock()
        self.inference_tick = clock()
        self._threads: list[threading.Thread] = []
        # Threads outside the pipeline the daemon also owns (control): name -> (thread, its tick or None).
        self._watched: dict[str, tuple[threading.Thread, Callable[[], float] | None]] = {}
        self.trigger_errors = 0  # ERROR results for triggers that got no frame
        self._stopped = False
        self.metrics.describe(line=self.line, product=product.name, backend=product.backend.name,
                              calibration=getattr(product.calibration, "id", ""))

    # -- lifecycle ----------------------------------------------------------------------------------------------
    def start(self) -> None:
        if self.cfg.pipeline.start_paused:
            self.capture.pause()
        for name, fn in (("output", self.output.run), ("inference", self._inference_loop),
                         ("capture", self.capture.run)):
            t = threading.Thread(target=fn, name=f"inspector-{name}", daemon=True)
            t.start()
            self._threads.append(t)
        self.status("paused" if self.capture.paused else "running")
        self._notice_unsigned(self.active)

    def stop(self, reason: str = "signal") -> None:
        """Stop capture, inspect and publish every frame already captured, send end-of-stream, flush the audit."""
        if self._stopped:
            return
        self._stopped = True
        self.status("stopping", {"reason": reason})
        self.capture.stop()
        out_t, inf_t, cap_t = self._threads
        cap_t.join(CAPTURE_JOIN_S)
        if cap_t.is_alive():
            log.warning("the source did not return from a read within %g s; stopping without it", CAPTURE_JOIN_S)
        self.queue.close()
        inf_t.join()
        # 'results' is filled in by the output thread, after every result before it was published.
        self.output.put(Outgoing(EndOfStream(self.line, self.wall(), reason, self.capture.captured, -1,
                                             self.queue.dropped, self.trigger_errors)))
        self.output.finish()
        out_t.join()
        if self.audit is not None:
            self.audit.close()
        self.active.backend.close()
        log.info("stopped (%s): %d frames, %d results %s, %d dropped", reason, self.capture.captured,
                 self.output.results, self.output.counts, self.queue.dropped)

    @property
    def source_ended(self) -> bool:
        return self.capture.ended.is_set()

    def watch(self, name: str, thread: threading.Thread, tick: Callable[[], float] | None = None) -> None:
        """Count another thread of the daemon (the control socket's) in :meth:`problems`."""
        self._watched[name] = (thread, tick)

    def problems(self, max_silence_s: float) -> list[str]:
        """What is wrong with the daemon's threads: dead, or silent for more than ``max_silence_s``.

        Capture may end (a finished file), and may block in a dead camera's read (stall detection reports
        that); inference, output and the watched threads must be alive, and those with a tick must tick.
        """
        now = self.clock()
        out = []
        threads = dict(zip(("output", "inference", "capture"), self._threads, strict=False))
        ticks = {"output": lambda: self.output.tick, "inference": lambda: self.inference_tick}
        for name, (t, tick) in {**{k: (v, ticks.get(k)) for k, v in threads.items()}, **self._watched}.items():
            if t.ident is None:
                continue  # not started yet (the control worker starts with the control thread)
            if not t.is_alive():
                if not (name == "capture" and self.capture.ended.is_set() and not self.capture.failed):
                    out.append(f"{name} thread is dead")
            elif tick is not None and now - tick() > max_silence_s:
                out.append(f"{name} thread silent for {now - tick():.1f} s")
        if self.output.preview.dead:  # started by the output thread; off the inspection path, but the daemon's
            out.append("preview thread is dead")
        return out

    def healthy(self, max_silence_s: float) -> bool:
        """Every thread alive and ticking: the systemd watchdog is only fed while this holds."""
        return not self.problems(max_silence_s)

    # -- called from other threads (control, signals) -------------------------------------------------------------
    def event(self, kind: str, message: str, detail: dict[str, Any] | None = None) -> None:
        if kind == "camera_lost":
            self.metrics.camera_lost()
        self.output.put_side(Outgoing(Event(self.line, self.wall(), kind, message, detail or {})))

    def status(self, state: str, detail: dict[str, Any] | None = None) -> None:
        p = self.active
        self.output.put_side(Outgoing(Status(self.line, self.wall(), state, p.name, p.backend.name, detail or {})))

    def pause(self) -> dict[str, Any]:
        self.capture.pause()
        self.status("paused")
        return {"paused": True}

    def resume(self) -> dict[str, Any]:
        self.capture.resume()
        self.status("running")
        return {"paused": False}

    def trigger(self, part_id: str) -> dict[str, Any]:
        n = self.triggers.add(part_id, self.clock())
        return {"part_id": part_id, "pending": n, "mode": self.cfg.pipeline.mode}

    def switch_product(self, product: str) -> dict[str, Any]:
        """Load ``product`` and hand it to the inference thread; on any failure the old product keeps running."""
        with self._switch_lock:
            old, name = self.active, product
            try:
                new = self.loader.load(name)
                shape = self.capture.last_shape
                if shape is not None and tuple(new.frame_hw) != tuple(shape):
                    new.backend.close()
                    raise SourceError(f"product {name} takes {new.frame_hw[0]}x{new.frame_hw[1]} frames but the "
                                      f"camera gives {shape[0]}x{shape[1]}")
                self._hand_over(new)
            except InspectorError as e:
                self.event("product_switch_failed", f"kept {old.name}: {e}", {"from": old.name, "to": name,
                                                                              "error": str(e)})
                raise InspectorError(f"{e}; still inspecting {old.name}") from e
            self.event("product_switched", f"product {old.name} -> {name}",
                       {"from": old.name, "to": name, "calibration_id": getattr(new.calibration, "id", None),
                        "model_sha": new.model_sha})
            self.metrics.describe(line=self.line, product=name, backend=new.backend.name,
                                  calibration=getattr(new.calibration, "id", ""))
            self._notice_unsigned(new)
            return {"product": name, "previous": old.name, "backend": new.backend.describe(),
                    "calibration_id": getattr(new.calibration, "id", None), "model_sha": new.model_sha}

    def reload_calibration(self) -> dict[str, Any]:
        with self._switch_lock:
            old = self.active
            try:
                new = self._reloaded(old)
                self._hand_over(new)
            except InspectorError as e:
                self.event("calibration_reload_failed", f"kept calibration {getattr(old.calibration, 'id', None)}: {e}",
                           {"product": old.name, "error": str(e)})
                raise InspectorError(f"{e}; still using calibration {getattr(old.calibration, 'id', None)}") from e
            old_id, new_id = getattr(old.calibration, "id", None), getattr(new.calibration, "id", None)
            self.event("calibration_reloaded", f"calibration {old_id} -> {new_id}",
                       {"product": new.name, "from": old_id, "to": new_id})
            self._notice_unsigned(new)
            return {"product": new.name, "calibration_id": new_id, "previous": old_id,
                    "image_threshold": new.calibration.image_threshold}

    def _notice_unsigned(self, p: Product) -> None:
        if getattr(p.calibration, "signed", True) is False:
            cid = getattr(p.calibration, "id", None)
            self.event("calibration_unsigned", f"calibration {cid} of {p.name} has no content hash (written before "
                       "records carried one): a hand edit could not be told apart. Review it, then run "
                       f"`inspector calibrate --product {p.name} --sign`", {"product": p.name, "calibration_id": cid})

    def _reloaded(self, old: Product) -> Product:
        try:
            return self.loader.reload_calibration(old)
        except InspectorError:
            raise
        except Exception as e:  # noqa: BLE001 - an unreadable file is a refused reload, never a crash
            raise CalibrationError(f"cannot read the calibration: {e!r}") from e

    def _hand_over(self, new: Product) -> None:
        self._adopted.clear()
        self._pending = new
        if not self._adopted.wait(SWITCH_TIMEOUT_S):
            self._pending = None
            if new.backend is not self.active.backend:
                new.backend.close()
            raise InspectorError(f"the inference thread did not take product {new.name} within {SWITCH_TIMEOUT_S:g} s"
                                 " (stopping or stuck); kept the old product")

    def snapshot(self) -> dict[str, Any]:
        p = self.active
        return {
            "line": self.line, "product": p.name, "backend": p.backend.describe(),
            "calibration_id": getattr(p.calibration, "id", None), "model_sha": p.model_sha,
            "calibration_signed": getattr(p.calibration, "signed", None), "mode": self.cfg.pipeline.mode, "paused": self.capture.paused, "camera": self.capture.state,
            "source": self.capture.source.describe(), "read": self.capture.next_id, "frames": self.capture.captured,
            "results": self.output.results, "decisions": dict(self.output.counts), "dropped": self.queue.dropped,
            "trigger_errors": self.trigger_errors, "drop_policy": self.queue.policy, "queue_depth": len(self.queue),
            "uptime_s": round(self.clock() - self.started, 3), "pending_triggers": len(self.triggers),
            "audit": self._audit_state(),
        }

    def _audit_state(self) -> dict[str, Any]:
        a = self.audit
        if a is None:
            return {"state": "off"}
        return {"state": "failing" if a.failing else "ok", "spooled": a.spooled, "lost": a.lost,
                "images_skipped": a.images.skipped}

    # -- inference thread ---------------------------------------------------------------------------------------
    def _adopt(self) -> Product:
        new = self._pending
        if new is not None:
            old, self.active, self._pending = self.active, new, None
            self._adopted.set()
            if old.backend is not new.backend:
                old.backend.close()
            log.info("now inspecting %s (calibration %s)", new.name, getattr(new.calibration, "id", None))
        return self.active

    def _inference_loop(self) -> None:
        fill_s = self.cfg.pipeline.batch_timeout_ms / 1000
        while True:
            self.inference_tick = self.clock()
            product = self._adopt()
            limit = product.backend.max_batch
            max_n = min(self.cfg.pipeline.max_batch or limit, limit)
            batch = self.queue.get_batch(max_n, 0.05, fill_s)
            timeout = self.cfg.pipeline.trigger_timeout_s
            self._expire_triggers(product, timeout, f"no frame within {timeout:g} s of the trigger")
            if not batch:
                if self.queue.closed and len(self.queue) == 0:
                    # A PLC waiting for a part's answer gets one, even from a stopping daemon.
                    self._expire_triggers(self._adopt(), -1.0, "the daemon stopped before a frame came")
                    return
                continue
            for frame, result, mask in self._inspect(product, batch):
                self._emit(result, frame, mask, product)

    def _expire_triggers(self, product: Product, timeout_s: float, why: str) -> None:
        for part_id, _t in self.triggers.expire(self.clock(), timeout_s):
            self.trigger_errors += 1
            frame = Frame(None, self.wall(), self.clock(), None, None, part_id)
            self._emit(self._error(product, frame, f"{why} (camera {self.capture.state})"), None)

    def _emit(self, result: Result, frame: Frame | None, mask: np.ndarray | None = None,
              product: Product | None = None) -> None:
        self.output.put(Outgoing(result, frame, mask, product))

    def _error(self, p: Product, f: Frame, why: str) -> Result:
        size = (f.image.shape[1], f.image.shape[0]) if f.image is not None and f.image.ndim >= 2 else None
        return Result(self.line, p.name, f.frame_id, f.part_id, f.capture_ts, "ERROR",
                      model_sha=p.model_sha, calibration_id=getattr(p.calibration, "id", None),
                      backend=p.backend.name, frame_size=size, error=why, source_file=f.source_file)

    def _inspect(self, p: Product, batch: list[Frame]) -> list[tuple[Frame, Result, np.ndarray | None]]:
        """One result per frame of ``batch``, in order."""
        H, W = p.frame_hw
        out: list[tuple[Frame, Result, np.ndarray | None] | None] = [None] * len(batch)
        good = []
        for i, f in enumerate(batch):
            img = f.image
            if img is None:
                out[i] = (f, self._error(p, f, f.error or "unusable frame"), None)
            elif img.dtype != np.uint8 or img.shape != (H, W, 3):
                out[i] = (f, self._error(p, f, f"frame is {img.shape} {img.dtype}; product {p.name} takes uint8 "
                                               f"({H}, {W}, 3) BGR"), None)
            else:
                good.append(i)
        if good:
            try:
                frames = batch[good[0]].image[None] if len(good) == 1 else np.stack([batch[i].image for i in good])
                res = p.backend.infer(frames)
                if len(res) != len(good):
                    raise InspectorError(f"backend returned {len(res)} results for {len(good)} frames")
            except Exception as e:  # noqa: BLE001 - any inference failure becomes ERROR results, never a crash
                log.error("inference failed on %d frame(s): %s", len(good), e)
                for i in good:
                    out[i] = (batch[i], self._error(p, batch[i], f"inference failed: {e}"), None)
            else:
                cal = p.calibration
                for k, i in enumerate(good):
                    f = batch[i]
                    try:
                        d = decide(float(res.score[k]), res.anomaly_map[k], cal, (H, W), p.roi)
                    except Exception as e:  # noqa: BLE001
                        out[i] = (f, self._error(p, f, f"decision failed: {e}"), None)
                        continue
                    r = Result(self.line, p.name, f.frame_id, f.part_id, f.capture_ts, d.decision, d.score,
                               d.normalized_score, d.threshold, d.regions, p.model_sha, getattr(cal, "id", None),
                               p.backend.name, (W, H), source_file=f.source_file)
                    out[i] = (f, r, d.mask)
        return [o for o in out if o is not None]

    def _heartbeat(self, seq: int, fps: float) -> Heartbeat:
        p = self.active
        return Heartbeat(self.line, self.wall(), seq, round(self.clock() - self.started, 3), round(fps, 2),
                         self.capture.captured, self.output.results, self.queue.dropped, self.output.errors,
                         len(self.queue), self.queue.size, p.backend.name, p.name, getattr(p.calibration, "id", None),
                         self.capture.state, self.capture.paused, self.cfg.pipeline.mode,
                         "off" if self.audit is None else ("failing" if self.audit.failing else "ok"),
                         self.audit.spooled if self.audit is not None else 0,
                         self.audit.lost if self.audit is not None else 0,
                         drift=self.output.drift.state, drift_stats=self.output.drift.stats())

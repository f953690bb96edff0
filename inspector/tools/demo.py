"""`inspector demo`: the whole product on one machine, from nothing to live decisions, in minutes on a CPU.

Steps: make the synthetic ``cable`` product (or use ``--data``), train it with the ``cpu-quick`` preset,
export it to ONNX, calibrate its thresholds, write a video of good and defective parts with ground truth,
start ``inspector run`` on that video as a separate process, subscribe like a PLC would, print every
decision live, save overlays, and summarise. The last line is machine-readable::

    demo: frames=N pass=N fail=N error=N agreement=0.NNN fps=N.N p50_ms=N.N p99_ms=N.N

``agreement`` is the share of frames whose decision matches the ground truth (PASS for a good part, FAIL
for a defective one; an ERROR never matches). The video is read at its frame rate (15 fps), as from a
camera, and every frame is inspected (queue policy ``block``). ``fps`` is results per second from the first
capture to the last publish (at most 15 unless the machine is slower); latencies are capture to publish,
measured by the daemon (when the machine cannot keep up, queueing is included).

The synthetic product holds out 100 good images (instead of the preset's 10%) so that the default
calibration policy (1% false rejects, conformal) has enough unseen good images: ``inspector calibrate
--product cable`` then works as it is after the demo.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import yaml

from inspector.errors import DataError, InspectorError

log = logging.getLogger(__name__)

# The default calibration policy (target FRR 0.01, conformal) needs ceil-rank <= n: at least 99 unseen good images.
HOLDOUT = 100
N_TRAIN = 100
VIDEO_FRAMES = 120
DEFECT_SHARE = 0.35
FPS = 15.0  # the line video's frame rate; the daemon reads it at this pace, as from a camera


@dataclass(frozen=True)
class DemoResult:
    frames: int
    counts: dict[str, int]
    agreement: float
    fps: float
    p50_ms: float
    p99_ms: float

    def line(self) -> str:
        c = self.counts
        return (f"demo: frames={self.frames} pass={c['PASS']} fail={c['FAIL']} error={c['ERROR']} "
                f"agreement={self.agreement:.3f} fps={self.fps:.1f} p50_ms={self.p50_ms:.1f} p99_ms={self.p99_ms:.1f}")


def _video_writer(path: Path, size: tuple[int, int], fps: float) -> tuple[cv2.VideoWriter, Path]:
    """A lossless FFV1 .avi when this OpenCV can write one (JPEG artifacts would look like defects), else MJPG."""
    w = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"FFV1"), fps, (size[1], size[0]))
    if w.isOpened():
        return w, path
    log.warning("this OpenCV cannot write FFV1; the demo video is MJPG, whose artifacts raise anomaly scores")
    w = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), fps, (size[1], size[0]))
    if not w.isOpened():
        raise DataError(f"OpenCV cannot write a video at {path} (neither FFV1 nor MJPG)")
    return w, path


def write_synthetic_video(path: Path, n: int = VIDEO_FRAMES, size: int = 256, defect_share: float = DEFECT_SHARE,
                          seed: int = 1234, fps: float = FPS) -> list[dict]:
    """A video of synthetic cable parts, good and defective, and its ground truth per frame.

    Returns ``[{"frame": i, "label": 0|1, "defect": type|None}]``; also written next to the video as JSON.
    """
    from inspector.data.synthetic import DEFECT_TYPES, render

    rng = np.random.default_rng(seed)
    writer, path = _video_writer(path, (size, size), fps)
    truth = []
    for i in range(n):
        defect = str(rng.choice(DEFECT_TYPES)) if rng.random() < defect_share else None
        img, _mask = render(rng, size, defect)
        writer.write(img)
        truth.append({"frame": i, "label": int(defect is not None), "defect": defect})
    writer.release()
    path.with_suffix(".json").write_text(json.dumps(truth))
    return truth


def write_dataset_video(path: Path, data: str | Path, frame_hw: tuple[int, int], limit: int = 0,
                        fps: float = FPS) -> list[dict]:
    """A video of a dataset's test images (good and defective, shuffled; at most ``limit``, 0 = all), resized
    to ``frame_hw``."""
    from inspector.data.dataset import load_dataset, read_image

    ds = load_dataset(data)
    samples = list(ds.test)
    if not samples:
        raise DataError(f"{data} has no test images to make the demo video from")
    order = np.random.default_rng(0).permutation(len(samples))
    if limit:
        order = order[:limit]
    writer, path = _video_writer(path, frame_hw, fps)
    truth = []
    for i, k in enumerate(order):
        s = samples[k]
        img = read_image(s.path)
        if img.shape[:2] != frame_hw:
            img = cv2.resize(img, (frame_hw[1], frame_hw[0]), interpolation=cv2.INTER_AREA)
        writer.write(img)
        truth.append({"frame": i, "label": int(s.label), "defect": s.defect_type, "file": str(s.path)})
    writer.release()
    path.with_suffix(".json").write_text(json.dumps(truth))
    return truth


def agreement(results: dict[int, str], truth: list[dict]) -> float:
    """Share of ground-truth frames whose decision matches: PASS for good, FAIL for defective (ERROR never)."""
    if not truth:
        return 0.0
    want = {t["frame"]: ("FAIL" if t["label"] else "PASS") for t in truth}
    return sum(results.get(i) == d for i, d in want.items()) / len(want)


def breakdown(results: dict[int, str], truth: list[dict]) -> list[str]:
    """One line per ground-truth kind (good or a defect type): how many frames got the right decision."""
    rows: dict[str, list[int]] = {}
    for t in truth:
        kind = t["defect"] or ("good" if not t["label"] else "defective")
        right = results.get(t["frame"]) == ("FAIL" if t["label"] else "PASS")
        rows.setdefault(kind, [0, 0])[0] += int(right)
        rows[kind][1] += 1
    return [f"  {k:<16} {ok:>4}/{n:<4} {'rejected' if k != 'good' else 'passed'}"
            for k, (ok, n) in sorted(rows.items(), key=lambda kv: (kv[0] != "good", kv[0]))]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def daemon_config(path: Path, home: Path, product: str, video: Path, audit: Path, pub: str, ctl: str,
                  backend: str = "auto", **sections: dict) -> Path:
    """The daemon YAML the demo runs: every frame inspected (block), paused until the listener is ready.
    ``sections`` update the config's sections (``inspector demo --station`` loops the video)."""
    cfg = {
        "line": "demo", "home": str(home), "product": product, "backend": backend, "device": "auto",
        "source": {"kind": "file", "uri": str(video), "at_end": "stop", "rate_fps": FPS},
        "pipeline": {"mode": "continuous", "queue_size": 4, "drop_policy": "block", "batch_timeout_ms": 2,
                     "start_paused": True},
        "zmq": {"publish": [pub], "control": ctl, "heartbeat_ms": 500, "linger_ms": 2000},
        "masks": {"publish": "fail", "resolution": "frame"},
        "audit": {"dir": str(audit), "fsync": "interval"},
        "metrics": {"port": 0},
        "log": {"format": "text", "level": "warning"},
        # The demo line's parts are DEFECT_SHARE defective: drift judges the reject rate knowing that.
        "drift": {"defect_rate": DEFECT_SHARE},
    }
    for key, values in sections.items():
        cfg[key] = {**cfg.get(key, {}), **values}
    path.write_text(yaml.safe_dump(cfg, sort_keys=False))
    return path


class _Step:
    """Prints a numbered step and how long it took."""

    def __init__(self, say: Callable[[str], None]) -> None:
        self.say, self.n, self.t0 = say, 0, time.perf_counter()

    def __call__(self, text: str) -> None:
        self.n += 1
        self.say(f"\n== {self.n}. {text}  (t={time.perf_counter() - self.t0:.0f} s)")


@dataclass(frozen=True)
class Prepared:
    """A demo product made and calibrated, and its line video with ground truth."""

    home: Path
    out: Path
    product: str
    video: Path
    truth: list[dict]


def run_demo(home: str | Path | None = None, out: str | Path = "demo_out", data: str | Path | None = None,
             product: str | None = None, frames: int = VIDEO_FRAMES, epochs: int | None = None,
             say: Callable[[str], None] = print) -> DemoResult:
    """Run every step; returns the summary (its ``line()`` is printed last)."""
    step = _Step(say)
    prep = prepare(home, out, data, product, frames, epochs, say, step)
    home, out, product = prep.home, prep.out, prep.product
    step("start `inspector run` on the video and listen like a PLC")
    summary = _run_line(home, product, prep.video, out, say)

    results = summary["decisions"]
    s = summary["summary"]
    res = DemoResult(s.frames, dict(s.counts), agreement(results, prep.truth), s.fps(), s.percentile_ms(50),
                     s.percentile_ms(99))
    say("\ndecisions against the ground truth:")
    for row in breakdown(results, prep.truth):
        say(row)
    home_flag = "" if home == Path.cwd() else f" --home {home}"
    say(f"\noverlays of FAIL/ERROR frames: {out / 'overlays'}; audit trail: {out / 'audit'}; "
        f"results: {out / 'results.jsonl'}")
    say(f"next: `inspector demo --station{home_flag}` keeps this line running with the operator station "
        f"(a web page at http://127.0.0.1:8080/, until Ctrl-C); `inspector calibrate --product {product}{home_flag}` "
        "re-fits the thresholds; `inspector run --config deploy/inspector.example.yaml` runs a real line")
    return res


def prepare(home: str | Path | None, out: str | Path, data: str | Path | None, product: str | None, frames: int,
            epochs: int | None, say: Callable[[str], None], step: _Step | None = None) -> Prepared:
    """Steps 1 to 5: the product (synthetic or ``data``), trained, exported, calibrated, and the line video."""
    import torch

    from inspector.bundle import home_dir

    torch.set_num_threads(max(1, os.cpu_count() or 1))
    home = home_dir(home)
    out = Path(out).resolve()
    out.mkdir(parents=True, exist_ok=True)
    product = product or ("cable" if data is None else Path(data).resolve().name)
    step = step or _Step(say)
    data, preset = _dataset(data, product, out, epochs, step, say)
    frame_hw = _make_product(product, data, preset, home, step, say)

    step(f"write a line video of {frames} parts with ground truth")
    video = out / "line.avi"
    if Path(data).resolve() == (out / "data" / product).resolve():
        truth = write_synthetic_video(video, frames, size=frame_hw[0])
    else:
        truth = write_dataset_video(video, data, frame_hw, limit=frames)
    say(f"{video}: {len(truth)} frames, {sum(t['label'] for t in truth)} defective")
    return Prepared(home, out, product, video, truth)


def _dataset(data: str | Path | None, product: str, out: Path, epochs: int | None, step: _Step,
             say: Callable[[str], None]) -> tuple[Path, Any]:
    """The dataset (the synthetic product unless ``data`` is given) and the cpu-quick preset adapted to it."""
    from inspector.data.dataset import load_dataset
    from inspector.data.synthetic import write_product
    from inspector.preset import load_preset

    preset = load_preset("cpu-quick")
    if data is None:
        step(f"synthetic product '{product}': {N_TRAIN + HOLDOUT} good images ({HOLDOUT} held out for calibration)")
        data = write_product(out / "data" / product, n_train=N_TRAIN + HOLDOUT, n_test_good=8, n_test_per_defect=2,
                             size=256, seed=0)
        train_cfg = dataclasses.replace(preset.train, val_fraction=HOLDOUT / (N_TRAIN + HOLDOUT))
    else:
        step(f"dataset {data}")
        train_cfg = preset.train
    if epochs is not None:
        train_cfg = dataclasses.replace(train_cfg, epochs=epochs)
        say(f"training for {epochs} epochs instead of the preset's {preset.train.epochs} (--epochs)")
    say(load_dataset(data).summary())
    return Path(data), dataclasses.replace(preset, train=train_cfg)


def _make_product(product: str, data: Path, preset: Any, home: Path, step: _Step,
                  say: Callable[[str], None]) -> tuple[int, int]:
    """Train, export and calibrate ``product``; returns the exported frame size (H, W)."""
    from inspector.calibrate.run import Policy, calibrate
    from inspector.export.run import ExportOptions, export
    from inspector.train.run import train

    step(f"train '{product}' with the cpu-quick preset ({preset.train.epochs} epochs) into {home}/engines/{product}")
    r = train(product, data, preset, home=home, device="auto", progress=sys.stderr.isatty())
    say(f"trained: {r.n_train} images, final loss {r.final_loss:.5f}, {r.train_seconds:.0f} s")

    step("export to ONNX (frame in, score and anomaly map out)")
    manifest = export(product, home, ExportOptions())
    frame_hw = manifest.frame_shape
    say(f"exported {manifest.onnx['fp32'].path}: frames {frame_hw[1]}x{frame_hw[0]}, max batch {manifest.max_batch}")

    step("calibrate thresholds on the held-out good images")
    n_hold = r.n_holdout
    target = 0.01 if n_hold >= 99 else float(np.ceil(1000 / (n_hold + 1)) / 1000)
    if target != 0.01:
        say(f"only {n_hold} held-out images: calibrating for a false-reject rate of {target:g} instead of 0.01")
    cal = calibrate(product, home, policy=Policy(target_frr=target)).record
    say(f"calibration {cal.id}: image threshold {cal.image_threshold:.5f}, pixel threshold {cal.pixel_threshold:.5f}, "
        f"min region {cal.min_region_area} px")
    return frame_hw


def _run_line(home: Path, product: str, video: Path, out: Path, say: Callable[[str], None]) -> dict:
    from inspector.client.listen import FrameLookup, listen
    from inspector.client.subscriber import ControlClient, Subscriber
    from inspector.protocol.messages import Heartbeat

    pub, ctl = f"tcp://127.0.0.1:{_free_port()}", f"tcp://127.0.0.1:{_free_port()}"
    cfg = daemon_config(out / "demo.yaml", home, product, video, out / "audit", pub, ctl)
    cmd = [sys.executable, "-c", "import sys; from inspector.cli import main; sys.exit(main())", "run", "--config",
           str(cfg)]
    say(f"$ inspector run --config {cfg}")
    proc = subprocess.Popen(cmd)
    sub = Subscriber(pub, line="demo")
    client = ControlClient(ctl, timeout_ms=2000, retries=5)
    try:
        deadline = time.monotonic() + 180
        while True:  # the daemon starts paused; resume once our subscription is live (no missed result)
            if proc.poll() is not None:
                raise InspectorError(f"the daemon exited with code {proc.returncode} before it was ready")
            if time.monotonic() > deadline:
                raise InspectorError("the daemon sent no heartbeat within 180 s")
            got = sub.recv(500)
            if got is not None and isinstance(got[0], Heartbeat):
                break
        status = client.request("status")["result"]
        say(f"daemon up: {status['product']} on {status['backend'].get('backend')} "
            f"({status['backend'].get('device', '?')}), calibration {status['calibration_id']}")
        client.request("resume")
        record = out / "results.jsonl"
        record.unlink(missing_ok=True)
        summary = listen(sub, on_text=say, save=out / "overlays", frames=FrameLookup(video), record=record,
                         timeout_s=120)
        rc = proc.wait(60)
        if rc != 0:
            raise InspectorError(f"the daemon exited with code {rc}")
    finally:
        client.close()
        sub.close()
        if proc.poll() is None:
            proc.terminate()
            proc.wait(30)
    decisions = {}
    for line in record.read_text().splitlines():
        h = json.loads(line)
        if h.get("frame_id") is not None:
            decisions[int(h["frame_id"])] = h["decision"]
    return {"summary": summary, "decisions": decisions}

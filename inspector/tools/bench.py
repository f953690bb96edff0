"""`inspector bench`: latency and throughput of a backend, from uint8 frames in host memory to results in
host memory (upload, preprocessing, model, scoring and download all inside the timed call).

Each timed call is one ``backend.infer(batch)``; warm-up calls are excluded. Per-frame latency is a call's
time divided by its batch; p50 / p99 / mean are over calls. Throughput is frames over the summed call time.
The process's CPU time per frame is recorded too: on a shared machine, wall time far above CPU time /
threads means the run was starved by neighbours and should be repeated. Frames come from a pool of distinct random frames (pinned host memory when a CUDA backend runs), cycled
so that no call reads the same buffer twice in a row. Several backends in one run are interleaved in
rounds, so a neighbour's load on a shared machine hits them alike; the machine's load average is
recorded before and after.
"""

from __future__ import annotations

import os
import platform
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from inspector.runtime.base import Backend


@dataclass
class BenchResult:
    """Timings of one backend: seconds per call, the batch, and what ran."""

    label: str
    describe: dict[str, Any]
    batch: int
    warmup_calls: int
    frame_shape: tuple[int, int]
    call_seconds: list[float] = field(default_factory=list)
    cpu_seconds: list[float] = field(default_factory=list)  # process CPU time (all threads) per call

    def summary(self) -> dict[str, Any]:
        """p50 / p99 / mean milliseconds per frame, frames per second, and what ran."""
        per_frame = np.asarray(self.call_seconds) * 1000.0 / self.batch
        total = float(np.sum(self.call_seconds))
        return {
            "label": self.label,
            "backend": self.describe,
            "batch": self.batch,
            "frame": f"{self.frame_shape[1]}x{self.frame_shape[0]}",
            "calls": len(self.call_seconds),
            "frames": len(self.call_seconds) * self.batch,
            "warmup_calls": self.warmup_calls,
            "p50_ms": float(np.percentile(per_frame, 50)),
            "p99_ms": float(np.percentile(per_frame, 99)),
            "mean_ms": float(per_frame.mean()),
            "min_ms": float(per_frame.min()),
            "cpu_ms": float(np.median(self.cpu_seconds)) * 1000.0 / self.batch if self.cpu_seconds else None,
            "throughput_fps": len(self.call_seconds) * self.batch / total if total > 0 else float("nan"),
        }


def frame_pool(n: int, frame_shape: tuple[int, int], pinned: bool = False, seed: int = 0) -> np.ndarray:
    """``n`` random ``uint8 (H, W, 3)`` frames; in pinned (page-locked) host memory when ``pinned``."""
    h, w = frame_shape
    rng = np.random.default_rng(seed)
    if pinned:
        import torch

        buf = torch.empty((n, h, w, 3), dtype=torch.uint8, pin_memory=True).numpy()
    else:
        buf = np.empty((n, h, w, 3), dtype=np.uint8)
    for i in range(n):
        buf[i] = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
    return buf


def bench(backends: dict[str, Backend], batch: int, frames: int, warmup: int, pool: np.ndarray,
          round_calls: int = 5) -> list[BenchResult]:
    """Time ``backends`` (label -> backend) on batches from ``pool``; interleaved in rounds of ``round_calls``.

    ``frames``: timed frames per backend (rounded up to whole calls). ``warmup``: untimed calls first.
    """
    calls = max(1, -(-frames // batch))
    n_batches = max(1, len(pool) // batch)
    batches = [pool[i * batch:(i + 1) * batch] for i in range(n_batches)]
    results = {label: BenchResult(label, b.describe(), batch, warmup, b.frame_shape) for label, b in backends.items()}
    for b in backends.values():
        warm = getattr(b, "warm_up", None)
        if warm is not None:
            warm(batch)
        for i in range(warmup):
            b.infer(batches[i % n_batches])
    done = 0
    while done < calls:
        step = min(round_calls, calls - done)
        for label, b in backends.items():
            r = results[label]
            for i in range(step):
                x = batches[(done + i) % n_batches]
                c0, t0 = time.process_time(), time.perf_counter()
                b.infer(x)
                r.call_seconds.append(time.perf_counter() - t0)
                r.cpu_seconds.append(time.process_time() - c0)
        done += step
    for label, b in backends.items():
        results[label].describe = b.describe()
    return list(results.values())


def machine() -> dict[str, Any]:
    """The machine and library versions, for the report."""
    info: dict[str, Any] = {
        "platform": platform.platform(),
        "python": platform.python_version(),
        "cpu": _cpu_model(),
        "logical_cpus": os.cpu_count(),
        "usable_cpus": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count(),
        "load_avg": [round(x, 2) for x in os.getloadavg()] if hasattr(os, "getloadavg") else None,
    }
    import torch

    info["torch"] = str(torch.__version__)
    if torch.cuda.is_available():
        info["gpu"] = torch.cuda.get_device_name(0)
        info["cuda"] = str(torch.version.cuda)
    for mod in ("onnxruntime", "tensorrt", "numpy"):
        try:
            info[mod] = __import__(mod).__version__
        except ImportError:
            info[mod] = None
    return info


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def format_table(results: list[BenchResult]) -> str:
    """One line per backend: latency per frame and throughput."""
    lines = [f"{'backend':<28} {'batch':>5} {'frame':>10} {'p50 ms':>9} {'p99 ms':>9} {'mean ms':>9} {'frames/s':>10} "
             f"{'cpu ms':>8}"]
    for r in results:
        s = r.summary()
        cpu = f"{s['cpu_ms']:>8.2f}" if s["cpu_ms"] is not None else f"{'-':>8}"
        lines.append(f"{s['label']:<28} {s['batch']:>5} {s['frame']:>10} {s['p50_ms']:>9.3f} {s['p99_ms']:>9.3f} "
                     f"{s['mean_ms']:>9.3f} {s['throughput_fps']:>10.1f} {cpu}")
    return "\n".join(lines)

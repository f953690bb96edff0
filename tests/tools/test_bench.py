"""`inspector bench`: the statistics, warm-up exclusion, interleaving, and the command on a tiny bundle."""

from __future__ import annotations

import json

import numpy as np
import pytest

from inspector.cli import main
from inspector.result import InferenceResult
from inspector.runtime.base import Backend
from inspector.tools.bench import BenchResult, bench, format_table, frame_pool, machine
from tests.export_support import exported_home


class Counting(Backend):
    """A backend that records the order of its calls and the first byte of each batch."""

    def __init__(self, name: str, log: list) -> None:
        self.name, self.log = name, log

    @property
    def max_batch(self) -> int:
        return 8

    @property
    def frame_shape(self) -> tuple[int, int]:
        return (4, 6)

    def infer(self, frames: np.ndarray) -> InferenceResult:
        self.log.append((self.name, len(frames)))
        return InferenceResult(np.zeros(len(frames), np.float32), np.zeros((len(frames), 2, 2), np.float32))


def test_summary_statistics_are_per_frame():
    r = BenchResult("x", {}, batch=4, warmup_calls=2, frame_shape=(1080, 1920), call_seconds=[0.004] * 99 + [0.104])
    s = r.summary()
    assert s["frames"] == 400 and s["frame"] == "1920x1080"
    assert s["p50_ms"] == pytest.approx(1.0) and s["mean_ms"] == pytest.approx(1.25)
    assert 1.0 < s["p99_ms"] <= 26.0
    assert s["throughput_fps"] == pytest.approx(400 / (99 * 0.004 + 0.104))
    assert s["cpu_ms"] is None and "1920x1080" in format_table([r])


def test_warmup_is_untimed_and_backends_are_interleaved():
    log: list = []
    a, b = Counting("a", log), Counting("b", log)
    pool = frame_pool(4, (4, 6))
    results = bench({"a": a, "b": b}, batch=2, frames=12, warmup=3, pool=pool, round_calls=2)
    assert [len(r.call_seconds) for r in results] == [6, 6] == [len(r.cpu_seconds) for r in results]
    assert log[:6] == [("a", 2)] * 3 + [("b", 2)] * 3  # warm-up first
    timed = [name for name, _ in log[6:]]
    assert timed == ["a", "a", "b", "b"] * 3


def test_frame_pool_and_machine():
    pool = frame_pool(3, (5, 7))
    assert pool.shape == (3, 5, 7, 3) and pool.dtype == np.uint8 and not np.array_equal(pool[0], pool[1])
    m = machine()
    assert m["torch"] and m["logical_cpus"] >= 1 and "onnxruntime" in m


def test_bench_command_compares_two_backends(trained, tmp_path_factory, tmp_path, capsys):
    home = exported_home(trained, tmp_path_factory.getbasetemp())
    out = tmp_path / "bench.json"
    rc = main(["bench", "--product", "cable", "--home", str(home), "--backend", "onnxruntime", "--compare",
               "torch-eager", "--frames", "4", "--warmup", "1", "--batch", "2", "--threads", "1", "--json", str(out)])
    assert rc == 0
    text = capsys.readouterr().out
    assert "machine:" in text and "onnxruntime" in text and "torch-eager" in text and "faster than" in text
    report = json.loads(out.read_text())
    assert [r["label"] for r in report["results"]] == ["onnxruntime", "torch-eager"]
    assert all(r["frames"] == 4 and r["batch"] == 2 and r["p50_ms"] > 0 and r["cpu_ms"] >= 0 for r in report["results"])
    assert report["speedup"] > 0 and report["machine"]["load_avg"] is not None

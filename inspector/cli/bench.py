"""inspector bench --product NAME --backend B [--compare B2] [--batch N] [--frames N] [--frame WxH] [--threads N]
[--warmup N] [--no-spin] [--json OUT] [--home DIR]"""

from __future__ import annotations

import argparse

from inspector.cli.common import add_home, add_product
from inspector.cli.export import size_arg
from inspector.runtime import BACKEND_NAMES, PRECISION_CHOICES

# The serving backends, plus onnxruntime on the standard graph and torch eager on the CPU.
BENCH_BACKENDS = (*BACKEND_NAMES, "onnxruntime-standard", "torch-eager")


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "bench",
        help="latency and throughput of a backend, frame in host memory to result in host memory",
        description="Time backend.infer on batches of random uint8 frames: p50/p99/mean latency per frame and "
        "throughput, warm-up excluded. 'torch-eager' is the plain eager torch fp32 model on the CPU; "
        "'onnxruntime-standard' runs the plain model.onnx instead of the fused-attention model.ort.onnx. With "
        "--compare the two backends run interleaved in the same run and the speed-up is printed. With a "
        "--frame other than the exported one, the product is exported again into a temporary directory.",
    )
    add_product(p)
    p.add_argument("--backend", default="auto", choices=BENCH_BACKENDS, help="backend to time (default auto)")
    p.add_argument("--compare", choices=BENCH_BACKENDS, metavar="B2", help="also time B2, interleaved, and report the ratio")
    p.add_argument("--batch", type=int, default=1, help="frames per call (default 1)")
    p.add_argument("--frames", type=int, default=100, help="timed frames per backend (default 100)")
    p.add_argument("--warmup", type=int, default=10, help="untimed calls first (default 10)")
    p.add_argument("--frame", type=size_arg, metavar="WxH", help="frame size (default: the exported one)")
    p.add_argument("--threads", type=int, default=0, help="CPU threads for torch and onnxruntime (default: theirs)")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:N (default auto)")
    p.add_argument("--precision", default="auto", choices=PRECISION_CHOICES,
                   help="default auto (int8: onnxruntime on the CPU, after export --int8)")
    p.add_argument("--no-spin", action="store_true",
                   help="onnxruntime: idle worker threads sleep instead of spinning (what the daemon runs)")
    p.add_argument("--no-graphs", action="store_true", help="torch on CUDA: no CUDA-graph replay")
    p.add_argument("--compile", action="store_true", help="torch on CUDA: torch.compile the model")
    p.add_argument("--channels-last", action="store_true", help="torch on CUDA: channels-last convolutions")
    p.add_argument("--chunk", type=int, default=8, help="torch on CUDA: frames per pipelined chunk (default 8)")
    p.add_argument("--json", metavar="OUT", help="write machine, settings and figures as JSON")
    add_home(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import json
    import logging
    import tempfile
    from pathlib import Path

    from inspector.errors import BackendError
    from inspector.tools.bench import bench, format_table, frame_pool, machine

    log = logging.getLogger("inspector.tools.bench")
    if args.batch < 1 or args.frames < 1 or args.warmup < 0:
        raise BackendError("--batch and --frames must be at least 1, --warmup at least 0")
    with tempfile.TemporaryDirectory(prefix="inspector-bench-") as tmp:
        home = _bundle_home(args, Path(tmp), log)
        names = [args.backend] + ([args.compare] if args.compare else [])
        backends = {}
        try:
            for name in names:
                label = name if name not in backends else f"{name}#2"
                backends[label] = _open(name, home, args)
            pinned = any(str(b.describe().get("device", "cpu")).startswith("cuda") for b in backends.values())
            frame = next(iter(backends.values())).frame_shape
            pool = frame_pool(max(2 * args.batch, 8), frame, pinned=pinned)
            info = machine()
            results = bench(backends, args.batch, args.frames, args.warmup, pool)
            info["load_avg_after"] = machine()["load_avg"]
        finally:
            for b in backends.values():
                b.close()
    print(f"machine: {info['cpu']} ({info['usable_cpus']} usable CPUs), {info.get('gpu', 'no GPU')}; "
          f"load average {info['load_avg']} -> {info['load_avg_after']}")
    print(f"versions: torch {info['torch']}, onnxruntime {info['onnxruntime']}, tensorrt {info['tensorrt']}, "
          f"python {info['python']}")
    for r in results:
        print(f"{r.label}: {r.describe}")
    print(format_table(results))
    summaries = [r.summary() for r in results]
    report = {"machine": info, "args": {k: v for k, v in vars(args).items() if k != "func"}, "results": summaries}
    if len(summaries) == 2:
        ratio = summaries[1]["mean_ms"] / summaries[0]["mean_ms"]
        report["speedup"] = ratio
        print(f"{summaries[0]['label']} is {ratio:.2f}x faster than {summaries[1]['label']} (mean per frame)")
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(report, indent=2, default=str) + "\n")
    return 0


def _bundle_home(args: argparse.Namespace, tmp, log) -> str | None:
    """The home whose bundle to time: the product's own, or a temporary re-export at another frame size."""
    import os

    from inspector.bundle import bundle_dir, home_dir
    from inspector.errors import CheckpointError
    from inspector.export.run import ExportOptions, export
    from inspector.manifest import INT8, load_manifest

    src = bundle_dir(args.home, args.product)
    try:
        manifest = load_manifest(src)
    except CheckpointError:
        manifest = None
    if manifest is not None and (args.frame is None or manifest.frame_shape == args.frame) \
            and args.batch <= manifest.max_batch:
        return args.home
    if not (src / "model.pt").is_file():
        from inspector.bundle import load_checkpoint

        load_checkpoint(src / "model.pt")  # raises CheckpointError naming the real path and what to run
    log.warning("bench: exporting %s into a temporary directory (frame %s, max batch %d)", args.product,
                "default" if args.frame is None else f"{args.frame[1]}x{args.frame[0]}", max(args.batch, 1))
    dst = bundle_dir(tmp, args.product)
    dst.mkdir(parents=True)
    os.symlink(src / "model.pt", dst / "model.pt")
    opts = ExportOptions(
        frame=args.frame or (manifest.frame_shape if manifest else None),
        roi=manifest.roi_box if manifest else None,
        mask_size=manifest.mask_shape if manifest else None,
        max_batch=max(args.batch, manifest.max_batch if manifest else 1),
        fp16=bool(manifest and "fp16" in manifest.onnx) or args.precision == "fp16",
        int8=bool(manifest and INT8 in manifest.onnx) or args.precision == INT8,
    )
    export(args.product, tmp, opts)
    return str(home_dir(tmp))


def _open(name: str, home, args: argparse.Namespace):
    from inspector.runtime import open_backend
    from inspector.runtime.common import open_bundle

    max_batch = args.batch
    if name == "torch-eager":
        from inspector.runtime.torch_backend import TorchBackend

        return TorchBackend(open_bundle(home, args.product), device="cpu", precision="fp32", threads=args.threads,
                            max_batch=max_batch)
    if name == "torch":
        from inspector.runtime.torch_backend import TorchBackend

        return TorchBackend(open_bundle(home, args.product), device=args.device, precision=args.precision,
                            threads=args.threads, max_batch=max_batch, graphs=not args.no_graphs,
                            compile=args.compile, channels_last=args.channels_last, chunk=args.chunk)
    if name == "onnxruntime-standard":
        from inspector.runtime.onnxruntime_backend import OnnxRuntimeBackend

        return OnnxRuntimeBackend(open_bundle(home, args.product), device=args.device, precision=args.precision,
                                  threads=args.threads, max_batch=max_batch, graph="standard", spin=not args.no_spin)
    return open_backend(name, home, args.product, device=args.device, threads=args.threads, max_batch=max_batch,
                        precision=args.precision, spin=not args.no_spin)

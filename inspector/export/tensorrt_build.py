"""`inspector build`: the product's ONNX -> a TensorRT engine (plan) for this GPU and TensorRT version.

The plan lands in ``engines/NAME/<gpu-name>-sm<cc>-trt<version>.plan`` and gets an entry in the manifest.
One optimisation profile covers the batch range 1..max_batch at the fixed frame size; a timing cache per
GPU and TensorRT version (``engines/.timing/<same stem>.cache``) makes rebuilds fast.

Precision, TensorRT 10 and 11:
- TensorRT 11 has only strongly typed networks (no FP16 builder flag): fp16 comes from the fp16 ONNX
  (``inspector export --fp16``), whose types already keep preprocessing, scoring and, when the export's
  overflow check said so, LayerNorms in float32.
- TensorRT 10 builds the fp32 ONNX with the FP16 flag; LayerNorm layers are pinned to float32 (with
  OBEY_PRECISION_CONSTRAINTS) unless the export measured that they are safe in float16. With
  ``strongly_typed=True`` it builds the fp16 ONNX as TensorRT 11 does.

The decisions are pure functions (``build_recipe``, ``plan_filename``, ``profile_shapes``) tested without
TensorRT; ``build_engine`` is the thin shell around the TensorRT builder API. TensorRT never ran on the
machine this was written on: ``build_engine`` is written against the documented TensorRT 10/11 Python API.
"""

from __future__ import annotations

import datetime as dt
import logging
import os
import re
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from inspector.errors import BackendError, CheckpointError
from inspector.export import DEFAULT_WORKSPACE_MIB
from inspector.files import sha256_file, write_bytes_atomic
from inspector.manifest import PRECISIONS, EngineEntry, Manifest, Profile, onnx_file, save_manifest
from inspector.result import INPUT_NAME, OUTPUT_NAMES
from inspector.runtime.common import batch_limit, open_bundle
from inspector.runtime.tensorrt_backend import gpu_identity, import_tensorrt

log = logging.getLogger(__name__)

MIN_TENSORRT = 10


def parse_version(version: str) -> tuple[int, ...]:
    """'10.13.0.35' -> (10, 13, 0, 35); non-numeric suffixes are ignored."""
    parts = []
    for p in version.split("."):
        m = re.match(r"\d+", p)
        if not m:
            break
        parts.append(int(m.group()))
    if not parts:
        raise BackendError(f"cannot read the TensorRT version {version!r}")
    return tuple(parts)


def gpu_slug(name: str) -> str:
    """A GPU name as a file-name part: 'NVIDIA H200' -> 'nvidia-h200'."""
    slug = re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-")
    return slug or "gpu"


def plan_filename(gpu_name: str, compute_capability: str, tensorrt_version: str) -> str:
    """``<gpu-name>-sm<cc>-trt<version>.plan``, e.g. ``nvidia-h200-sm90-trt10.13.0.35.plan``."""
    cc = compute_capability.replace(".", "")
    return f"{gpu_slug(gpu_name)}-sm{cc}-trt{tensorrt_version}.plan"


def profile_shapes(frame: tuple[int, int], max_batch: int, opt_batch: int | None = None
                   ) -> tuple[tuple[int, ...], tuple[int, ...], tuple[int, ...]]:
    """(min, opt, max) shapes of the ``frames`` input: batch 1..max_batch at the fixed frame (H, W).

    ``opt_batch`` (default ``max_batch``) is the batch TensorRT tunes its kernels for.
    """
    if max_batch < 1:
        raise BackendError(f"max batch {max_batch} must be at least 1")
    opt = max_batch if opt_batch is None else opt_batch
    if not 1 <= opt <= max_batch:
        raise BackendError(f"opt batch {opt} must lie in 1..{max_batch}")
    h, w = frame
    return (1, h, w, 3), (opt, h, w, 3), (max_batch, h, w, 3)


@dataclass(frozen=True)
class BuildRecipe:
    """How to build: which ONNX file, strongly typed or not, the FP16 flag, LayerNorms pinned to float32."""

    onnx_precision: str  # 'fp32' or 'fp16': which exported ONNX to parse
    precision: str  # what the engine computes in: 'fp16' (mixed) or 'fp32'
    strongly_typed: bool
    fp16_flag: bool
    pin_layernorm_fp32: bool


def build_recipe(tensorrt_version: str, manifest: Manifest, precision: str = "fp16",
                 strongly_typed: bool | None = None) -> BuildRecipe:
    """Decide the build for a TensorRT version and what the export produced (pure).

    ``strongly_typed``: None = TensorRT's natural mode (always on 11+, off on 10). Raises BackendError for
    TensorRT < 10, an fp16 build without the fp16 ONNX where one is needed, or weak typing on 11+.
    """
    major = parse_version(tensorrt_version)[0]
    product = manifest.product
    if major < MIN_TENSORRT:
        raise BackendError(f"TensorRT {tensorrt_version} is too old: {MIN_TENSORRT}.x or newer is needed "
                           "(named tensors, execute_async_v3)")
    if precision not in PRECISIONS:
        raise BackendError(f"unknown engine precision {precision!r}; allowed: {', '.join(PRECISIONS)}")
    if major >= 11 and strongly_typed is False:
        raise BackendError(f"TensorRT {tensorrt_version} has only strongly typed networks")
    typed = major >= 11 if strongly_typed is None else strongly_typed
    if precision == "fp32":
        return BuildRecipe("fp32", "fp32", typed, False, False)
    if typed:
        if "fp16" not in manifest.onnx:
            raise BackendError(
                f"an fp16 engine on TensorRT {tensorrt_version} is built from the fp16 ONNX (strongly typed, no FP16 "
                f"flag), and {product} has none; run `inspector export --product {product} --fp16` first"
            )
        return BuildRecipe("fp16", "fp16", True, False, False)
    return BuildRecipe("fp32", "fp16", False, True, manifest.layernorm_fp32)


def timing_cache_path(bundle: Path, plan_name: str) -> Path:
    """Timing cache shared by the products of a home: ``<home>/engines/.timing/<plan stem>.cache``."""
    return bundle.parent / ".timing" / (Path(plan_name).stem + ".cache")


def check_network_io(inputs: list[str], outputs: list[str]) -> None:
    """The parsed network's I/O must be the result type's names: input ``frames``, outputs ``score``,
    ``anomaly_map``."""
    if inputs != [INPUT_NAME] or sorted(outputs) != sorted(OUTPUT_NAMES):
        raise BackendError(f"the ONNX network has inputs {inputs} and outputs {outputs}; expected [{INPUT_NAME!r}] "
                           f"and {list(OUTPUT_NAMES)}; run `inspector export` again")


def build_engine(home: str | Path | None, product: str, workspace_mib: int = DEFAULT_WORKSPACE_MIB,
                 max_batch: int | None = None, opt_batch: int | None = None, precision: str = "fp16",
                 strongly_typed: bool | None = None, device_index: int = 0) -> EngineEntry:
    """Build, serialise and record the TensorRT plan of ``product`` for this GPU; returns its manifest entry."""
    trt = import_tensorrt()
    gpu, cc = gpu_identity(device_index)
    bundle = open_bundle(home, product)
    manifest = bundle.manifest
    max_batch = batch_limit(manifest.max_batch, max_batch)
    recipe = build_recipe(trt.__version__, manifest, precision, strongly_typed)
    try:
        onnx_path = onnx_file(bundle.path, manifest, recipe.onnx_precision)
    except CheckpointError as e:
        raise BackendError(str(e)) from e
    shapes = profile_shapes(manifest.frame_shape, max_batch, opt_batch)
    plan_name = plan_filename(gpu, cc, trt.__version__)
    cache_path = timing_cache_path(bundle.path, plan_name)

    t0 = time.perf_counter()
    logger = trt.Logger(trt.Logger.WARNING)
    builder = trt.Builder(logger)
    network, parser = _parse(trt, builder, logger, onnx_path, recipe.strongly_typed)
    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, workspace_mib << 20)
    if recipe.fp16_flag:
        config.set_flag(trt.BuilderFlag.FP16)
    pinned = _pin_layernorms(trt, network, config) if recipe.pin_layernorm_fp32 else 0
    profile = builder.create_optimization_profile()
    profile.set_shape(INPUT_NAME, *shapes)
    config.add_optimization_profile(profile)
    cache = config.create_timing_cache(cache_path.read_bytes() if cache_path.is_file() else b"")
    config.set_timing_cache(cache, False)

    serialized = builder.build_serialized_network(network, config)
    del parser  # it owns the network's weights: alive until the build is done
    if serialized is None:
        raise BackendError(f"TensorRT {trt.__version__} failed to build {onnx_path} (see its log above); "
                           f"try a larger --workspace than {workspace_mib} MiB")
    plan_path = bundle.path / plan_name
    write_bytes_atomic(plan_path, memoryview(serialized))
    write_bytes_atomic(cache_path, memoryview(config.get_timing_cache().serialize()))
    entry = EngineEntry(
        plan=plan_name, sha256=sha256_file(plan_path), gpu=gpu, compute_capability=cc, tensorrt=trt.__version__,
        onnx=onnx_path.name, onnx_sha256=manifest.onnx[recipe.onnx_precision].sha256,
        onnx_precision=recipe.onnx_precision, precision=recipe.precision, strongly_typed=recipe.strongly_typed,
        fp16_flag=recipe.fp16_flag, pin_layernorm_fp32=recipe.pin_layernorm_fp32, layernorms_pinned=pinned,
        profile=Profile(*shapes), max_batch=max_batch, workspace_mib=workspace_mib,
        timing_cache=os.path.relpath(cache_path, bundle.path),
        built=dt.datetime.now(dt.UTC).isoformat(timespec="seconds"), build_seconds=round(time.perf_counter() - t0, 1),
    )
    save_manifest(bundle.path, manifest.with_engine(entry))
    log.info("built %s in %.0f s (%s, strongly typed=%s)", plan_path, entry.build_seconds, recipe.precision,
             recipe.strongly_typed)
    return entry


def _parse(trt: Any, builder: Any, logger: Any, onnx_path: Path, strongly_typed: bool) -> tuple[Any, Any]:
    """(network, parser) of ``onnx_path``, the network's I/O checked against the result type's names.

    The parser owns the weights the network points to: the caller keeps it until the engine is built.
    """
    flags = 1 << int(trt.NetworkDefinitionCreationFlag.STRONGLY_TYPED) if strongly_typed else 0
    network = builder.create_network(flags)
    parser = trt.OnnxParser(network, logger)
    if not parser.parse_from_file(str(onnx_path)):
        errors = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
        raise BackendError(f"TensorRT {trt.__version__} cannot parse {onnx_path}: {errors}")
    check_network_io([network.get_input(i).name for i in range(network.num_inputs)],
                     [network.get_output(i).name for i in range(network.num_outputs)])
    return network, parser


def _pin_layernorms(trt: Any, network: Any, config: Any) -> int:
    """Keep every normalisation layer in float32 under the FP16 flag (TensorRT 10 weak typing)."""
    config.set_flag(trt.BuilderFlag.OBEY_PRECISION_CONSTRAINTS)
    n = 0
    for i in range(network.num_layers):
        layer = network.get_layer(i)
        if layer.type == trt.LayerType.NORMALIZATION:
            layer.precision = trt.float32
            layer.set_output_type(0, trt.float32)
            n += 1
    return n

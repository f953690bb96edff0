"""A product's export manifest, ``<home>/engines/<product>/manifest.json``: what was exported and from what.

Written by ``inspector export`` and extended by ``inspector build``. Every backend reads it to learn the
frame size, the ROI, the mask size and the batch range, and to check that the files it is about to run are
the ones that were exported (sha256 of the checkpoint, of each ONNX file and of each TensorRT plan).

Schema 1 (JSON)::

    {"schema": 1, "product": str, "created": iso str,
     "checkpoint": {"path": "model.pt", "sha256": str},
     "onnx": {"fp32": {"path": "model.onnx", "sha256": str},
              "fp16": {"path": "model.fp16.onnx", "sha256": str},           # optional
              "fp32-ort": {"path": "model.ort.onnx", "sha256": str,         # optional, onnxruntime only
                           "consumers": ["onnxruntime"]},
              "int8": {"path": "model.int8.onnx", "sha256": str,            # optional, onnxruntime CPU only
                       "consumers": ["onnxruntime"]}},
     "input": {"name": "frames", "dtype": "uint8", "shape": ["batch", H, W, 3], "layout": "NHWC", "color": "BGR"},
     "outputs": {"score": {"dtype": "float32", "shape": ["batch"]},
                 "anomaly_map": {"dtype": "float32", "shape": ["batch", h, w]}},
     "frame": {"height": H, "width": W}, "roi": [x, y, w, h] | null, "model_size": [H, W], "mask_size": [h, w],
     "normalization": {"mean": [...], "std": [...]}, "max_batch": int, "opset": int,
     "versions": {...}, "engines": [{TensorRT plan entries}], "fp16_decisions": {...},
     "ort_graph": {"written": bool, ...}}
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from inspector.errors import CheckpointError
from inspector.model.graph import GraphSpec
from inspector.model.weights import sha256_file

SCHEMA = 1
MANIFEST = "manifest.json"
PRECISIONS = ("fp32", "fp16")
# ONNX files a manifest may list: one per precision, plus the onnxruntime-only graphs (fused attention;
# int8 dynamically quantised MatMuls for the CPU).
ONNX_KEYS = (*PRECISIONS, "fp32-ort", "int8")
_REQUIRED = ("schema", "product", "checkpoint", "onnx", "input", "outputs", "frame", "model_size", "mask_size",
             "normalization", "max_batch", "opset")


def manifest_path(bundle: Path) -> Path:
    """``<bundle>/manifest.json``."""
    return Path(bundle) / MANIFEST


def load_manifest(bundle: Path) -> dict[str, Any]:
    """Read and validate ``<bundle>/manifest.json``; CheckpointError when missing or malformed."""
    bundle = Path(bundle)
    path = manifest_path(bundle)
    if not path.is_file():
        raise CheckpointError(f"no export manifest at {path}; run `inspector export --product {bundle.name}` first")
    try:
        data = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as e:
        raise CheckpointError(f"cannot read {path}: {e}; run `inspector export --product {bundle.name}` again") from e
    validate(data, str(path))
    return data


def validate(data: Any, source: str) -> None:
    """Refuse a manifest of another schema or without the keys every backend needs."""
    if not isinstance(data, dict):
        raise CheckpointError(f"{source}: a manifest must be a JSON object")
    if data.get("schema") != SCHEMA:
        raise CheckpointError(f"{source}: manifest schema {data.get('schema')!r}, expected {SCHEMA}; "
                              "run `inspector export` again")
    missing = [k for k in _REQUIRED if k not in data]
    if missing:
        raise CheckpointError(f"{source}: manifest lacks {missing}; run `inspector export` again")
    if "fp32" not in data["onnx"]:
        raise CheckpointError(f"{source}: manifest has no fp32 ONNX entry; run `inspector export` again")


def save_manifest(bundle: Path, data: dict[str, Any]) -> None:
    """Write ``<bundle>/manifest.json`` atomically (a crash never leaves a half-written manifest)."""
    validate(data, "manifest to save")
    path = manifest_path(bundle)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(data, indent=2, sort_keys=False) + "\n")
    os.replace(tmp, path)


def model_sha(manifest: dict[str, Any]) -> str:
    """sha256 of the checkpoint the manifest was exported from: the model hash calibration binds to."""
    return manifest["checkpoint"]["sha256"]


def frame_shape(manifest: dict[str, Any]) -> tuple[int, int]:
    """(H, W) of the frames the exported graph accepts."""
    return int(manifest["frame"]["height"]), int(manifest["frame"]["width"])


def mask_shape(manifest: dict[str, Any]) -> tuple[int, int]:
    """(h, w) of the anomaly map the graph returns."""
    h, w = manifest["mask_size"]
    return int(h), int(w)


def spec_from_manifest(manifest: dict[str, Any]) -> GraphSpec:
    """The GraphSpec recorded by ``inspector export``."""
    roi = manifest.get("roi")
    return GraphSpec(frame=frame_shape(manifest), roi=tuple(int(v) for v in roi) if roi else None,
                     mask_size=mask_shape(manifest))


def verified_file(bundle: Path, entry: dict[str, Any], what: str, redo: str) -> Path:
    """The file of a manifest ``entry`` ({"path", "sha256"}), after checking it exists with that hash.

    ``redo`` is the command that remakes it, named in the error.
    """
    path = Path(bundle) / entry["path"]
    if not path.is_file():
        raise CheckpointError(f"{what} {path} named in the manifest is missing; run `{redo}` again")
    actual = sha256_file(path)
    if actual != entry["sha256"]:
        raise CheckpointError(
            f"{what} {path} has sha256 {actual[:12]}..., the manifest records {entry['sha256'][:12]}...: "
            f"the file changed after it was made; run `{redo}` again"
        )
    return path


def onnx_file(bundle: Path, manifest: dict[str, Any], precision: str) -> Path:
    """Path of the verified ONNX file of ``precision``: 'fp32', 'fp16', 'fp32-ort' or 'int8' (``ONNX_KEYS``)."""
    product = manifest["product"]
    if precision not in ONNX_KEYS:
        raise CheckpointError(f"unknown ONNX precision {precision!r}; allowed: {', '.join(ONNX_KEYS)}")
    entry = manifest["onnx"].get(precision)
    flag = {"fp16": " --fp16", "int8": " --int8"}.get(precision, "")
    if entry is None:
        raise CheckpointError(f"no {precision} ONNX was exported for {product}; "
                              f"run `inspector export --product {product}{flag}`")
    return verified_file(bundle, entry, f"{precision} ONNX", f"inspector export --product {product}{flag}")


def check_checkpoint(bundle: Path, manifest: dict[str, Any]) -> Path:
    """The bundle's model.pt, refused when it is not the checkpoint the manifest was exported from."""
    product = manifest["product"]
    return verified_file(bundle, manifest["checkpoint"], "checkpoint", f"inspector export --product {product}")


def engine_key(entry: dict[str, Any]) -> tuple[str, str, str]:
    """What makes a TensorRT plan unique: (GPU name, compute capability, TensorRT version)."""
    return entry["gpu"], entry["compute_capability"], entry["tensorrt"]


def add_engine(manifest: dict[str, Any], entry: dict[str, Any]) -> dict[str, Any]:
    """A copy of ``manifest`` with ``entry`` added, replacing any plan for the same GPU and TensorRT."""
    engines = [e for e in manifest.get("engines", []) if engine_key(e) != engine_key(entry)]
    return {**manifest, "engines": [*engines, entry]}


def find_engine(manifest: dict[str, Any], gpu: str, compute_capability: str, tensorrt: str) -> dict[str, Any] | None:
    """The plan entry built for exactly this GPU, compute capability and TensorRT version, if any."""
    for e in manifest.get("engines", []):
        if engine_key(e) == (gpu, compute_capability, tensorrt):
            return e
    return None

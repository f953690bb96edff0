"""A product's export manifest, ``<home>/engines/<product>/manifest.json``: what was exported and from what.

Written by ``inspector export`` and extended by ``inspector build``. Every backend reads it to learn the
frame size, the ROI, the mask size and the batch range, and to check that the files it is about to run are
the ones that were exported (sha256 of the checkpoint, of each ONNX file and of each TensorRT plan).

In memory it is the frozen :class:`Manifest`; this module alone turns it into JSON and back. Loading is
strict: a missing or unknown key, or a value of the wrong type, is a CheckpointError naming the file and
the key. This module imports no torch, so the CLI and the daemon's config can take its choice lists cheaply.

Schema 1 (JSON)::

    {"schema": 1, "product": str, "created": iso str,
     "checkpoint": {"path": "model.pt", "sha256": str},
     "onnx": {"fp32": {"path": "model.onnx", "sha256": str},
              "fp16": {"path": "model.fp16.onnx", "sha256": str},           # optional
              "fp32-ort": {"path": "model.ort.onnx", "sha256": str,         # optional, onnxruntime only
                           "consumers": ["onnxruntime"]},
              "int8": {"path": "model.int8.onnx", "sha256": str,            # optional, onnxruntime CPU only
                       "consumers": ["onnxruntime"], "from": "model.ort.onnx", "quantization": str}},
     "input": {"name": "frames", "dtype": "uint8", "shape": ["batch", H, W, 3], "layout": "NHWC", "color": "BGR"},
     "outputs": {"score": {"dtype": "float32", "shape": ["batch"]},
                 "anomaly_map": {"dtype": "float32", "shape": ["batch", h, w]}},
     "frame": {"height": H, "width": W}, "roi": [x, y, w, h] | null, "model_size": S, "mask_size": [h, w],
     "normalization": {"mean": [...], "std": [...]}, "max_batch": int, "opset": int,
     "exporter": str, "versions": {name: version},
     "verification": {"<onnx key>": {"max_map_diff_rel", "max_score_diff_rel", "frames", "onnxruntime"}, ...,
                      "frames_source": str} | null,
     "engines": [{TensorRT plan entry, see EngineEntry}], "fp16_decisions": {see Fp16Decisions} | null,
     "ort_graph": {"written": bool, "reason" | "fused_attention", "operator"}}   # absent in early schema-1 files
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from inspector.config import load_dataclass
from inspector.errors import CheckpointError, ConfigError
from inspector.files import sha256_file, write_text_atomic

if TYPE_CHECKING:  # model.graph imports torch; this module must stay cheap to import
    from inspector.model.graph import GraphSpec

SCHEMA = 1
MANIFEST = "manifest.json"
# The plain graphs (what TensorRT parses) and so the precisions a TensorRT engine can be built in.
PRECISIONS = ("fp32", "fp16")
# onnxruntime-only graphs: fused attention (float32), and int8 MatMul weights (CPU).
FUSED, INT8 = "fp32-ort", "int8"
ONNX_KEYS = (*PRECISIONS, FUSED, INT8)
MAX_BATCH = 1024  # the largest batch an export may declare (and so any consumer ask for)
# Fields whose None is left out of the JSON instead of written as null (as the writers always did).
_OMIT_NONE = {"omit_none": True}


@dataclass(frozen=True)
class FileRef:
    """A file of the bundle, relative to it, and its sha256 when it was made."""

    path: str
    sha256: str


@dataclass(frozen=True)
class OnnxEntry:
    """One exported ONNX file."""

    path: str
    sha256: str
    consumers: tuple[str, ...] | None = field(default=None, metadata=_OMIT_NONE)  # None: any ONNX consumer
    source: str | None = field(default=None, metadata=_OMIT_NONE)  # JSON "from": the graph it was quantised from
    quantization: str | None = field(default=None, metadata=_OMIT_NONE)


@dataclass(frozen=True)
class TensorSpec:
    """dtype and shape of a graph input or output; ``"batch"`` marks the dynamic axis."""

    dtype: str
    shape: tuple[int | str, ...]


@dataclass(frozen=True)
class InputSpec:
    """The graph's one input: ``frames``, uint8 (batch, H, W, 3), NHWC, BGR as OpenCV delivers it."""

    name: str
    dtype: str
    shape: tuple[int | str, ...]
    layout: str
    color: str


@dataclass(frozen=True)
class Outputs:
    score: TensorSpec
    anomaly_map: TensorSpec


@dataclass(frozen=True)
class FrameSize:
    """Frame size in pixels."""

    height: int = field(metadata={"min": 1})
    width: int = field(metadata={"min": 1})


@dataclass(frozen=True)
class Normalization:
    """The model input's normalisation: per-channel mean and std in [0, 1] RGB units."""

    mean: tuple[float, ...]
    std: tuple[float, ...]


@dataclass(frozen=True)
class OnnxCheck:
    """ONNX Runtime vs torch on sample frames: worst differences relative to the map's range."""

    max_map_diff_rel: float
    max_score_diff_rel: float
    frames: int
    onnxruntime: str


@dataclass(frozen=True)
class Verification:
    """The export's checks, per ONNX key; in JSON the checks sit beside ``frames_source``."""

    frames_source: str
    checks: dict[str, OnnxCheck]


@dataclass(frozen=True)
class Fp16Decisions:
    """Which parts of the fp16 graph stay float32 and why; LayerNorm measured unless forced."""

    preprocess: str
    scorer: str
    backbone: str
    transformer: str
    layernorm: str = field(metadata={"choices": PRECISIONS})
    layernorm_reason: str
    layernorm_max_sum_sq: float
    layernorm_max_abs: float
    outputs: str


@dataclass(frozen=True)
class OrtGraph:
    """Whether ``model.ort.onnx`` (fused attention) was written, and why not or what it fused."""

    written: bool
    reason: str | None = field(default=None, metadata=_OMIT_NONE)
    fused_attention: int | None = field(default=None, metadata=_OMIT_NONE)
    operator: str | None = field(default=None, metadata=_OMIT_NONE)


@dataclass(frozen=True)
class Profile:
    """The optimisation profile's (min, opt, max) shapes of the ``frames`` input."""

    min: tuple[int, ...]
    opt: tuple[int, ...]
    max: tuple[int, ...]


@dataclass(frozen=True)
class EngineEntry:
    """A TensorRT plan ``inspector build`` made: for which GPU and TensorRT, from which ONNX, how."""

    plan: str
    sha256: str
    gpu: str
    compute_capability: str  # 'M.m'
    tensorrt: str
    onnx: str
    onnx_sha256: str
    onnx_precision: str = field(metadata={"choices": PRECISIONS})  # which exported ONNX was parsed
    precision: str = field(metadata={"choices": PRECISIONS})  # what the engine computes in
    strongly_typed: bool
    fp16_flag: bool
    pin_layernorm_fp32: bool
    layernorms_pinned: int
    profile: Profile
    max_batch: int = field(metadata={"min": 1})
    workspace_mib: int
    timing_cache: str  # relative to the bundle
    built: str  # ISO 8601, UTC
    build_seconds: float

    @property
    def key(self) -> tuple[str, str, str]:
        """What makes a plan unique: (GPU name, compute capability, TensorRT version)."""
        return self.gpu, self.compute_capability, self.tensorrt


@dataclass(frozen=True)
class Manifest:
    """What ``inspector export`` wrote and ``inspector build`` added (schema above)."""

    schema: int
    product: str
    created: str  # ISO 8601, UTC
    checkpoint: FileRef
    onnx: dict[str, OnnxEntry]  # keys: ONNX_KEYS; fp32 always
    input: InputSpec
    outputs: Outputs
    frame: FrameSize
    roi: tuple[int, ...] | None  # (x, y, w, h) in frame pixels; None: the whole frame
    model_size: int  # ModelConfig.input_size: the side (px) the graph resizes the ROI to
    mask_size: tuple[int, ...]  # (h, w) of the anomaly map
    normalization: Normalization
    max_batch: int = field(metadata={"min": 1, "max": MAX_BATCH})
    opset: int
    exporter: str
    versions: dict[str, str]
    verification: Verification | None
    engines: tuple[EngineEntry, ...]
    fp16_decisions: Fp16Decisions | None
    ort_graph: OrtGraph | None = None  # None: an early schema-1 export that did not record it

    def validate(self, source: str) -> None:
        redo = f"run `inspector export --product {self.product}` again"
        if "fp32" not in self.onnx:
            raise CheckpointError(f"{source}: manifest has no fp32 ONNX entry; {redo}")
        unknown = sorted(set(self.onnx) - set(ONNX_KEYS))
        if unknown:
            raise CheckpointError(f"{source}: unknown ONNX key(s) {unknown} in the manifest; allowed: "
                                  f"{', '.join(ONNX_KEYS)}; {redo}")
        if len(self.mask_size) != 2 or (self.roi is not None and len(self.roi) != 4):
            raise CheckpointError(f"{source}: manifest mask_size must be [h, w] and roi [x, y, w, h] or null; "
                                  f"got {list(self.mask_size)}, {self.roi}; {redo}")

    @property
    def model_sha(self) -> str:
        """sha256 of the checkpoint the manifest was exported from: the model hash calibration binds to."""
        return self.checkpoint.sha256

    @property
    def frame_shape(self) -> tuple[int, int]:
        """(H, W) of the frames the exported graph accepts."""
        return self.frame.height, self.frame.width

    @property
    def mask_shape(self) -> tuple[int, int]:
        """(h, w) of the anomaly map the graph returns."""
        h, w = self.mask_size
        return h, w

    @property
    def roi_box(self) -> tuple[int, int, int, int] | None:
        """(x, y, w, h) of the inspected region in frame pixels, or None for the whole frame."""
        if self.roi is None:
            return None
        x, y, w, h = self.roi
        return x, y, w, h

    @property
    def layernorm_fp32(self) -> bool:
        """The export's LayerNorm decision for fp16; float32 when the export made none (the safe side)."""
        return self.fp16_decisions is None or self.fp16_decisions.layernorm == "fp32"

    def graph_spec(self) -> GraphSpec:
        """The GraphSpec recorded by ``inspector export``."""
        from inspector.model.graph import GraphSpec

        return GraphSpec(frame=self.frame_shape, roi=self.roi_box, mask_size=self.mask_shape)

    def find_engine(self, gpu: str, compute_capability: str, tensorrt: str) -> EngineEntry | None:
        """The plan entry built for exactly this GPU, compute capability and TensorRT version, if any."""
        return next((e for e in self.engines if e.key == (gpu, compute_capability, tensorrt)), None)

    def with_engine(self, entry: EngineEntry) -> Manifest:
        """A copy with ``entry`` added, replacing any plan for the same GPU and TensorRT."""
        return dataclasses.replace(self, engines=(*(e for e in self.engines if e.key != entry.key), entry))


# --- JSON -----------------------------------------------------------------------------------------


def manifest_path(bundle: Path) -> Path:
    """``<bundle>/manifest.json``."""
    return Path(bundle) / MANIFEST


def load_manifest(bundle: Path) -> Manifest:
    """Read and validate ``<bundle>/manifest.json``; CheckpointError when missing or malformed."""
    bundle = Path(bundle)
    path = manifest_path(bundle)
    if not path.is_file():
        raise CheckpointError(f"no export manifest at {path}; run `inspector export --product {bundle.name}` first")
    try:
        data = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as e:
        raise CheckpointError(f"cannot read {path}: {e}; run `inspector export --product {bundle.name}` again") from e
    return manifest_from_json(data, str(path))


def manifest_from_json(data: Any, source: str) -> Manifest:
    """The Manifest of parsed JSON ``data``; CheckpointError naming ``source`` and the key when malformed."""
    if not isinstance(data, dict):
        raise CheckpointError(f"{source}: a manifest must be a JSON object")
    if data.get("schema") != SCHEMA:
        raise CheckpointError(f"{source}: manifest schema {data.get('schema')!r}, expected {SCHEMA}; "
                              "run `inspector export` again")
    data = dict(data)
    if isinstance(data.get("onnx"), dict):
        data["onnx"] = {k: _renamed(v, {"from": "source"}) for k, v in data["onnx"].items()}
    if isinstance(data.get("verification"), dict):
        checks = dict(data["verification"])
        data["verification"] = {"frames_source": checks.pop("frames_source", None), "checks": checks}
    try:
        return load_dataclass(Manifest, data, source)
    except ConfigError as e:
        raise CheckpointError(f"{e}; run `inspector export` again") from e


def manifest_to_json(manifest: Manifest) -> dict[str, Any]:
    """The JSON object of ``manifest`` (the schema above)."""
    data = _plain(manifest)
    data["onnx"] = {k: _renamed(v, {"source": "from"}) for k, v in data["onnx"].items()}
    if data["verification"] is not None:
        v = data["verification"]
        data["verification"] = {**v["checks"], "frames_source": v["frames_source"]}
    return data


def save_manifest(bundle: Path, manifest: Manifest) -> None:
    """Write ``<bundle>/manifest.json`` atomically (a crash never leaves a half-written manifest)."""
    manifest.validate("manifest to save")
    write_text_atomic(manifest_path(bundle), json.dumps(manifest_to_json(manifest), indent=2) + "\n")


def _renamed(entry: Any, names: dict[str, str]) -> Any:
    if not isinstance(entry, dict):
        return entry
    return {names.get(k, k): v for k, v in entry.items()}


def _plain(obj: Any) -> Any:
    """Dataclasses -> dicts (fields in order, ``_OMIT_NONE`` fields left out when None), tuples -> lists."""
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return {f.name: _plain(getattr(obj, f.name)) for f in dataclasses.fields(obj)
                if not (f.metadata.get("omit_none") and getattr(obj, f.name) is None)}
    if isinstance(obj, tuple | list):
        return [_plain(v) for v in obj]
    if isinstance(obj, dict):
        return {k: _plain(v) for k, v in obj.items()}
    return obj


# --- files named by the manifest ------------------------------------------------------------------


def verified_file(bundle: Path, ref: FileRef | OnnxEntry, what: str, redo: str) -> Path:
    """The file of a manifest entry, after checking it exists with the recorded sha256.

    ``redo`` is the command that remakes it, named in the error.
    """
    path = Path(bundle) / ref.path
    if not path.is_file():
        raise CheckpointError(f"{what} {path} named in the manifest is missing; run `{redo}` again")
    actual = sha256_file(path)
    if actual != ref.sha256:
        raise CheckpointError(
            f"{what} {path} has sha256 {actual[:12]}..., the manifest records {ref.sha256[:12]}...: "
            f"the file changed after it was made; run `{redo}` again"
        )
    return path


def onnx_file(bundle: Path, manifest: Manifest, precision: str) -> Path:
    """Path of the verified ONNX file of ``precision``: 'fp32', 'fp16', 'fp32-ort' or 'int8' (``ONNX_KEYS``)."""
    product = manifest.product
    if precision not in ONNX_KEYS:
        raise CheckpointError(f"unknown ONNX precision {precision!r}; allowed: {', '.join(ONNX_KEYS)}")
    entry = manifest.onnx.get(precision)
    flag = {"fp16": " --fp16", INT8: " --int8"}.get(precision, "")
    if entry is None:
        raise CheckpointError(f"no {precision} ONNX was exported for {product}; "
                              f"run `inspector export --product {product}{flag}`")
    return verified_file(bundle, entry, f"{precision} ONNX", f"inspector export --product {product}{flag}")


def check_checkpoint(bundle: Path, manifest: Manifest) -> Path:
    """The bundle's model.pt, refused when it is not the checkpoint the manifest was exported from."""
    return verified_file(bundle, manifest.checkpoint, "checkpoint", f"inspector export --product {manifest.product}")

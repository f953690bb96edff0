"""A product's bundle on disk and the self-describing checkpoint inside it.

Layout under the home directory (``--home``, ``INSPECTOR_HOME``, default the current directory)::

    <home>/engines/<product>/model.pt              the trained model (latest checkpoint)
    <home>/engines/<product>/checkpoints/*.pt      periodic checkpoints (resume)
    <home>/engines/<product>/manifest.json         export manifest (inspector export)
    <home>/calibration/<product>.yaml              calibration record (inspector calibrate)

A checkpoint holds: format, product, the preset (model + train config), backbone id and weights hash,
the whole model's state dict (backbone included, so a serving machine needs no weights package), the
optimizer state, the epoch, the loss history, and what data it saw (file fingerprints of the training and
held-out images). It is loaded with ``torch.load(..., weights_only=True)``.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from inspector.config import NAME_RE, NAME_RULE, load_dataclass
from inspector.errors import CheckpointError
from inspector.model.adtr import ADTR, PixelPatches
from inspector.model.backbone import build_backbone_skeleton
from inspector.model.graph import GraphSpec, InspectionModel, inspection_model
from inspector.model.weights import sha256_file
from inspector.preset import Preset

FORMAT = "inspector-adtr/1"
PRODUCT_RE = NAME_RE  # used with fullmatch: a trailing newline is not a name


def home_dir(home: str | Path | None) -> Path:
    """The root holding ``engines/`` and ``calibration/``: ``home``, else $INSPECTOR_HOME, else the cwd."""
    return Path(home or os.environ.get("INSPECTOR_HOME") or ".").resolve()


def check_product(name: str) -> str:
    """A product name is a file-name-safe identifier."""
    if not PRODUCT_RE.fullmatch(name or ""):
        raise CheckpointError(f"invalid product name {name!r}: use {NAME_RULE}")
    return name


def bundle_dir(home: str | Path | None, product: str) -> Path:
    """``<home>/engines/<product>``."""
    return home_dir(home) / "engines" / check_product(product)


def model_path(home: str | Path | None, product: str) -> Path:
    """``<home>/engines/<product>/model.pt``."""
    return bundle_dir(home, product) / "model.pt"


@dataclass(frozen=True)
class Checkpoint:
    """A loaded checkpoint: the raw payload plus the parsed preset."""

    path: Path
    payload: dict[str, Any]
    preset: Preset

    @property
    def product(self) -> str:
        return self.payload["product"]

    @property
    def epoch(self) -> int:
        return int(self.payload["epoch"])

    @property
    def sha256(self) -> str:
        return sha256_file(self.path)

    @property
    def mean_std(self) -> tuple[tuple[float, ...], tuple[float, ...]]:
        n = self.payload["normalization"]
        return tuple(n["mean"]), tuple(n["std"])

    def fingerprints(self, split: str) -> dict[str, str]:
        """``{sha256: file name}`` of the images of ``split`` ('train' or 'holdout')."""
        return {f["sha256"]: f["name"] for f in self.payload["data"][split]}


def save_checkpoint(path: Path, payload: dict[str, Any]) -> None:
    """Write atomically: a crash mid-write never leaves a truncated checkpoint behind."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    torch.save({"format": FORMAT, **payload}, tmp)
    os.replace(tmp, path)


def load_checkpoint(path: str | Path) -> Checkpoint:
    """Load and validate a checkpoint (``weights_only=True``); CheckpointError when absent or corrupt."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"no trained model at {path}; run `inspector train` for this product first")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001 - any unpickling problem is a corrupt checkpoint
        raise CheckpointError(f"cannot load checkpoint {path}: {e}") from e
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise CheckpointError(f"{path} is not an inspector checkpoint (expected format {FORMAT})")
    preset = load_dataclass(Preset, payload["preset"], f"{path}:preset")
    return Checkpoint(path, payload, preset)


def build_model(ckpt: Checkpoint) -> ADTR:
    """The ADTR of a checkpoint with all its weights restored, in eval mode, on the CPU."""
    cfg = ckpt.preset.model
    extractor = PixelPatches() if cfg.target == "pixels" else build_backbone_skeleton(cfg.backbone, cfg.used_strides)
    model = ADTR(cfg, extractor)
    try:
        model.load_state_dict(ckpt.payload["state_dict"], strict=True)
    except RuntimeError as e:
        raise CheckpointError(f"{ckpt.path}: weights do not match the architecture in its config: {e}") from e
    return model.eval()


def build_inspection_model(ckpt: Checkpoint, spec: GraphSpec) -> InspectionModel:
    """The float32 serving graph of ``ckpt`` with the serving settings ``spec``, on the CPU, in eval mode."""
    return inspection_model(build_model(ckpt), *ckpt.mean_std, spec)

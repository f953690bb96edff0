"""A product's bundle on disk and the self-describing checkpoint inside it.

Layout under the home directory (``--home``, ``INSPECTOR_HOME``, default the current directory)::

    <home>/engines/<product>/model.pt              the trained model (latest checkpoint)
    <home>/engines/<product>/checkpoints/*.pt      periodic checkpoints (resume)
    <home>/engines/<product>/manifest.json         export manifest (inspector export)
    <home>/calibration/<product>.yaml              calibration record (inspector calibrate)

A checkpoint (:class:`Checkpoint`, format ``inspector-adtr/1``) holds: format, product, the preset (model +
train config), backbone id and weights hash, the input normalisation, what data it saw (file fingerprints
of the training and held-out images), the versions that made it, the whole model's state dict (backbone
included, so a serving machine needs no weights package), the optimizer state, the epoch and the loss
history. On disk it is a dict of those keys written by ``torch.save``; this module alone writes and reads
it, loading with ``torch.load(..., weights_only=True)`` and refusing a missing or unknown key by name.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field, fields, is_dataclass, replace
from pathlib import Path
from typing import Any, Literal

import torch

from inspector.config import NAME_RE, NAME_RULE, load_dataclass, to_dict
from inspector.errors import CheckpointError, ConfigError
from inspector.files import sha256_file, staged_file
from inspector.manifest import Normalization  # the same record in the checkpoint and in the manifest
from inspector.model.adtr import ADTR, ModelConfig, PixelPatches
from inspector.model.backbone import build_backbone_skeleton
from inspector.model.graph import GraphSpec, InspectionModel, inspection_model
from inspector.model.weights import WeightsSource
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
class BackboneInfo:
    """The frozen backbone a checkpoint was trained with; all None for the pixel target (no backbone)."""

    name: str | None
    weights_kind: str | None  # WeightsSource.kind: lite-package | local-file | timm-download
    weights_sha256: str | None  # of the weights file; None for timm's own download

    @staticmethod
    def of(cfg: ModelConfig, source: WeightsSource | None) -> BackboneInfo:
        if cfg.target != "features" or source is None:
            return BackboneInfo(None, None, None)
        return BackboneInfo(cfg.backbone, source.kind, sha256_file(source.path) if source.path else None)


@dataclass(frozen=True)
class ImageFile:
    """One image a model saw: its file name and the sha256 of its bytes (``data.dataset.fingerprint``)."""

    name: str
    sha256: str


@dataclass(frozen=True)
class DataInfo:
    """What data a checkpoint saw: the dataset, its training images and the held-out good images."""

    root: str  # absolute path of the dataset at training time
    layout: str  # 'mvtec' or 'folder'
    train: tuple[ImageFile, ...]
    holdout: tuple[ImageFile, ...]  # good images kept for calibration
    val_fraction: float


@dataclass(frozen=True, kw_only=True)
class Checkpoint:
    """A trained model that describes itself (the payload of ``model.pt``, format ``FORMAT``).

    ``state_dict`` is the whole ADTR's (backbone included); ``optimizer`` the AdamW state to resume from;
    ``epoch`` the epochs done and ``loss_history`` the mean loss of each. ``path`` is where it was read
    from (None before it is saved); it is not stored.
    """

    format: str = FORMAT
    product: str
    preset: Preset
    backbone: BackboneInfo
    normalization: Normalization
    data: DataInfo
    versions: dict[str, str]
    state_dict: dict[str, Any]  # name -> tensor
    optimizer: dict[str, Any]
    epoch: int = field(metadata={"min": 0})
    loss_history: tuple[float, ...]
    path: Path | None = field(default=None, compare=False, metadata={"stored": False})

    @property
    def sha256(self) -> str:
        """sha256 of the checkpoint file: the model hash manifests and calibrations bind to."""
        if self.path is None:
            raise CheckpointError(f"the checkpoint of {self.product} has not been saved; it has no file to hash")
        return sha256_file(self.path)

    @property
    def mean_std(self) -> tuple[tuple[float, ...], tuple[float, ...]]:
        return self.normalization.mean, self.normalization.std

    def fingerprints(self, split: Literal["train", "holdout"]) -> dict[str, str]:
        """``{sha256: file name}`` of the images of ``split``."""
        files = self.data.train if split == "train" else self.data.holdout
        return {f.sha256: f.name for f in files}


STORED = tuple(f.name for f in fields(Checkpoint) if f.metadata.get("stored", True))


def save_checkpoint(path: Path, ckpt: Checkpoint) -> None:
    """Write atomically: a crash mid-write never leaves a truncated checkpoint behind."""
    payload = {name: _stored(getattr(ckpt, name)) for name in STORED}
    with staged_file(path) as tmp:
        torch.save(payload, tmp)


def load_checkpoint(path: str | Path) -> Checkpoint:
    """Load and validate a checkpoint (``weights_only=True``); CheckpointError when absent, corrupt, or when a
    key is missing or unknown (naming the file and the key)."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"no trained model at {path}; run `inspector train` for this product first")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001 - any unpickling problem is a corrupt checkpoint
        raise CheckpointError(f"cannot load checkpoint {path}: {e}") from e
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise CheckpointError(f"{path} is not an inspector checkpoint (expected format {FORMAT})")
    unknown = sorted(set(payload) - set(STORED))
    if unknown:
        raise CheckpointError(f"{path}: unknown key(s) {unknown} in the checkpoint; allowed keys: {list(STORED)}")
    try:
        ckpt = load_dataclass(Checkpoint, payload, str(path))
    except ConfigError as e:
        raise CheckpointError(f"invalid checkpoint: {e}") from e
    return replace(ckpt, path=path)


def _stored(value: Any) -> Any:
    """A field as stored: config dataclasses as plain dicts, tuples as lists (as the format always had them)."""
    if is_dataclass(value):
        return to_dict(value)
    return list(value) if isinstance(value, tuple) else value


def build_model(ckpt: Checkpoint) -> ADTR:
    """The ADTR of a checkpoint with all its weights restored, in eval mode, on the CPU."""
    cfg = ckpt.preset.model
    extractor = PixelPatches() if cfg.target == "pixels" else build_backbone_skeleton(cfg.backbone, cfg.used_strides)
    model = ADTR(cfg, extractor)
    try:
        model.load_state_dict(ckpt.state_dict, strict=True)
    except RuntimeError as e:
        raise CheckpointError(f"{ckpt.path}: weights do not match the architecture in its config: {e}") from e
    return model.eval()


def build_inspection_model(ckpt: Checkpoint, spec: GraphSpec) -> InspectionModel:
    """The float32 serving graph of ``ckpt`` with the serving settings ``spec``, on the CPU, in eval mode."""
    return inspection_model(build_model(ckpt), *ckpt.mean_std, spec)

"""A product's training recipe: model architecture (``ModelConfig``) plus optimisation (``TrainConfig``).

Presets ship inside the package (``inspector/presets/*.yaml``); a user's YAML file is loaded the same way,
strictly (:mod:`inspector.config`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path

import yaml

from inspector.config import load_dataclass, read_yaml
from inspector.errors import ConfigError
from inspector.model.adtr import ModelConfig


@dataclass(frozen=True)
class TrainConfig:
    """Optimisation settings of `inspector train`."""

    epochs: int = field(default=300, metadata={"min": 1, "max": 100000})
    batch_size: int = field(default=16, metadata={"min": 1, "max": 4096})
    lr: float = field(default=1e-4, metadata={"min": 0.0, "max": 1.0})
    weight_decay: float = field(default=1e-4, metadata={"min": 0.0, "max": 1.0})
    # lr is multiplied by lr_drop_factor once lr_drop_at (a fraction of the epochs) is reached.
    lr_drop_at: float = field(default=0.8, metadata={"min": 0.0, "max": 1.0})
    lr_drop_factor: float = field(default=0.1, metadata={"min": 0.0, "max": 1.0})
    warmup_epochs: int = field(default=0, metadata={"min": 0, "max": 100000})
    grad_clip: float = field(default=0.1, metadata={"min": 0.0, "max": 1e6})
    val_fraction: float = field(default=0.1, metadata={"min": 0.0, "max": 0.9})
    seed: int = field(default=0, metadata={"min": 0})
    checkpoint_every: int = field(default=50, metadata={"min": 1})
    # Speed knobs for CUDA (ignored on the CPU): whole-step CUDA-graph replay with fused AdamW, and
    # torch.compile of the reconstructor.
    cuda_graphs: bool = True
    compile: bool = False
    threads: int = field(default=0, metadata={"min": 0, "max": 256, "doc": "CPU threads; 0 = torch default"})


@dataclass(frozen=True)
class Preset:
    """A product's training recipe: model architecture plus optimisation."""

    model: ModelConfig = field(default_factory=ModelConfig)
    train: TrainConfig = field(default_factory=TrainConfig)


PRESETS = ("default", "cpu-quick")


def preset_names() -> list[str]:
    """Names of the presets shipped inside the package."""
    return sorted(p.name[:-5] for p in resources.files("inspector.presets").iterdir() if p.name.endswith(".yaml"))


def load_preset(name_or_path: str | Path) -> Preset:
    """Load a shipped preset by name (``default``, ``cpu-quick``) or a YAML file by path."""
    path = Path(name_or_path)
    if path.suffix in (".yaml", ".yml") or path.exists():
        if not path.is_file():
            raise ConfigError(f"config file {path} does not exist; shipped presets: {preset_names()}")
        return load_dataclass(Preset, read_yaml(path), str(path))
    names = preset_names()
    if str(name_or_path) not in names:
        raise ConfigError(f"unknown preset '{name_or_path}'; shipped presets: {names}, or give a YAML file path")
    res = resources.files("inspector.presets") / f"{name_or_path}.yaml"
    return load_dataclass(Preset, yaml.safe_load(res.read_text()) or {}, f"preset:{name_or_path}")

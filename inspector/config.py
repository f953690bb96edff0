"""YAML configuration loaded into frozen dataclasses, strictly.

Every dataclass field may carry ``metadata`` with ``choices`` (allowed values), ``min`` / ``max``
(inclusive bounds) and ``doc``. ``load_dataclass`` refuses unknown keys, wrong types and values out of
range with a :class:`ConfigError` naming the key, the file and what is allowed.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any, Literal, TypeVar

import yaml

from inspector.errors import ConfigError
from inspector.model.adtr import ModelConfig

T = TypeVar("T")


def _type_name(tp: Any) -> str:
    origin = typing.get_origin(tp)
    if origin is Literal:
        return " | ".join(repr(a) for a in typing.get_args(tp))
    if origin in (typing.Union, types.UnionType):
        return " | ".join(_type_name(a) for a in typing.get_args(tp))
    if origin is tuple:
        args = typing.get_args(tp)
        return f"list of {_type_name(args[0])}" if args else "list"
    return getattr(tp, "__name__", str(tp))


def _convert(value: Any, tp: Any, key: str, source: str) -> Any:
    """Convert a YAML value to the annotated type ``tp`` or raise a ConfigError naming ``key``."""
    origin = typing.get_origin(tp)
    bad = ConfigError(f"{source}: key '{key}' must be {_type_name(tp)}, got {value!r} ({type(value).__name__})")
    if tp is Any:
        return value
    if origin is Literal:
        if value not in typing.get_args(tp):
            raise bad
        return value
    if origin in (typing.Union, types.UnionType):
        args = typing.get_args(tp)
        if value is None and type(None) in args:
            return None
        for arg in args:
            if arg is type(None):
                continue
            try:
                return _convert(value, arg, key, source)
            except ConfigError:
                continue
        raise bad
    if origin is tuple:
        if not isinstance(value, list | tuple):
            raise bad
        args = typing.get_args(tp)
        item_tp = args[0] if args else Any
        return tuple(_convert(v, item_tp, f"{key}[{i}]", source) for i, v in enumerate(value))
    if dataclasses.is_dataclass(tp):
        if not isinstance(value, dict):
            raise bad
        return load_dataclass(tp, value, source, prefix=f"{key}.")
    if tp is bool:
        if not isinstance(value, bool):
            raise bad
        return value
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise bad
        return value
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise bad
        return float(value)
    if tp is str:
        if not isinstance(value, str):
            raise bad
        return value
    raise ConfigError(f"{source}: key '{key}' has unsupported type {tp!r}")


def check_field(f: dataclasses.Field, value: Any, key: str, source: str) -> None:
    """Check ``choices`` and ``min``/``max`` metadata of a field."""
    meta = f.metadata
    if value is None:
        return
    if "choices" in meta and value not in meta["choices"]:
        raise ConfigError(f"{source}: key '{key}' = {value!r} is not allowed; allowed: {list(meta['choices'])}")
    lo, hi = meta.get("min"), meta.get("max")
    values = value if isinstance(value, tuple) else (value,)
    for v in values:
        if isinstance(v, int | float) and not isinstance(v, bool):
            if lo is not None and v < lo:
                raise ConfigError(f"{source}: key '{key}' = {v!r} is below the minimum {lo}")
            if hi is not None and v > hi:
                raise ConfigError(f"{source}: key '{key}' = {v!r} is above the maximum {hi}")


def load_dataclass(cls: type[T], data: dict[str, Any], source: str = "<config>", prefix: str = "") -> T:
    """Build the frozen dataclass ``cls`` from a mapping, refusing unknown keys and bad values."""
    if not isinstance(data, dict):
        raise ConfigError(f"{source}: '{prefix or 'top level'}' must be a mapping, got {type(data).__name__}")
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    unknown = sorted(set(data) - set(fields))
    if unknown:
        raise ConfigError(
            f"{source}: unknown key(s) {[prefix + k for k in unknown]}; allowed keys: {sorted(prefix + k for k in fields)}"
        )
    kwargs = {}
    for name, value in data.items():
        key = prefix + name
        converted = _convert(value, hints[name], key, source)
        check_field(fields[name], converted, key, source)
        kwargs[name] = converted
    try:
        obj = cls(**kwargs)
    except TypeError as e:
        raise ConfigError(f"{source}: {e}") from e
    # Defaults are checked too, so a dataclass with a bad default cannot slip through.
    for name, f in fields.items():
        if name not in kwargs:
            check_field(f, getattr(obj, name), prefix + name, source)
    validate = getattr(obj, "validate", None)
    if callable(validate):
        validate(source)
    return obj


def to_dict(obj: Any) -> dict[str, Any]:
    """A frozen config dataclass as plain YAML/JSON-able data (tuples become lists)."""

    def plain(v: Any) -> Any:
        if isinstance(v, tuple | list):
            return [plain(x) for x in v]
        if isinstance(v, dict):
            return {k: plain(x) for k, x in v.items()}
        return v

    return plain(dataclasses.asdict(obj))


def read_yaml(path: Path) -> dict[str, Any]:
    """Read a YAML mapping; errors name the file."""
    try:
        text = Path(path).read_text()
    except OSError as e:
        raise ConfigError(f"cannot read config file {path}: {e.strerror}") from e
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as e:
        raise ConfigError(f"{path}: invalid YAML: {e}") from e
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: the top level must be a mapping, got {type(data).__name__}")
    return data


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


def override(obj: T, **changes: Any) -> T:
    """``dataclasses.replace`` that skips None values (unset CLI flags)."""
    changes = {k: v for k, v in changes.items() if v is not None}
    return dataclasses.replace(obj, **changes) if changes else obj  # type: ignore[type-var]

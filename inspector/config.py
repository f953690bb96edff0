"""YAML configuration loaded into frozen dataclasses, strictly.

Every dataclass field may carry ``metadata`` with ``choices`` (allowed values), ``min`` / ``max``
(inclusive bounds) and ``doc``. ``load_dataclass`` refuses unknown keys, missing required keys, wrong types
and values out of range with a :class:`ConfigError` naming the key, the file and what is allowed.
"""

from __future__ import annotations

import dataclasses
import math
import re
import types
import typing
from pathlib import Path
from typing import Any, Literal, TypeVar

import yaml

from inspector.errors import ConfigError

T = TypeVar("T")

# A name that becomes part of a file name or a ZeroMQ topic (line, product): letters, digits, '_', '-', '.',
# at most 64, not starting with a symbol. Use with fullmatch: '$' would accept a trailing newline.
NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")
NAME_RULE = "letters, digits, '_', '-', '.' (max 64, not starting with a symbol)"


def is_name(value: str) -> bool:
    """Is ``value`` a NAME_RE name, with nothing (not even a newline) after it?"""
    return isinstance(value, str) and NAME_RE.fullmatch(value) is not None


def _type_name(tp: Any) -> str:
    origin = typing.get_origin(tp)
    if origin is Literal:
        return " | ".join(repr(a) for a in typing.get_args(tp))
    if origin in (typing.Union, types.UnionType):
        return " | ".join(_type_name(a) for a in typing.get_args(tp))
    if origin is tuple:
        args = typing.get_args(tp)
        return f"list of {_type_name(args[0])}" if args else "list"
    if origin is dict:
        args = typing.get_args(tp)
        return f"mapping of {_type_name(args[1])}" if args else "mapping"
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
    if origin is dict:
        if not isinstance(value, dict) or not all(isinstance(k, str) for k in value):
            raise bad
        args = typing.get_args(tp)
        item_tp = args[1] if args else Any
        return {k: _convert(v, item_tp, f"{key}.{k}", source) for k, v in value.items()}
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
        if not math.isfinite(value):  # NaN passes every range check, infinity means "never"
            raise ConfigError(f"{source}: key '{key}' must be a finite number, got {value!r}")
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
    missing = [prefix + k for k, f in fields.items() if k not in data and f.default is dataclasses.MISSING
               and f.default_factory is dataclasses.MISSING]
    if missing:
        raise ConfigError(f"{source}: missing key(s) {missing}")
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
        text = Path(path).read_bytes().decode("utf-8")
    except OSError as e:
        raise ConfigError(f"cannot read config file {path}: {e.strerror}") from e
    except UnicodeDecodeError as e:
        raise ConfigError(f"{path}: not a UTF-8 text file (byte {e.start} is {e.object[e.start]:#04x}); "
                          "a config is YAML text") from e
    try:
        data = yaml.safe_load(text)
    except (yaml.YAMLError, RecursionError) as e:
        raise ConfigError(f"{path}: invalid YAML: {e}") from e
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: the top level must be a mapping, got {type(data).__name__}")
    return data


def override(obj: T, **changes: Any) -> T:
    """``dataclasses.replace`` that skips None values (unset CLI flags)."""
    changes = {k: v for k, v in changes.items() if v is not None}
    return dataclasses.replace(obj, **changes) if changes else obj  # type: ignore[type-var]

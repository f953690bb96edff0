"""What a daemon config needs from the machine, checked before anything starts (``inspector run --check`` and
the start of ``inspector run``), each failure naming the key and the config file.

The strict loader checks keys, types and ranges; this checks what only the machine can say: the video
file or image folder exists, this OpenCV can run a GStreamer pipeline, the CURVE key files are there, the
metrics port has its library. A failure is a ConfigError; nothing is opened or bound.
"""

from __future__ import annotations

from pathlib import Path

from inspector.errors import ConfigError, InspectorError
from inspector.stream.config import DaemonConfig


def _source(cfg: DaemonConfig, where: str) -> None:
    src = cfg.source
    if src.kind in ("file", "images") and not src.uri:
        raise ConfigError(f"{where}: key 'source.uri' is required for source kind '{src.kind}' (the default kind "
                          "is file: give source.kind and source.uri)")
    if src.kind == "file" and not Path(src.uri).is_file():
        raise ConfigError(f"{where}: key 'source.uri': video file {src.uri} does not exist")
    if src.kind == "images" and not Path(src.uri).is_dir():
        raise ConfigError(f"{where}: key 'source.uri': image folder {src.uri} does not exist")
    if src.kind == "memory" and src.uri and not Path(src.uri).is_dir():
        raise ConfigError(f"{where}: key 'source.uri': image folder {src.uri} for the memory source does not exist")
    if src.kind == "gstreamer":
        from inspector.stream.sources import GSTREAMER_HINT, gstreamer_available

        if not gstreamer_available():
            raise ConfigError(f"{where}: key 'source.kind' is gstreamer, but {GSTREAMER_HINT}")


def _curve(cfg: DaemonConfig, where: str) -> None:
    curve = cfg.zmq.curve
    if not curve.enabled:
        return
    from inspector.protocol.auth import load_keypair, require_curve

    try:
        require_curve()
        load_keypair(curve.server_secret_key)
    except InspectorError as e:
        raise ConfigError(f"{where}: key 'zmq.curve.server_secret_key': {e}") from e
    if not Path(curve.authorized_keys).is_dir():
        raise ConfigError(f"{where}: key 'zmq.curve.authorized_keys': {curve.authorized_keys} is not a directory "
                          "of client public keys (NAME.key files from `inspector keys`)")


def _metrics(cfg: DaemonConfig, where: str) -> None:
    if not cfg.metrics.port:
        return
    try:
        import prometheus_client  # noqa: F401
    except ImportError as e:
        raise ConfigError(f"{where}: key 'metrics.port' is {cfg.metrics.port} but prometheus_client is not "
                          "installed; `pip install inspector[metrics]` or set metrics.port: 0") from e


def preflight(cfg: DaemonConfig, where: str) -> None:
    """Raise ConfigError (naming the key and ``where``, the config file) for the first thing that cannot work."""
    _source(cfg, where)
    _curve(cfg, where)
    _metrics(cfg, where)

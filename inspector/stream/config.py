"""The line daemon's configuration: one YAML file loaded strictly into frozen dataclasses.

``deploy/inspector.example.yaml`` documents every key. An unknown key, a wrong type or a value out of range
stops the daemon at start with the key, the file and what is allowed (via :func:`inspector.config.load_dataclass`).
Relative paths (home, audit dir, key files) are resolved against the config file's directory.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from inspector.config import NAME_RULE, is_name, load_dataclass, read_yaml
from inspector.errors import ConfigError
from inspector.manifest import MAX_BATCH
from inspector.protocol.commands import MAX_REQUEST_BYTES, REPLAY_WINDOW_S
from inspector.protocol.sockets import DEFAULTS
from inspector.runtime import BACKEND_NAMES, PRECISION_CHOICES
from inspector.stream.frames import POLICIES

SOURCE_KINDS = ("device", "file", "url", "gstreamer", "images", "memory")
# Sources that run on their own clock: frames not taken in time are gone, so the newest frames win.
LIVE_KINDS = ("device", "url", "gstreamer")
DROP_POLICIES = ("auto", *POLICIES)


def drop_policy_for(policy: str, source_kind: str) -> str:
    """The queue policy in effect: ``auto`` is drop_oldest for a live source (device, url, gstreamer), where
    inspecting the latest frame matters, and block for a recording (file, images, memory), where every frame
    is wanted and reading simply waits for inspection."""
    if policy != "auto":
        return policy
    return "drop_oldest" if source_kind in LIVE_KINDS else "block"


@dataclass(frozen=True)
class SourceConfig:
    """Where frames come from. ``uri`` means: device index, file path, URL, GStreamer pipeline, image directory,
    or for ``memory`` an optional folder of images to cycle through."""

    kind: str = field(default="file", metadata={"choices": SOURCE_KINDS})
    uri: str = ""
    # device: requested capture size and rate (0 = the camera's default); fourcc e.g. "MJPG" for USB cameras.
    width: int = field(default=0, metadata={"min": 0, "max": 16384})
    height: int = field(default=0, metadata={"min": 0, "max": 16384})
    fps: float = field(default=0.0, metadata={"min": 0.0, "max": 1000.0})
    fourcc: str = ""
    # file/images: what to do at the end: stop (end of stream, the daemon exits 0) or loop.
    at_end: str = field(default="stop", metadata={"choices": ("stop", "loop")})
    # images: 'once' reads the directory in name order; 'watch' also inspects files that appear later.
    images_mode: str = field(default="once", metadata={"choices": ("once", "watch")})
    watch_poll_ms: int = field(default=200, metadata={"min": 10, "max": 60000})
    # Pace a file/images/memory source to this many frames per second (0 = as fast as inspection allows).
    rate_fps: float = field(default=0.0, metadata={"min": 0.0, "max": 1000.0})
    # memory: number of frames (0 = endless); width/height give their size; uri an optional image folder.
    frames: int = field(default=0, metadata={"min": 0})
    # A live source that yields no frame for this long is declared lost and reopened (0 = never).
    stall_timeout_s: float = field(default=5.0, metadata={"min": 0.0, "max": 3600.0})
    open_timeout_ms: int = field(default=5000, metadata={"min": 0, "max": 600000})
    read_timeout_ms: int = field(default=5000, metadata={"min": 0, "max": 600000})
    # Reconnect backoff: initial, multiplied by factor after each failed attempt, capped at max.
    reconnect_initial_s: float = field(default=0.5, metadata={"min": 0.0, "max": 600.0})
    reconnect_max_s: float = field(default=30.0, metadata={"min": 0.0, "max": 3600.0})
    reconnect_factor: float = field(default=2.0, metadata={"min": 1.0, "max": 10.0})

    def validate(self, source: str) -> None:
        if self.kind == "device" and not self.uri.strip().isdigit():
            raise ConfigError(f"{source}: key 'source.uri' must be a device index such as '0' for kind device, "
                              f"got {self.uri!r}")
        if self.kind in ("file", "url", "gstreamer", "images") and not self.uri:
            raise ConfigError(f"{source}: key 'source.uri' is required for source kind '{self.kind}'")
        if self.kind == "memory" and not (self.width and self.height):
            raise ConfigError(f"{source}: source kind 'memory' needs 'source.width' and 'source.height' > 0")
        if self.fourcc and len(self.fourcc) != 4:
            raise ConfigError(f"{source}: key 'source.fourcc' must be 4 characters such as 'MJPG', got {self.fourcc!r}")
        if self.reconnect_max_s < self.reconnect_initial_s:
            raise ConfigError(f"{source}: 'source.reconnect_max_s' must be >= 'source.reconnect_initial_s'")


@dataclass(frozen=True)
class PipelineConfig:
    """Capture -> bounded queue -> inference with micro-batching."""

    # continuous: inspect frames as they come; trigger: inspect the next frame after a PLC trigger.
    mode: str = field(default="continuous", metadata={"choices": ("continuous", "trigger")})
    queue_size: int = field(default=8, metadata={"min": 1, "max": 10000})
    # block: every frame is inspected (capture waits); drop_oldest: the latest frames win when behind;
    # drop_newest: new frames are refused when full; auto: drop_oldest for live sources, block for
    # recordings (drop_policy_for). Drops are counted and reported in heartbeats.
    drop_policy: str = field(default="auto", metadata={"choices": DROP_POLICIES})
    max_batch: int = field(default=0, metadata={"min": 0, "max": MAX_BATCH, "doc": "0 = the backend's max batch"})
    # How long the inference thread waits for more frames to fill a batch after the first one arrived.
    batch_timeout_ms: float = field(default=5.0, metadata={"min": 0.0, "max": 10000.0})
    # Start with capture paused until a `resume` command (lets a PLC or a listener connect first).
    start_paused: bool = False
    # trigger mode: a trigger not served by a frame within this time gets an ERROR result (fail safe).
    trigger_timeout_s: float = field(default=2.0, metadata={"min": 0.01, "max": 3600.0})


@dataclass(frozen=True)
class CurveConfig:
    """Optional CURVE encryption and client authentication (zmq.auth) for both sockets."""

    enabled: bool = False
    server_secret_key: str = ""  # a .key_secret file written by `inspector keys`
    authorized_keys: str = ""  # directory of allowed clients' public .key files

    def validate(self, source: str) -> None:
        if self.enabled and not (self.server_secret_key and self.authorized_keys):
            raise ConfigError(f"{source}: 'zmq.curve.enabled' needs 'zmq.curve.server_secret_key' and "
                              f"'zmq.curve.authorized_keys' (run `inspector keys` to make them)")


@dataclass(frozen=True)
class ZmqConfig:
    """ZeroMQ endpoints (bound by the daemon) and socket options."""

    # Loopback unless configured: beyond it without CURVE anyone on the network can trigger and subscribe.
    publish: tuple[str, ...] = ("tcp://127.0.0.1:5555",)
    control: str = "tcp://127.0.0.1:5556"  # "" disables the control socket
    sndhwm: int = field(default=DEFAULTS.pub_sndhwm, metadata={"min": 1, "max": 1000000})
    linger_ms: int = field(default=DEFAULTS.pub_linger_ms, metadata={"min": 0, "max": 60000})
    heartbeat_ms: int = field(default=1000, metadata={"min": 10, "max": 3600000})
    # The largest control request read (bytes, zmq.MAXMSGSIZE); a bigger one drops that client unread.
    max_request_bytes: int = field(default=MAX_REQUEST_BYTES, metadata={"min": 256, "max": 16 * 1024 * 1024})
    # An identical control request within this many seconds of the first reply is a Lazy Pirate retry:
    # answered from memory ("replayed": true). Later, it is executed again.
    replay_window_s: float = field(default=REPLAY_WINDOW_S, metadata={"min": 0.0, "max": 3600.0})
    curve: CurveConfig = field(default_factory=CurveConfig)

    def validate(self, source: str) -> None:
        if not self.publish:
            raise ConfigError(f"{source}: 'zmq.publish' needs at least one endpoint such as 'tcp://*:5555'")
        for ep in (*self.publish, self.control):
            if ep and "://" not in ep:
                raise ConfigError(f"{source}: ZeroMQ endpoint {ep!r} must look like 'tcp://*:5555' or 'ipc:///run/x'")


@dataclass(frozen=True)
class MaskConfig:
    """When the PNG defect mask is sent as the third message frame, and in which coordinates."""

    publish: str = field(default="fail", metadata={"choices": ("never", "fail", "always")})
    # frame: the mask is the frame's size, ROI placed; mask: the model's mask resolution (covers the ROI).
    resolution: str = field(default="frame", metadata={"choices": ("frame", "mask")})


@dataclass(frozen=True)
class AuditConfig:
    """Durable decision log (JSONL) and saved FAIL images."""

    enabled: bool = True
    dir: str = "audit"
    # always: fsync after every record; interval: at most every fsync_interval_s; never: leave it to the OS.
    fsync: str = field(default="interval", metadata={"choices": ("always", "interval", "never")})
    fsync_interval_s: float = field(default=1.0, metadata={"min": 0.0, "max": 3600.0})
    log_file_mb: float = field(default=64.0, metadata={"min": 0.01, "max": 100000.0})
    log_budget_mb: float = field(default=2048.0, metadata={"min": 0.01, "max": 10000000.0})
    save_images: str = field(default="fail", metadata={"choices": ("none", "fail", "fail_and_error")})
    image_format: str = field(default="jpg", metadata={"choices": ("jpg", "png")})
    image_budget_mb: float = field(default=1024.0, metadata={"min": 0.01, "max": 10000000.0})
    # Images are saved only while the audit filesystem has more than this free: the decision log comes first.
    image_reserve_mb: float = field(default=256.0, metadata={"min": 0.0, "max": 10000000.0})
    # Records kept in memory while the disk refuses writes, written in order once it works again. Past
    # this many, records are lost and counted (heartbeat audit_lost, metrics, an audit_records_lost event).
    spool_records: int = field(default=100000, metadata={"min": 0, "max": 10000000})


@dataclass(frozen=True)
class MetricsConfig:
    """Prometheus metrics over HTTP (prometheus_client)."""

    port: int = field(default=0, metadata={"min": 0, "max": 65535, "doc": "0 disables"})
    host: str = "127.0.0.1"  # metrics have no authentication: loopback unless configured


@dataclass(frozen=True)
class PreviewConfig:
    """The ``inspector/<line>/preview`` topic: low-rate images for live views (the operator station).

    Encoding runs on its own thread from a one-frame mailbox, so a preview never delays a result."""

    # Live JPEGs per second (0 = none). The newest inspected frame is sent; frames in between are skipped.
    rate_fps: float = field(default=5.0, metadata={"min": 0.0, "max": 60.0})
    # Width of live JPEGs in pixels (0 = the frame's); a frame is never scaled up.
    width: int = field(default=640, metadata={"min": 0, "max": 16384})
    jpeg_quality: int = field(default=80, metadata={"min": 10, "max": 100})
    # Also send every FAIL/ERROR frame at full size, lossless (PNG), for the station's gallery and reviews.
    rejects: bool = True
    # Reject frames waiting to be encoded; past this the oldest is skipped (and counted), never inspection.
    reject_queue: int = field(default=8, metadata={"min": 1, "max": 1000})
    # Share of one CPU core the lossless reject frames may take (PNG is dear: 40-65 ms for 1080p); past it a
    # reject is sent as a JPEG at `width` (shown, not reviewable). 0 = never lossless.
    reject_cpu: float = field(default=0.01, metadata={"min": 0.0, "max": 1.0})


@dataclass(frozen=True)
class DriftConfig:
    """Does the line still look like what calibration promised? (inspector/stream/drift.py)

    Compared with the calibration record: the reject rate over the last ``window`` results against the
    expected FRR's upper bound plus ``defect_rate``, and the median score of the last ``score_window``
    passing parts against the calibration's good-score median, in units of its standard deviation."""

    enabled: bool = True
    window: int = field(default=200, metadata={"min": 20, "max": 100000})
    score_window: int = field(default=200, metadata={"min": 10, "max": 100000})
    # Results needed in the window before the reject rate is judged; passing parts before scores are.
    min_results: int = field(default=100, metadata={"min": 10, "max": 100000})
    min_passing: int = field(default=50, metadata={"min": 5, "max": 100000})
    # Share of truly defective parts expected on this line: rejects up to expected FRR + this are normal.
    defect_rate: float = field(default=0.02, metadata={"min": 0.0, "max": 1.0})
    # |median passing score - calibration good median| / calibration good std that counts as drift (widened
    # by two standard errors of the calibration's median).
    score_shift: float = field(default=1.0, metadata={"min": 0.05, "max": 100.0})
    # Standard errors the reject rate must be above its limit (one-sided Wilson bound).
    z: float = field(default=3.0, metadata={"min": 1.0, "max": 10.0})
    # A raised drift stays raised at least this long (s), so the alarm does not flicker.
    hold_s: float = field(default=10.0, metadata={"min": 0.0, "max": 86400.0})


@dataclass(frozen=True)
class LogConfig:
    format: str = field(default="json", metadata={"choices": ("json", "text")})
    level: str = field(default="info", metadata={"choices": ("debug", "info", "warning", "error")})


@dataclass(frozen=True)
class DaemonConfig:
    """Everything `inspector run` needs."""

    line: str = "line1"
    home: str = "."
    product: str = ""
    backend: str = field(default="auto", metadata={"choices": BACKEND_NAMES})
    device: str = "auto"
    threads: int = field(default=0, metadata={"min": 0, "max": 256})
    precision: str = field(default="auto", metadata={"choices": PRECISION_CHOICES})
    # onnxruntime: let idle worker threads spin. Off by default: beside the daemon's own threads on a small
    # CPU, spinning threads cost throughput (see inspector.runtime.onnxruntime_backend).
    spin: bool = False
    source: SourceConfig = field(default_factory=SourceConfig)
    pipeline: PipelineConfig = field(default_factory=PipelineConfig)
    zmq: ZmqConfig = field(default_factory=ZmqConfig)
    masks: MaskConfig = field(default_factory=MaskConfig)
    audit: AuditConfig = field(default_factory=AuditConfig)
    metrics: MetricsConfig = field(default_factory=MetricsConfig)
    log: LogConfig = field(default_factory=LogConfig)
    preview: PreviewConfig = field(default_factory=PreviewConfig)
    drift: DriftConfig = field(default_factory=DriftConfig)

    def validate(self, source: str) -> None:
        if not is_name(self.line):
            raise ConfigError(f"{source}: key 'line' = {self.line!r} must be {NAME_RULE} "
                              "(it is part of every ZeroMQ topic)")
        if not self.product:
            raise ConfigError(f"{source}: key 'product' is required (the product to inspect at start, e.g. cable)")
        if not is_name(self.product):
            raise ConfigError(f"{source}: key 'product' = {self.product!r} must be {NAME_RULE} "
                              "(it names the files under engines/ and calibration/)")


LOOPBACK_HOSTS = ("localhost", "lo", "::1", "[::1]")


def is_loopback(endpoint: str) -> bool:
    """Does a ZeroMQ endpoint (or a bare host) stay on this machine? ipc:// and inproc:// do; tcp:// on
    127.x.x.x, ::1, localhost or the interface lo does; ``*`` and every other address do not."""
    scheme, sep, rest = endpoint.partition("://")
    if not sep:
        host = endpoint
    elif scheme in ("ipc", "inproc"):
        return True
    else:
        host = rest.split(";")[-1].rsplit(":", 1)[0]  # tcp://[source;]host:port
    return host.startswith("127.") or host in LOOPBACK_HOSTS


def exposure(cfg: DaemonConfig) -> list[str]:
    """What the daemon serves beyond loopback without authentication: ZeroMQ endpoints without CURVE, and the
    metrics port (which has none). Empty when everything stays on this machine or is CURVE-protected."""
    out = []
    if not cfg.zmq.curve.enabled:
        out += [f"zmq.publish {ep}" for ep in cfg.zmq.publish if not is_loopback(ep)]
        if cfg.zmq.control and not is_loopback(cfg.zmq.control):
            out.append(f"zmq.control {cfg.zmq.control}")
    if cfg.metrics.port and not is_loopback(cfg.metrics.host):
        out.append(f"metrics {cfg.metrics.host}:{cfg.metrics.port}")
    return out


def _resolve(base: Path, p: str) -> str:
    return str((base / p).resolve()) if p and not Path(p).is_absolute() else p


def load_daemon_config(path: str | Path) -> DaemonConfig:
    """Read and validate a daemon YAML file; relative paths become absolute against its directory."""
    import dataclasses

    path = Path(path)
    cfg = load_dataclass(DaemonConfig, read_yaml(path), str(path))
    base = path.resolve().parent
    curve = dataclasses.replace(
        cfg.zmq.curve,
        server_secret_key=_resolve(base, cfg.zmq.curve.server_secret_key),
        authorized_keys=_resolve(base, cfg.zmq.curve.authorized_keys),
    )
    src = cfg.source
    if src.kind in ("file", "images") or (src.kind == "memory" and src.uri):
        src = dataclasses.replace(src, uri=_resolve(base, src.uri))
    return dataclasses.replace(
        cfg,
        home=_resolve(base, cfg.home),
        source=src,
        zmq=dataclasses.replace(cfg.zmq, curve=curve),
        audit=dataclasses.replace(cfg.audit, dir=_resolve(Path(_resolve(base, cfg.home)), cfg.audit.dir)),
    )

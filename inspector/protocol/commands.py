"""The control commands, defined once for the daemon (stream/control.py) and every client (client/, cli/ctl.py).

A request is one ZeroMQ frame holding a UTF-8 JSON object ``{"id": <any JSON value>, "cmd": <name>, ...}``
(schema in docs/zeromq.md). Each command names its required arguments and their JSON types; ``slow``
commands load an engine or a file and run off the control thread, so ``status`` and ``trigger`` are still
answered meanwhile. The size and nesting limits bound what parsing one request can cost.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Command:
    """A control command: ``args`` are (name, JSON type) pairs every request must carry."""

    name: str
    help: str
    args: tuple[tuple[str, type], ...] = ()
    slow: bool = False


COMMANDS: dict[str, Command] = {c.name: c for c in (
    Command("status", "the daemon's state and counters"),
    Command("switch_product", "load another product and take it over between two batches", (("product", str),),
            slow=True),
    Command("trigger", "tag (continuous) or inspect (trigger mode) the next frame with a part id",
            (("part_id", str),)),
    Command("pause", "stop reading a file source; read and discard a live camera's frames"),
    Command("resume", "inspect again after pause"),
    Command("reload_calibration", "read the product's calibration record again (as SIGHUP does)", slow=True),
)}
NAMES: tuple[str, ...] = tuple(COMMANDS)
SLOW: tuple[str, ...] = tuple(c.name for c in COMMANDS.values() if c.slow)

# The largest request the control socket reads (zmq.MAXMSGSIZE): a bigger one closes that client's
# connection inside libzmq, unread. Configurable as zmq.max_request_bytes.
MAX_REQUEST_BYTES = 64 * 1024
# Deepest JSON nesting parsed; deeper input is refused before json.loads could recurse on it.
MAX_JSON_DEPTH = 32
# A Lazy Pirate client re-sends a request it got no reply to within its timeout; the daemon answers an
# identical request within this many seconds of the first reply from memory (zmq.replay_window_s).
REPLAY_WINDOW_S = 10.0
# Client-side timeout per attempt for the slow commands (loading an engine takes seconds).
SLOW_TIMEOUT_MS = 30000

"""`inspector demo --station`: the demo line and the operator station, running until Ctrl-C.

Uses the product and line video that `inspector demo` (`make demo`) left in ``--home`` / ``--out`` when they are
there, else makes them first (the same steps). Then runs ``inspector run`` on the video in a loop, the station
subscribed to it, and prints the page's URL and the operator token for reviews (``INSPECTOR_STATION_TOKEN`` when
set, else a fresh random one for this run).
"""

from __future__ import annotations

import os
import secrets
import signal
import subprocess
import sys
import threading
from collections.abc import Callable
from pathlib import Path

from inspector.errors import InspectorError
from inspector.tools.demo import FPS, VIDEO_FRAMES, _free_port, daemon_config, prepare


def _ready(home: Path, product: str, out: Path) -> bool:
    return all(p.is_file() for p in (home / "engines" / product / "manifest.json",
                                     home / "calibration" / f"{product}.yaml", out / "line.avi", out / "line.json"))


def run_station_demo(home: str | Path | None = None, out: str | Path = "demo_out", data: str | Path | None = None,
                     product: str | None = None, frames: int = VIDEO_FRAMES, epochs: int | None = None,
                     bind: str = "127.0.0.1:8080", backend: str = "auto", say: Callable[[str], None] = print,
                     stop: threading.Event | None = None, on_url: Callable[[str], None] | None = None) -> int:
    """Run until Ctrl-C (or ``stop`` is set); 0 on a clean stop, InspectorError when the daemon dies."""
    from inspector.bundle import home_dir
    from inspector.station.config import TOKEN_ENV, load_station_config
    from inspector.station.server import Station

    home_p, out_p = home_dir(home), Path(out).resolve()
    name = product or ("cable" if data is None else Path(data).resolve().name)
    if _ready(home_p, name, out_p):
        say(f"using the product '{name}' in {home_p} and the line video {out_p / 'line.avi'} made by `inspector demo`")
    else:
        prep = prepare(home_p, out_p, data, name, frames, epochs, say)
        home_p, out_p, name = prep.home, prep.out, prep.product
    pub, ctl = f"tcp://127.0.0.1:{_free_port()}", f"tcp://127.0.0.1:{_free_port()}"
    cfg_path = daemon_config(out_p / "demo-station.yaml", home_p, name, out_p / "line.avi", out_p / "audit", pub, ctl,
                             backend, source={"at_end": "loop", "rate_fps": FPS}, pipeline={"start_paused": False},
                             preview={"rate_fps": 5.0})
    token = os.environ.get(TOKEN_ENV) or secrets.token_urlsafe(18)
    say(f"$ inspector run --config {cfg_path}")
    proc = subprocess.Popen([sys.executable, "-c", "import sys; from inspector.cli import main; sys.exit(main())",
                             "run", "--config", str(cfg_path)])
    station = Station(load_station_config(None, connect=[pub], control=[ctl], bind=bind, home=str(home_p),
                                          title=f"inspector demo ({name})"), tokens={token: "demo operator"})
    stop = stop or threading.Event()
    if threading.current_thread() is threading.main_thread():
        # Ctrl-C, and SIGTERM (a service manager, `kill`), stop the line and the station together.
        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, lambda *_: stop.set())
    try:
        url = station.start()
        say(f"\nstation: {url}   (Ctrl-C stops the line and the station)")
        say("operator token for reviews, pause/resume and product switch: "
            + (f"${TOKEN_ENV}" if os.environ.get(TOKEN_ENV) else token))
        if on_url is not None:
            on_url(url)
        while not stop.wait(0.5):
            if proc.poll() is not None:
                raise InspectorError(f"the daemon exited with code {proc.returncode}; see its log above")
        say("\nstopping the line and the station")
    finally:
        station.stop()
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                proc.kill()
    return 0

"""inspector station --connect ENDPOINT [--connect ...] [--control ENDPOINT] [--home DIR] [--bind HOST:PORT] [--kiosk]"""

from __future__ import annotations

import argparse


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "station",
        help="the operator station: a live web page of the lines, review of rejects, drift alarms",
        description="Subscribe to one or more `inspector run` daemons and serve the operator's web page: the live "
        "image with the last decision, counters, a score chart, the latest rejects (to review as false reject or "
        "confirmed defect: stored under <home>/reviews/<product>/ for `inspector calibrate --reviewed`), events and "
        "drift. The page is read-only without an operator token (INSPECTOR_STATION_TOKEN, or tokens_file in "
        "--config); reviews, pause/resume and product switch need one. It is only a subscriber: it cannot slow or "
        "stop inspection. See docs/station.md.",
    )
    p.add_argument("--connect", action="append", metavar="ENDPOINT",
                   help="a daemon's PUB endpoint, e.g. tcp://127.0.0.1:5555 (repeatable)")
    p.add_argument("--control", action="append", metavar="ENDPOINT",
                   help="a daemon's control endpoint, e.g. tcp://127.0.0.1:5556 (repeatable; its line is asked)")
    p.add_argument("--bind", metavar="HOST:PORT", help="where the page is served (default 127.0.0.1:8080)")
    p.add_argument("--config", metavar="FILE", help="station YAML (keys as the flags, plus tokens_file, gallery, ...)")
    p.add_argument("--title", help="the page's title (default: inspector)")
    p.add_argument("--curve", nargs=2, metavar=("CLIENT_SECRET", "SERVER_PUBLIC"),
                   help="CURVE: this client's NAME.key_secret and the daemons' server.key")
    p.add_argument("--home", metavar="DIR",
                   help="where reviews/ go and calibration/ is read (default: $INSPECTOR_HOME, else the current "
                   "directory)")
    p.add_argument("--kiosk", action="store_true",
                   help="also start this PC's browser (chromium, chromium-browser or google-chrome; 'browser' in "
                   "--config) full-screen on the page, at nice 19 ('browser_nice'), and stop it with the station")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import signal
    import threading

    from inspector.station.config import load_station_config
    from inspector.station.server import Station

    curve = args.curve or ("", "")
    cfg = load_station_config(args.config, connect=args.connect, control=args.control, bind=args.bind,
                              home=args.home, title=args.title, curve_secret=curve[0], curve_server=curve[1],
                              kiosk=args.kiosk or None)  # None: the config file's value stands
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    if cfg.nice:
        import os

        os.nice(cfg.nice)  # the whole process, before its threads start: they inherit it
    station = Station(cfg)
    url = station.start()
    print(f"station: {url}  (lines from {', '.join(cfg.connect)}; "
          f"{'writes need an operator token' if station.tokens else 'read-only: no operator token configured'})",
          flush=True)
    if station.kiosk is not None:  # (a browser that could not start is logged by the station, which serves on)
        print(f"station: kiosk browser pid {station.kiosk.pid} at nice {cfg.browser_nice}", flush=True)
    try:
        stop.wait()
    except KeyboardInterrupt:
        pass
    finally:
        station.stop()
    return 0

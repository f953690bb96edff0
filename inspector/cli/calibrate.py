"""inspector calibrate --product NAME [--data DIR] [--policy P] [--target-frr A] ... | --check --data DIR [--json OUT]"""

from __future__ import annotations

import argparse

from inspector.cli.common import add_device, add_home, add_product, add_threads

DRIFT_EXIT = 3


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "calibrate",
        help="fit a product's pass/fail thresholds on unseen images, or check them on new labelled data",
        description="Fit the image and pixel thresholds of a product on images the model never trained on "
        "(by default the good images training held out; --data adds good/defective images and masks) and "
        "write <home>/calibration/NAME.yaml and NAME.report.png with the expected false-reject and escape "
        "rates and their 95% intervals. A previous calibration is kept under a dated name. With --check, "
        "apply the saved calibration to labelled data (an MVTec category's test split, or a folder layout) "
        f"and compare observed with promised rates; exit status {DRIFT_EXIT} flags drift.",
    )
    add_product(p)
    p.add_argument("--data", metavar="DIR", help="extra calibration images (MVTec or folder layout); with --check: "
                   "the labelled data to check on")
    p.add_argument("--policy", choices=("conformal", "f1", "cost", "escape"),
                   help="conformal (default; good images only, guarantees the FRR), f1 or cost (need defective "
                   "images); escape is implied by --target-escape")
    p.add_argument("--target-frr", type=float, default=0.01, metavar="A",
                   help="target false-reject rate of the conformal threshold, also the rate at which a good image may "
                   "show a defect region (default 0.01)")
    p.add_argument("--target-escape", type=float, metavar="R",
                   help="pick the threshold with the lowest FRR whose escape rate is <= R (needs defective images)")
    p.add_argument("--c-escape", type=float, metavar="X", help="cost of one escaped defective part (policy cost)")
    p.add_argument("--c-reject", type=float, metavar="Y", help="cost of one rejected good part (policy cost)")
    p.add_argument("--pixel-policy", choices=("auto", "conformal", "f1"), default="auto",
                   help="pixel threshold: conformal over good pixels, or per-pixel F1 with masks (auto: f1 when "
                   "defect masks are given)")
    p.add_argument("--pixel-alpha", type=float, default=0.001, metavar="A",
                   help="share of good pixels allowed above the conformal pixel threshold (default 0.001)")
    p.add_argument("--min-area", type=int, metavar="PX", help="fix the minimum defect region area (pixels at the "
                   "anomaly map's resolution) instead of fitting it")
    p.add_argument("--backend", default="auto", help="auto, torch, onnxruntime or tensorrt (default: auto)")
    p.add_argument("--no-report", action="store_true", help="do not draw NAME.report.png")
    p.add_argument("--reviewed", action="store_true",
                   help="add the rejects operators reviewed in `inspector station` (<home>/reviews/NAME): false "
                   "rejects as good images, confirmed defects as defective images with their masks")
    p.add_argument("--check", action="store_true", help="check the saved calibration on --data instead of fitting")
    p.add_argument("--json", metavar="OUT", help="with --check: write the observed rates as JSON")
    p.add_argument("--set-threshold", type=float, metavar="X",
                   help="set the image threshold by hand: a new record with a new id (policy manual, rates not "
                   "re-estimated: measure them with --check); the current one is kept under a dated name")
    p.add_argument("--sign", action="store_true",
                   help="add the content hash to a record written before records carried one (after review)")
    add_device(p)
    add_threads(p)
    add_home(p)
    p.set_defaults(func=run)


def policy_from_args(args: argparse.Namespace):
    """The Policy the flags ask for; contradictory flags are a ConfigError."""
    from inspector.calibrate.run import Policy
    from inspector.errors import ConfigError

    name = args.policy
    if args.target_escape is not None:
        if name not in (None, "escape"):
            raise ConfigError(f"--target-escape chooses the escape policy; it cannot be combined with --policy {name}")
        name = "escape"
    costs = args.c_escape is not None or args.c_reject is not None
    if costs and name not in (None, "cost"):
        raise ConfigError(f"--c-escape/--c-reject belong to --policy cost, not --policy {name}")
    name = name or ("cost" if costs else "conformal")
    return Policy(name=name, target_frr=args.target_frr, target_escape=args.target_escape, c_escape=args.c_escape,
                  c_reject=args.c_reject, pixel_alpha=args.pixel_alpha, pixel_policy=args.pixel_policy,
                  min_area=args.min_area)


def _fmt(rate) -> str:
    return "-" if rate is None else f"{rate.estimate:.4f} [{rate.lower:.4f}, {rate.upper:.4f}] ({rate.count}/{rate.n})"


def run(args: argparse.Namespace) -> int:
    from inspector.errors import ConfigError

    if args.check:
        return _run_check(args)
    if args.json:
        raise ConfigError("--json goes with --check")
    if args.set_threshold is not None or args.sign:
        return _run_edit(args)
    from inspector.calibrate.run import calibrate

    r = calibrate(args.product, home=args.home, data=args.data, policy=policy_from_args(args), backend=args.backend,
                  device=args.device, threads=args.threads, write_report=not args.no_report, reviewed=args.reviewed)
    rec = r.record
    print(f"calibrated {rec.product} ({rec.id}) on {rec.n_good} good and {rec.n_defective} defective images, "
          f"policy {rec.policy}, backend {rec.backend.get('backend', '?')}")
    if rec.data.get("reviewed"):
        rv = rec.data["reviewed"]
        print(f"  reviewed         {rv['false_rejects']} false rejects (good), {rv['confirmed_defects']} confirmed "
              f"defects, from {rv['dir']}")
    print(f"  image threshold  {rec.image_threshold:.6g}")
    print(f"  pixel threshold  {rec.pixel_threshold:.6g} ({rec.pixel_policy}); min region {rec.min_region_area} px")
    print(f"  expected FRR     {_fmt(rec.expected_frr)}")
    print(f"  expected escape  {_fmt(rec.expected_escape)}")
    print(f"record: {r.path}" + (f"  (previous kept as {r.archived.name})" if r.archived else ""))
    if r.report:
        print(f"report: {r.report}")
    return 0


def _run_edit(args: argparse.Namespace) -> int:
    from inspector.calibrate.run import set_threshold, sign
    from inspector.errors import ConfigError

    if args.set_threshold is not None and args.sign:
        raise ConfigError("--set-threshold writes a signed record already; give one of --set-threshold, --sign")
    if args.reviewed:
        raise ConfigError("--reviewed adds images to a fitted calibration; it does not go with --set-threshold or "
                          "--sign")
    if args.sign:
        rec, path = sign(args.product, home=args.home)
        print(f"signed {rec.id}: content_sha256 {rec.content_sha256}\nrecord: {path}")
        return 0
    rec, path, archived = set_threshold(args.product, args.set_threshold, home=args.home)
    prev = rec.parameters
    print(f"calibration {rec.id}: image threshold {prev['previous_image_threshold']:.6g} -> {rec.image_threshold:.6g} "
          f"(set by hand; was {prev['previous_id']})")
    print("  expected rates not re-estimated: measure them with "
          f"`inspector calibrate --product {rec.product} --check --data DIR`")
    print(f"record: {path}" + (f"  (previous kept as {archived.name})" if archived else ""))
    return 0


def _run_check(args: argparse.Namespace) -> int:
    from inspector.calibrate.run import check
    from inspector.errors import ConfigError

    if args.reviewed:
        raise ConfigError("--reviewed adds images to a calibration; it does not go with --check")
    if not args.data:
        raise ConfigError("--check needs --data DIR with labelled images (good and/or defective)")
    r = check(args.product, args.data, home=args.home, backend=args.backend, device=args.device,
              threads=args.threads, json_out=args.json)
    print(f"check of calibration {r['calibration']} on {r['n_good']} good and {r['n_defective']} defective images")
    for key, label in (("frr", "FRR"), ("escape_rate", "escape rate")):
        if r[key] is None:
            print(f"  {label:12s} -  (no such images)")
            continue
        lo, hi = r[f"{key}_interval"]
        promise = r[f"promised_{key}"]
        promised = "no promise" if promise is None else (
            f"promised {promise['estimate']:.4f} [{promise['interval'][0]:.4f}, {promise['interval'][1]:.4f}]")
        flag = f"  DRIFT ({r['drift'][key]} the promised interval)" if key in r["drift"] else ""
        print(f"  {label:12s} observed {r[key]:.4f} [{lo:.4f}, {hi:.4f}] ({r[key + '_count']}/"
              f"{r['n_good'] if key == 'frr' else r['n_defective']}); {promised}{flag}")
    if args.json:
        print(f"json: {args.json}")
    return DRIFT_EXIT if r["drift"] else 0

"""inspector review --product NAME [--export DIR] [--home DIR]: list the operators' reviews of rejects, export them."""

from __future__ import annotations

import argparse

from inspector.cli.common import add_home, add_product


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "review",
        help="list the reviews operators made of rejects in `inspector station`, or export them as a dataset",
        description="List every review stored under <home>/reviews/NAME (who, when, verdict, the line's decision, "
        "note); the latest review of a reject is the one that counts. With --export DIR, write the latest ones "
        "in the folder layout: good/ (false rejects), reviewed_defect/ (confirmed defects) and masks/, usable as "
        "`--data DIR`. `inspector calibrate --reviewed` and `inspector train --add-reviewed` read them directly.",
    )
    add_product(p)
    p.add_argument("--export", metavar="DIR", help="write the latest reviews here in the folder layout")
    p.add_argument("--all", action="store_true", help="list every review, not just the latest per reject")
    add_home(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from inspector.reviews import ReviewStore

    store = ReviewStore(args.home, args.product)
    rows = store.all() if args.all else store.latest()
    print(f"{len(rows)} review{'s' if len(rows) != 1 else ''} of product {args.product} in {store.dir}"
          f"{'' if args.all else ' (latest per reject)'}")
    if rows:
        print(f"{'id':>5}  {'reviewed (UTC)':<20} {'who':<12} {'verdict':<17} {'line':<10} {'frame':>7} "
              f"{'part':<10} {'decision':<8} {'score':>7}  note")
    for r in rows:
        score = "-" if r.normalized_score is None else f"{r.normalized_score:.2f}x"
        print(f"{r.id:>5}  {r.reviewed_at[:19]:<20} {r.who[:12]:<12} {r.verdict:<17} {r.line[:10]:<10} "
              f"{'-' if r.frame_id is None else r.frame_id:>7} {(r.part_id or '-')[:10]:<10} {r.decision:<8} "
              f"{score:>7}  {r.note}")
    if args.export:
        counts = store.export(args.export)
        print(f"exported to {args.export}: {counts['good']} good (false rejects), {counts['reviewed_defect']} "
              f"defective (confirmed), {counts['masks']} masks; use it with --data {args.export}")
    return 0

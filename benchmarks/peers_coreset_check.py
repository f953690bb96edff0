"""Does ``--coreset matvec`` pick anomalib's coreset? Both k-center-greedy steps on real PatchCore-Lite0 features.

Run in the peers venv::

    .venv-peers/bin/python benchmarks/peers_coreset_check.py --data ../shared/datasets/mvtec_ad/bottle --size 128x128 --picks 2000

Prints both times, whether the picks are identical in order, where they first differ, and how many of the
picked points both sets share (the memory bank is a set: its order does not change any score).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks import peers  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data", type=Path, required=True)
    p.add_argument("--size", type=peers.parse_size, default=(128, 128))
    p.add_argument("--picks", type=int, default=2000)
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)

    import torch
    from anomalib.data import MVTecAD
    from anomalib.models.components.sampling import k_center_greedy as kcg
    from lightning.pytorch import seed_everything

    torch.set_num_threads(1)
    run_args = peers.parse_args(["--data", str(args.data), "--model", "patchcore", "--size", "x".join(map(str, args.size))])
    peer = peers.build_peer(run_args, peers.lite0_layers("patchcore"))
    peers.load_inspector_lite0(peer, "patchcore", None)
    data = args.data.resolve()
    dm = MVTecAD(root=data.parent, category=data.name, train_batch_size=32, num_workers=0)
    dm.setup()
    peer.model.train()
    with torch.no_grad():
        for batch in dm.train_dataloader():
            peer.model(peer.pre_processor.transform(batch.image))
    emb = torch.vstack(peer.model.embedding_store)
    picks, seconds = {}, {}
    stock = kcg.KCenterGreedy.update_distances
    try:
        for name, step in (("anomalib", stock), ("matvec", peers.matvec_update_distances)):
            kcg.KCenterGreedy.update_distances = step
            seed_everything(args.seed, verbose=False)
            sampler = kcg.KCenterGreedy(emb, args.picks / emb.shape[0])
            t0 = time.perf_counter()
            picks[name] = sampler.select_coreset_idxs()
            seconds[name] = time.perf_counter() - t0
    finally:
        kcg.KCenterGreedy.update_distances = stock
    a, m = picks["anomalib"], picks["matvec"]
    first = next((i for i, (x, y) in enumerate(zip(a, m, strict=True)) if x != y), None)
    print(f"embedding {tuple(emb.shape)}, {len(a)} picks: anomalib {seconds['anomalib']:.1f} s, "
          f"matvec {seconds['matvec']:.1f} s; identical order: {a == m}; first difference at pick {first}; "
          f"shared points {len(set(a) & set(m))}/{len(a)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

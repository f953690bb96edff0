"""inspector visualize --product NAME --data DIR [--n 600] [--out tsne.png] [--home DIR] [--seed S] [--pca-dims K]"""

from __future__ import annotations

import argparse

from inspector.cli.common import add_device, add_home, add_product, add_threads


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "visualize",
        help="t-SNE of feature-difference vectors (the ADTR paper's Fig. 5)",
        description="Sample feature-difference vectors d = f - f_hat at token positions of the test images "
        "(normal: tokens of good images; anomaly: tokens whose footprint the ground-truth mask covers by at "
        "least --min-overlap), embed them with t-SNE and draw them: circles normal, triangles anomalies, colour "
        "= predicted anomaly score. Writes OUT (PNG), OUT.csv (x,y,label,score) and OUT.json (n, silhouette, "
        "norm_auroc, ...).",
    )
    add_product(p)
    p.add_argument("--data", required=True, metavar="DIR", help="dataset directory with test images and masks")
    p.add_argument("--n", type=int, default=600, help="vectors to embed (default 600)")
    p.add_argument("--anomaly-share", type=float, default=0.5, help="share of anomalous vectors (default 0.5 = 1:1)")
    p.add_argument("--min-overlap", type=float, default=0.5,
                   help="mask coverage of a token's footprint that makes it an anomaly (default 0.5)")
    p.add_argument("--out", default="tsne.png", metavar="PNG", help="figure path; .csv and .json go beside it")
    p.add_argument("--seed", type=int, default=0, help="sampling and t-SNE seed (default 0)")
    p.add_argument("--pca-dims", type=int, default=None, metavar="K",
                   help="principal components kept before the t-SNE, as the reference t-SNE implementations do "
                   "(default 50; 0: embed the vectors as they are)")
    add_device(p)
    add_threads(p)
    add_home(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from inspector.tools.visualize import PCA_DIMS, visualize

    r = visualize(args.product, args.data, home=args.home, n=args.n, out=args.out, seed=args.seed,
                  min_overlap=args.min_overlap, anomaly_share=args.anomaly_share, device=args.device,
                  threads=args.threads, pca_dims=PCA_DIMS if args.pca_dims is None else args.pca_dims)
    print(f"{r['n']} vectors ({r['n_normal']} normal, {r['n_anomaly']} anomalous; available "
          f"{r['available']['normal']} / {r['available']['anomaly']}), dim {r['vector_dim']}, t-SNE input dim "
          f"{r['tsne_input_dim']} ({r['pca_explained_variance']:.0%} of the variance)")
    print(f"silhouette {r['silhouette']:.3f}, vector-norm AUROC {r['norm_auroc']:.4f}, "
          f"token-score AUROC {r['score_auroc']:.4f}, {r['seconds']:.1f} s (t-SNE {r['tsne_seconds']:.1f} s)")
    print(f"wrote {args.out} and its .csv / .json")
    return 0

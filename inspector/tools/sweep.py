"""Recipe sweeps that reuse cached backbone features: one backbone pass per (dataset, input size), then only
the reconstructor is retrained per variant, and scoring variants are evaluated after the fact.

Three layers of cache under ``cache``:
- ``features/<dataset>_<H>x<W>.pt``: every backbone stage (strides 2-32) of every training and test image,
  already on the stride-16 grid, the finer stages both ways (``to_grid`` bilinear and area), float16;
- ``runs/<key>.pt``: one trained variant's per-token error maps of the test images ``(N, rows, cols)``, its
  loss history and training time;
- scoring (smoothing, pool) is cheap and never cached: ``score_variant`` runs the product's own
  ``AnomalyScorer`` on the saved token maps and the product's metrics at each mask's own resolution.

Training uses the product's own pieces (``create_adtr`` after ``seed_everything``, so the reconstructor starts
from the same weights as ``inspector train`` would; ``split_holdout``; ``make_step``; ``lr_at``; the same
shuffling generator), so a variant's figures are those of ``inspector train`` + ``inspector evaluate`` up to
the run-to-run noise of CPU threads.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from inspector.data.dataset import load_dataset, split_holdout
from inspector.data.tensors import batches, load_inputs
from inspector.device import seed_everything
from inspector.errors import ConfigError
from inspector.evaluate.metrics import aupro, auroc, pixel_auroc
from inspector.evaluate.run import Predictions, masks_and_maps
from inspector.model.adtr import ModelConfig, create_adtr
from inspector.model.backbone import build_backbone, to_grid
from inspector.model.preprocess import Preprocess
from inspector.model.scoring import AnomalyScorer
from inspector.model.weights import normalization
from inspector.preset import Preset, TrainConfig
from inspector.train.run import lr_at
from inspector.train.step import make_step

log = logging.getLogger(__name__)

ALL_STRIDES = (2, 4, 8, 16, 32)
RESIZES = ("bilinear", "area")


@dataclass(frozen=True)
class Variant:
    """One point of a sweep: what is trained (model and optimisation) on which dataset."""

    dataset: str
    model: ModelConfig
    train: TrainConfig

    def key(self) -> str:
        blob = json.dumps({"d": self.dataset, "m": dataclasses.asdict(self.model), "t": dataclasses.asdict(self.train)},
                          sort_keys=True, default=list)
        h, w = self.model.size_hw
        return f"{self.dataset}_{h}x{w}_{hashlib.sha256(blob.encode()).hexdigest()[:12]}"


# --- features -----------------------------------------------------------------------------------


@torch.no_grad()
def stage_features(backbone_name: str, images: torch.Tensor, batch: int = 8) -> dict[str, torch.Tensor]:
    """All stages of ``images`` ``(N, 3, H, W)`` on the stride-16 grid: ``{"s{stride}_{resize}": (N, C, h, w)}``
    float16, for strides 2, 4, 8 in both resizes, and ``s16`` / ``s32`` (``_bilinear`` names, one way only)."""
    net, _ = build_backbone(backbone_name, ALL_STRIDES)
    grid = (images.shape[-2] // 16, images.shape[-1] // 16)
    out: dict[str, list[torch.Tensor]] = {}
    for sl in batches(len(images), batch):
        feats = net.net(images[sl])
        for stride, f in zip(ALL_STRIDES, feats, strict=True):
            modes = RESIZES if stride < 16 else ("bilinear",)
            for mode in modes:
                out.setdefault(f"s{stride}_{mode}", []).append(to_grid(f, grid, mode).half())
    return {k: torch.cat(v) for k, v in out.items()}


def feature_cache(cache: Path, name: str, root: Path, size_hw: tuple[int, int], backbone: str, seed: int,
                  val_fraction: float) -> dict[str, Any]:
    """The cached stage features of dataset ``name`` at ``root`` for input ``size_hw``; computed once.

    Returns ``{"train": {...}, "test": {...}, "test_samples": [...], "sizes": [...], "n_train": int}``.
    """
    h, w = size_hw
    path = cache / "features" / f"{name}_{h}x{w}_{backbone}_s{seed}_v{val_fraction}.pt"
    ds = load_dataset(root)
    if path.is_file():
        data = torch.load(path, weights_only=True)
    else:
        t0 = time.perf_counter()
        train, _held = split_holdout(ds.train, val_fraction, seed)
        pre = Preprocess(size_hw, *normalization(backbone))
        sizes: list[tuple[int, int]] = []
        data = {
            "train": stage_features(backbone, load_inputs((s.path for s in train), pre)),
            "test": stage_features(backbone, load_inputs((s.path for s in ds.test), pre, sizes)),
            "test_names": [str(s.path.relative_to(ds.root)) for s in ds.test],
            "sizes": [list(s) for s in sizes],
        }
        path.parent.mkdir(parents=True, exist_ok=True)
        torch.save(data, path)
        log.info("cached features of %s at %dx%d (H x W) in %.1f s -> %s", name, h, w, time.perf_counter() - t0, path)
    by_name = {str(s.path.relative_to(ds.root)): s for s in ds.test}
    data["test_samples"] = [by_name[n] for n in data["test_names"]]
    return data


def assemble(feats: dict[str, torch.Tensor], cfg: ModelConfig) -> torch.Tensor:
    """The raw target ``(N, C, h, w)`` float32 that ``cfg``'s backbone would give, from cached stages."""
    parts = []
    for s in cfg.used_strides:
        mode = cfg.stage_resize if s < 16 else "bilinear"
        parts.append(feats[f"s{s}_{mode}"].float())
    return torch.cat(parts, dim=1)


# --- training one variant -----------------------------------------------------------------------


def train_variant(v: Variant, feats: dict[str, Any], threads: int) -> dict[str, Any]:
    """Train ``v``'s reconstructor on cached training features; per-token error maps of the test images."""
    torch.set_num_threads(threads)
    tcfg = v.train
    seed_everything(tcfg.seed)
    model, _ = create_adtr(v.model)  # same RNG draws as `inspector train`, so the same initial weights
    raw = assemble(feats["train"], v.model)
    model.set_target_stats(raw)
    targets = model.standardize(raw)
    recon = model.reconstructor
    stepper = make_step(recon, tcfg.lr, tcfg.weight_decay, tcfg.grad_clip, torch.device("cpu"), False)
    gen = torch.Generator(device="cpu").manual_seed(tcfg.seed)
    n, history = len(targets), []
    t0 = time.perf_counter()
    recon.train()
    for epoch in range(tcfg.epochs):
        stepper.set_lr(lr_at(epoch, tcfg.lr, tcfg.epochs, tcfg.warmup_epochs, tcfg.lr_drop_at, tcfg.lr_drop_factor))
        order = torch.randperm(n, generator=gen)
        total = 0.0
        for s in batches(n, tcfg.batch_size):
            total += float(stepper.step(targets[order[s]])) * (s.stop - s.start)
        history.append(total / n)
    seconds = time.perf_counter() - t0
    recon.eval()
    with torch.no_grad():
        test = model.standardize(assemble(feats["test"], v.model))
        err = torch.cat([torch.linalg.vector_norm(test[s] - recon(test[s]), dim=1) for s in batches(len(test), 16)])
    return {"token_maps": err, "loss_history": history, "train_seconds": seconds}


def run_variant(v: Variant, cache: Path, root: Path, threads: int) -> dict[str, Any]:
    """``train_variant`` once per variant key (cached under ``cache/runs``), with its features."""
    feats = feature_cache(cache, v.dataset, root, v.model.size_hw, v.model.backbone, v.train.seed,
                          v.train.val_fraction)
    path = cache / "runs" / f"{v.key()}.pt"
    if path.is_file():
        out = torch.load(path, weights_only=True)
    else:
        out = train_variant(v, feats, threads)
        path.parent.mkdir(parents=True, exist_ok=True)
        torch.save(out, path)
        log.info("trained %s in %.1f s, final loss %.5f", v.key(), out["train_seconds"], out["loss_history"][-1])
    return {**out, "samples": feats["test_samples"], "sizes": [tuple(s) for s in feats["sizes"]]}


# --- scoring after the fact ---------------------------------------------------------------------


def score_variant(run: dict[str, Any], cfg: ModelConfig, sigma: float | None = None,
                  pool: int | None = None) -> dict[str, Any]:
    """Image AUROC, pixel AUROC and AUPRO (at each mask's resolution) of a trained variant's token maps,
    scored as ``cfg`` says (or with ``sigma`` / ``pool`` changed), by the product's own scorer and metrics."""
    changes = {k: val for k, val in (("smoothing_sigma", sigma), ("pool_size", pool)) if val is not None}
    cfg = dataclasses.replace(cfg, **changes)
    scorer = AnomalyScorer.for_config(cfg)
    tok = run["token_maps"].float()[:, None]
    with torch.no_grad():
        scores, maps = [], []
        for s in batches(len(tok), 16):
            sc, m = scorer(tok[s], torch.zeros_like(tok[s]))  # the L2 norm of a 1-channel map is the map
            scores.append(sc)
            maps.append(m)
    pred = Predictions(tuple(run["samples"]), torch.cat(scores).numpy(), torch.cat(maps).numpy(), 0.0,
                       tuple(run["sizes"]))
    labels = np.array([s.label for s in pred.samples])
    masks, full = masks_and_maps(pred)
    keep = [i for i, s in enumerate(pred.samples) if s.label == 0 or s.mask_path is not None]
    pm, pa = [masks[i] for i in keep], [full[i] for i in keep]
    return {"image_auroc": auroc(labels, pred.scores), "pixel_auroc": pixel_auroc(pm, pa),
            "pixel_aupro": aupro(pm, pa), "smoothing_sigma": cfg.smoothing_sigma, "pool_size": cfg.pool_size,
            "train_seconds": run["train_seconds"], "final_loss": run["loss_history"][-1]}


def variant(dataset: str, preset: Preset, **changes: Any) -> Variant:
    """A variant of ``preset`` with model or train fields changed (``lr``, ``epochs`` go to train)."""
    train_keys = {f.name for f in dataclasses.fields(TrainConfig)}
    tc = {k: val for k, val in changes.items() if k in train_keys}
    mc = {k: val for k, val in changes.items() if k not in train_keys}
    model = dataclasses.replace(preset.model, **mc)
    model.validate("sweep")
    if model.input_size == "auto":
        raise ConfigError("a sweep variant needs a concrete input_size")
    if model.map_strides is not None:
        # The cached runs keep one error map over every stage: a split map would be scored as if it were not.
        raise ConfigError(f"model.map_strides = {list(model.map_strides)}: the sweep scores one error map over "
                          "every stage and cannot score a split map; use a preset without map_strides")
    return Variant(dataset, model, dataclasses.replace(preset.train, **tc))

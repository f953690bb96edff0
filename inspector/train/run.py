"""`inspector train`: fit ADTR on good images only, with MSE between features and their reconstruction.

The backbone is frozen and there is no augmentation, so features are computed once per image and cached
(on the training device). The loop reads top to bottom: set lr, step, clip, log, checkpoint.
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass, replace
from pathlib import Path

import torch

from inspector.bundle import (
    BackboneInfo,
    Checkpoint,
    DataInfo,
    ImageFile,
    load_checkpoint,
    model_path,
    save_checkpoint,
)
from inspector.data.dataset import Dataset, Sample, fingerprint, load_dataset, split_holdout
from inspector.data.tensors import batches, image_sizes, load_inputs
from inspector.device import resolve_device, seed_everything, set_threads, versions
from inspector.errors import CheckpointError
from inspector.manifest import Normalization
from inspector.model.adtr import ADTR, create_adtr
from inspector.model.preprocess import Preprocess
from inspector.model.sizing import resolve_input_size
from inspector.model.weights import normalization
from inspector.preset import Preset, TrainConfig
from inspector.train.step import EagerStep, make_step

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class TrainResult:
    """What a training run produced."""

    model_path: Path
    epochs: int
    final_loss: float
    train_seconds: float  # the optimisation loop alone (feature caching excluded)
    cache_seconds: float  # computing the frozen backbone's features once
    n_train: int
    n_holdout: int


def mean_std(preset: Preset) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Normalisation of the model input: the backbone's own, or the Lite one for the pixel target."""
    if preset.model.target == "pixels":
        return normalization("tf_efficientnet_lite0")
    return normalization(preset.model.backbone)


@torch.no_grad()
def cache_targets(model: ADTR, inputs: torch.Tensor, device: torch.device, batch: int = 32) -> torch.Tensor:
    """Reconstruction targets of all inputs, ``(N, C, h, w)`` on ``device``.

    The frozen extractor runs once per image; the standardisation statistics are fitted on these
    training targets and stored in the model, so export and serving apply exactly the same transform.
    """
    model.to(device)
    raw = torch.cat([model.extractor(inputs[s].to(device)) for s in batches(len(inputs), batch)])
    model.set_target_stats(raw)
    return model.standardize(raw)


def lr_at(epoch: int, base: float, epochs: int, warmup: int, drop_at: float, drop_factor: float) -> float:
    """Step schedule: linear warm-up, constant, then ``base * drop_factor`` from ``drop_at * epochs`` on."""
    if warmup and epoch < warmup:
        return base * (epoch + 1) / warmup
    return base * drop_factor if epoch >= math.floor(drop_at * epochs) else base


def train(
    product: str,
    data: str | Path,
    preset: Preset,
    home: str | Path | None = None,
    device: str = "auto",
    resume: str | Path | None = None,
    backbone_weights: str | None = None,
    progress: bool = True,
    extra_good: tuple[Path, ...] = (),
) -> TrainResult:
    """Train ``product`` on the good images of ``data`` and write ``<home>/engines/<product>/model.pt``.

    ``extra_good``: more good images to train on, all of them (none held out), e.g. the false rejects
    operators reviewed (``--add-reviewed``). Their fingerprints join the training set's, so calibration
    refuses them later like any training image.
    """
    tcfg, mcfg = preset.train, preset.model
    set_threads(tcfg.threads)
    seed_everything(tcfg.seed)
    dev = resolve_device(device)
    ds: Dataset = load_dataset(data)
    log.info("%s", ds.summary())
    train_samples, held = split_holdout(ds.train, tcfg.val_fraction, tcfg.seed)
    preset = _concrete_input_size(preset, train_samples)  # from the dataset's images, not the reviewed extras
    mcfg = preset.model
    if extra_good:
        train_samples += [Sample(Path(p), 0, "good") for p in extra_good]
        log.info("adding %d reviewed good images to the training set", len(extra_good))
    log.info("training on %d good images, holding out %d for calibration", len(train_samples), len(held))

    model, source = create_adtr(mcfg, backbone_weights)
    mean, std = mean_std(preset)
    preprocess = Preprocess(mcfg.size_hw, mean, std, tile=mcfg.tile_hw, overlap=mcfg.tile_overlap)
    t0 = time.perf_counter()
    targets = cache_targets(model, load_inputs((s.path for s in train_samples), preprocess), dev)
    cache_seconds = time.perf_counter() - t0
    log.info("cached targets %s in %.1f s", tuple(targets.shape), cache_seconds)

    recon = model.reconstructor.to(dev)
    module = torch.compile(recon) if (tcfg.compile and dev.type == "cuda") else recon
    stepper = make_step(module, tcfg.lr, tcfg.weight_decay, tcfg.grad_clip, dev, tcfg.cuda_graphs)
    # What every checkpoint of this run says about itself; the weights, epoch and losses change per save.
    start = Checkpoint(
        product=product, preset=preset, backbone=BackboneInfo.of(mcfg, source), normalization=Normalization(mean, std),
        data=_data_info(data, ds.layout, train_samples, held, tcfg.val_fraction), versions=versions(),
        state_dict={}, optimizer={}, epoch=0, loss_history=(),
    )
    if resume:
        start = _resume(resume, start, model, stepper.opt)
    bundle = model_path(home, product)
    t0 = time.perf_counter()
    history = _epochs(model, stepper, targets, tcfg, dev, start, bundle, progress)
    train_seconds = time.perf_counter() - t0
    log.info("trained %d epochs in %.1f s, final loss %.5f -> %s", tcfg.epochs - start.epoch, train_seconds,
             history[-1], bundle)
    return TrainResult(bundle, tcfg.epochs, history[-1], train_seconds, cache_seconds, len(train_samples), len(held))


def _concrete_input_size(preset: Preset, train_samples: list[Sample]) -> Preset:
    """``preset`` with ``model.input_size: auto`` resolved to [H, W] from the training images (with tiling,
    from the tile's size): the checkpoint stores the size chosen here, never 'auto'."""
    mcfg = preset.model
    if mcfg.input_size != "auto":
        return preset
    sizes = [mcfg.tile_hw] if mcfg.tile_hw else image_sizes([s.path for s in train_samples])
    mcfg = resolve_input_size(mcfg, sizes)
    log.info("input_size auto -> %dx%d (W x H) from the training images", mcfg.size_hw[1], mcfg.size_hw[0])
    return replace(preset, model=mcfg)


def _epochs(model: ADTR, stepper: EagerStep, targets: torch.Tensor, tcfg: TrainConfig, dev: torch.device,
            start: Checkpoint, bundle: Path, progress: bool) -> list[float]:
    """Epochs ``start.epoch`` .. ``tcfg.epochs``: set lr, step over shuffled batches, log, checkpoint.

    Returns the loss history, the epochs of ``start`` included.
    """
    history = list(start.loss_history)
    n = len(targets)
    gen = torch.Generator(device="cpu").manual_seed(tcfg.seed)
    for _ in range(start.epoch):  # replay the shuffles already consumed, so a resumed run matches an unbroken one
        torch.randperm(n, generator=gen)
    bar = _progress(range(start.epoch, tcfg.epochs), progress, start.epoch, tcfg.epochs)
    model.reconstructor.train()
    for epoch in bar:
        lr = lr_at(epoch, tcfg.lr, tcfg.epochs, tcfg.warmup_epochs, tcfg.lr_drop_at, tcfg.lr_drop_factor)
        stepper.set_lr(lr)
        order = torch.randperm(n, generator=gen).to(dev)
        total = torch.zeros((), device=dev)
        for s in batches(n, tcfg.batch_size):
            total += stepper.step(targets[order[s]]) * (s.stop - s.start)
        epoch_loss = float(total) / n  # one host sync per epoch
        history.append(epoch_loss)
        if hasattr(bar, "set_postfix"):
            bar.set_postfix(loss=f"{epoch_loss:.4f}", lr=f"{lr:.1e}")
        done = epoch + 1
        if done % tcfg.checkpoint_every == 0 or done == tcfg.epochs:
            ckpt = replace(start, state_dict=_cpu_state(model), optimizer=stepper.opt.state_dict(), epoch=done,
                           loss_history=tuple(history))
            save_checkpoint(bundle.parent / "checkpoints" / f"epoch_{done:05d}.pt", ckpt)
            if done == tcfg.epochs:
                save_checkpoint(bundle, ckpt)
    return history


def _resume(path: str | Path, start: Checkpoint, model: ADTR, opt: torch.optim.Optimizer) -> Checkpoint:
    """Restore the weights and optimizer state of checkpoint ``path``; ``start`` with its epochs and losses."""
    ckpt = load_checkpoint(path)
    _check_resumable(ckpt, start.preset, start.product)
    model.load_state_dict(ckpt.state_dict)
    opt.load_state_dict(ckpt.optimizer)
    log.info("resuming %s from epoch %d", path, ckpt.epoch)
    epochs = start.preset.train.epochs
    if ckpt.epoch >= epochs:
        raise CheckpointError(f"{path} already finished all {epochs} epochs; raise --epochs to continue")
    return replace(start, epoch=ckpt.epoch, loss_history=ckpt.loss_history)


def _data_info(root: str | Path, layout: str, train_samples: list[Sample], held: list[Sample],
               val_fraction: float) -> DataInfo:
    def files(samples: list[Sample]) -> tuple[ImageFile, ...]:
        return tuple(ImageFile(s.path.name, fingerprint(s.path)) for s in samples)

    return DataInfo(str(Path(root).resolve()), layout, files(train_samples), files(held), val_fraction)


def _cpu_state(model: ADTR) -> dict[str, torch.Tensor]:
    return {k: v.detach().to("cpu", copy=True) for k, v in model.state_dict().items()}


def _check_resumable(ckpt: Checkpoint, preset: Preset, product: str) -> None:
    if ckpt.preset.model != preset.model:
        raise CheckpointError(f"{ckpt.path}: its model config differs from the one given; resume with the same config")
    if ckpt.product != product:
        raise CheckpointError(f"{ckpt.path} belongs to product '{ckpt.product}', not '{product}'")


def _progress(it, enabled: bool, start: int, total: int):
    if not enabled:
        return it
    try:
        from tqdm import tqdm
    except ImportError:
        return it
    return tqdm(it, initial=start, total=total, desc="train", unit="epoch", dynamic_ncols=True)

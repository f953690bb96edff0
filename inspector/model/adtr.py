"""ADTR: Anomaly Detection TRansformer (You et al., 2022), with the paper's Table 4 ablation switches.

A frozen CNN gives multi-scale features ``f`` on a stride-16 grid. A 1x1 projection takes them to
``hidden_dim``; a transformer encoder-decoder, whose decoder is fed a learned *auxiliary query
embedding* (one per token), reconstructs them; a 1x1 projection goes back to the feature dims. Trained on
good parts only with MSE(f, f_hat). Anomaly scoring lives in ``scoring.py``.

Ablation switches (config, not forks):
- ``mixer``: ``attention`` (default), ``mlp`` (token-mixing MLP, no attention: "w/o Attn"),
  ``cnn`` (3x3 convolutions in place of attention: "CNN");
- ``query``: learned auxiliary query (default) or, when False, the decoder is fed the encoder's tokens
  ("w/o Query");
- ``target``: reconstruct ``features`` (default) or ``pixels`` (16x16 RGB patches as tokens);
- ``backbone`` and ``multiscale`` (all ``feature_strides`` vs the last one only).

This module imports nothing of training, export, runtime or streaming.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal, NamedTuple

import torch
import torch.nn.functional as F
from torch import nn

from inspector.errors import ConfigError
from inspector.model.backbone import GRID_STRIDE, MultiScaleBackbone, build_backbone
from inspector.model.weights import WeightsSource

Mixer = Literal["attention", "mlp", "cnn"]
Target = Literal["features", "pixels"]
StageResize = Literal["bilinear", "area"]

BACKBONE_CHOICES = (
    "tf_efficientnet_lite0",
    "tf_efficientnet_lite1",
    "tf_efficientnet_lite2",
    "efficientnet_b0",
    "efficientnet_b4",
    "resnet18",
    "resnet34",
)


# Metadata of the fields added after the first checkpoints: the checkpoint stores such a field only when it
# is not at its default, so a model that does not use it is written as those checkpoints were (bundle.py).
_ADDED = {"omit_default": True}


@dataclass(frozen=True)
class ModelConfig:
    """Architecture of one ADTR model. Sizes in pixels unless stated."""

    backbone: str = field(default="tf_efficientnet_lite0", metadata={"choices": BACKBONE_CHOICES})
    # Output strides of the backbone stages to use; each is resized to stride 16 and concatenated.
    feature_strides: tuple[int, ...] = field(default=(2, 4, 8, 16), metadata={"choices_each": (2, 4, 8, 16, 32)})
    multiscale: bool = True  # False: "last layer" ablation, only the last of feature_strides
    # How the finer stages (stride 2, 4, 8) come down to the stride-16 grid: "bilinear" samples a few
    # pixels of each 16x16 footprint (the first presets' way); "area" averages all of them.
    stage_resize: StageResize = field(default="bilinear", metadata=_ADDED)
    # Model input in pixels: an int S (S x S, what every preset before non-square parts had), [H, W], or
    # "auto", which training resolves from the training images (model/sizing.py) and stores as [H, W].
    input_size: int | tuple[int, ...] | Literal["auto"] = field(default=224, metadata={"min": 32, "max": 1024})
    # Tiling for parts much larger than the input (model/tiling.py): tiles of tile_size frame pixels (S or
    # [H, W]; null = none: the whole frame is one input), overlapping by at least tile_overlap px.
    tile_size: int | tuple[int, ...] | None = field(default=None, metadata={"min": 16, "max": 16384, **_ADDED})
    tile_overlap: int = field(default=32, metadata={"min": 0, "max": 8192, **_ADDED})
    hidden_dim: int = field(default=256, metadata={"min": 8, "max": 4096})
    enc_layers: int = field(default=4, metadata={"min": 1, "max": 32})
    dec_layers: int = field(default=4, metadata={"min": 1, "max": 32})
    heads: int = field(default=8, metadata={"min": 1, "max": 64})
    ffn_dim: int = field(default=1024, metadata={"min": 8, "max": 16384})
    dropout: float = field(default=0.1, metadata={"min": 0.0, "max": 0.9})
    mixer: Mixer = "attention"
    query: bool = True
    target: Target = "features"
    # Standardise each target channel with its mean and std over the training set before reconstruction
    # (not in the paper, which reconstructs raw features). Without it the L2 error is dominated by the
    # few channels with the largest raw magnitudes; with it, every channel counts alike.
    standardize: bool = False
    # Scoring: Gaussian smoothing of the upsampled map (sigma in input pixels, 0 = off) and the
    # average-pool window of the image score (default: one token's footprint, 16 px).
    smoothing_sigma: float = field(default=0.0, metadata={"min": 0.0, "max": 64.0})
    pool_size: int = field(default=16, metadata={"min": 1, "max": 512})
    # The stages whose reconstruction error makes the defect map (null: every stage). The image score always
    # uses every stage: a coarse stage (stride 32) sees large, low-contrast defects that the fine ones miss,
    # but blurs the map; so the fine stages draw where. Must be the finest of the used stages.
    map_strides: tuple[int, ...] | None = field(default=None, metadata={"choices_each": (2, 4, 8, 16, 32), **_ADDED})

    def validate(self, source: str = "<config>") -> None:
        size = self.input_size
        if isinstance(size, tuple) and len(size) != 2:
            raise ConfigError(f"{source}: key 'model.input_size' = {list(size)} must be one side S or [H, W], or 'auto'")
        if size != "auto" and any(v % GRID_STRIDE for v in self.size_hw):
            shown = list(size) if isinstance(size, tuple) else size
            raise ConfigError(f"{source}: key 'model.input_size' = {shown} must be a multiple of {GRID_STRIDE}")
        if self.hidden_dim % self.heads:
            raise ConfigError(
                f"{source}: key 'model.hidden_dim' = {self.hidden_dim} must be divisible by 'model.heads' = {self.heads}"
            )
        if not self.feature_strides or any(s not in (2, 4, 8, 16, 32) for s in self.feature_strides):
            raise ConfigError(
                f"{source}: key 'model.feature_strides' = {list(self.feature_strides)}; allowed: a non-empty list of 2, 4, 8, 16, 32"
            )
        if list(self.feature_strides) != sorted(set(self.feature_strides)):
            raise ConfigError(f"{source}: key 'model.feature_strides' must be strictly increasing")
        if isinstance(self.tile_size, tuple) and len(self.tile_size) != 2:
            raise ConfigError(f"{source}: key 'model.tile_size' = {list(self.tile_size)} must be one side S or [H, W]")
        if self.tile_hw is not None and self.tile_overlap >= min(self.tile_hw):
            raise ConfigError(f"{source}: key 'model.tile_overlap' = {self.tile_overlap} must be below the tile's "
                              f"shorter side ({min(self.tile_hw)})")
        self._validate_map_strides(source)
        if size != "auto" and self.pool_size > min(self.size_hw):
            raise ConfigError(f"{source}: key 'model.pool_size' must not exceed the input's shorter side ({min(self.size_hw)})")

    def _validate_map_strides(self, source: str) -> None:
        m = self.map_strides
        if m is None:
            return
        used = tuple(self.used_strides)
        if self.target != "features" or not m or tuple(m) != used[:len(m)]:
            raise ConfigError(f"{source}: key 'model.map_strides' = {list(m)} must be the finest of the used stages "
                              f"{list(used)} (e.g. {list(used[:-1]) or list(used)}), with target: features")

    @property
    def size_hw(self) -> tuple[int, int]:
        """(H, W) of the model input in pixels; ConfigError while ``input_size`` is still 'auto'."""
        size = self.input_size
        if size == "auto":
            raise ConfigError("model.input_size is 'auto': it is resolved from the training images when training "
                              "starts (inspector.model.sizing.auto_input_size); give [H, W] to build a model without them")
        if isinstance(size, tuple):
            return int(size[0]), int(size[1])
        return int(size), int(size)

    @property
    def tile_hw(self) -> tuple[int, int] | None:
        """(H, W) of a tile in frame pixels, or None without tiling."""
        t = self.tile_size
        if t is None:
            return None
        return (int(t[0]), int(t[1])) if isinstance(t, tuple) else (int(t), int(t))

    @property
    def grid_hw(self) -> tuple[int, int]:
        """Token grid (rows, columns): the input size / 16, e.g. 224 x 560 -> 14 x 35."""
        h, w = self.size_hw
        return h // GRID_STRIDE, w // GRID_STRIDE

    @property
    def tokens(self) -> int:
        """Number of tokens, rows x columns of the grid."""
        gh, gw = self.grid_hw
        return gh * gw

    @property
    def used_strides(self) -> tuple[int, ...]:
        """The strides actually used: all of feature_strides, or the last one for the last-layer ablation."""
        return self.feature_strides if self.multiscale else self.feature_strides[-1:]


class ADTROutput(NamedTuple):
    """Reconstruction target and its reconstruction, both ``(B, C, h, w)`` on the token grid."""

    target: torch.Tensor
    reconstruction: torch.Tensor


# --- token mixers -------------------------------------------------------------------------------


def multi_head_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, heads: int,
                         dropout_p: float = 0.0) -> torch.Tensor:
    """Scaled dot-product attention of projected tokens ``q (B, N, d)``, ``k, v (B, M, d)`` over ``heads``
    heads -> ``(B, N, d)``: the one head split and merge (the model's and the fused export operator's)."""
    b, n, d = q.shape

    def split(t: torch.Tensor) -> torch.Tensor:
        return t.view(b, t.shape[1], heads, d // heads).transpose(1, 2)

    # Fused attention kernel (flash / memory-efficient on CUDA); exports to plain ONNX ops.
    y = F.scaled_dot_product_attention(split(q), split(k), split(v), dropout_p=dropout_p)
    return y.transpose(1, 2).reshape(b, n, d)


class Attention(nn.Module):
    """Multi-head attention; the positional embedding is added to queries and keys, not values."""

    def __init__(self, dim: int, heads: int, dropout: float) -> None:
        super().__init__()
        self.heads = heads
        self.q = nn.Linear(dim, dim)
        self.k = nn.Linear(dim, dim)
        self.v = nn.Linear(dim, dim)
        self.out = nn.Linear(dim, dim)
        self.dropout = dropout

    def forward(self, x: torch.Tensor, pos: torch.Tensor, memory: torch.Tensor | None = None) -> torch.Tensor:
        kv = x if memory is None else memory
        return self.out(self.attend(self.q(x + pos), self.k(kv + pos), self.v(kv)))

    def attend(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        """Attention of the projected tokens (:func:`multi_head_attention`).

        One method, so an export can swap it for a fused operator (``inspector.export.ortgraph``) without
        touching the weights.
        """
        return multi_head_attention(q, k, v, self.heads, self.dropout if self.training else 0.0)


class MLPMixer(nn.Module):
    """'w/o Attn': token mixing by an MLP across the token axis (MLP-Mixer style), no attention."""

    def __init__(self, dim: int, tokens: int, dropout: float) -> None:
        super().__init__()
        self.mix = nn.Sequential(nn.Linear(tokens, tokens), nn.GELU(), nn.Dropout(dropout), nn.Linear(tokens, tokens))

    def forward(self, x: torch.Tensor, pos: torch.Tensor, memory: torch.Tensor | None = None) -> torch.Tensor:
        src = x + pos if memory is None else x + memory + pos
        return self.mix(src.transpose(1, 2)).transpose(1, 2)


class ConvMixer(nn.Module):
    """'CNN': two 3x3 convolutions over the token grid in place of attention (similar parameter count)."""

    def __init__(self, dim: int, grid: tuple[int, int], dropout: float) -> None:
        super().__init__()
        self.grid = grid
        self.conv = nn.Sequential(
            nn.Conv2d(dim, dim, 3, padding=1), nn.GELU(), nn.Dropout(dropout), nn.Conv2d(dim, dim, 3, padding=1)
        )

    def forward(self, x: torch.Tensor, pos: torch.Tensor, memory: torch.Tensor | None = None) -> torch.Tensor:
        src = x + pos if memory is None else x + memory + pos
        b, n, d = src.shape
        g = src.transpose(1, 2).reshape(b, d, *self.grid)
        return self.conv(g).flatten(2).transpose(1, 2)


def _mixer(kind: str, dim: int, heads: int, grid: tuple[int, int], dropout: float) -> nn.Module:
    if kind == "attention":
        return Attention(dim, heads, dropout)
    if kind == "mlp":
        return MLPMixer(dim, grid[0] * grid[1], dropout)
    if kind == "cnn":
        return ConvMixer(dim, grid, dropout)
    raise ConfigError(f"unknown mixer {kind!r}; allowed: attention, mlp, cnn")


# --- transformer layers (post-norm, as DETR / UniAD) ---------------------------------------------


class FeedForward(nn.Module):
    def __init__(self, dim: int, hidden: int, dropout: float) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.Linear(dim, hidden), nn.ReLU(), nn.Dropout(dropout), nn.Linear(hidden, dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


class EncoderLayer(nn.Module):
    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        d = cfg.hidden_dim
        self.mix = _mixer(cfg.mixer, d, cfg.heads, cfg.grid_hw, cfg.dropout)
        self.ffn = FeedForward(d, cfg.ffn_dim, cfg.dropout)
        self.norm1, self.norm2 = nn.LayerNorm(d), nn.LayerNorm(d)
        self.drop = nn.Dropout(cfg.dropout)

    def forward(self, x: torch.Tensor, pos: torch.Tensor) -> torch.Tensor:
        x = self.norm1(x + self.drop(self.mix(x, pos)))
        return self.norm2(x + self.drop(self.ffn(x)))


class DecoderLayer(nn.Module):
    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        d = cfg.hidden_dim
        self.self_mix = _mixer(cfg.mixer, d, cfg.heads, cfg.grid_hw, cfg.dropout)
        self.cross_mix = _mixer(cfg.mixer, d, cfg.heads, cfg.grid_hw, cfg.dropout)
        self.ffn = FeedForward(d, cfg.ffn_dim, cfg.dropout)
        self.norm1, self.norm2, self.norm3 = nn.LayerNorm(d), nn.LayerNorm(d), nn.LayerNorm(d)
        self.drop = nn.Dropout(cfg.dropout)

    def forward(self, x: torch.Tensor, memory: torch.Tensor, pos: torch.Tensor) -> torch.Tensor:
        x = self.norm1(x + self.drop(self.self_mix(x, pos)))
        x = self.norm2(x + self.drop(self.cross_mix(x, pos, memory)))
        return self.norm3(x + self.drop(self.ffn(x)))


class Reconstructor(nn.Module):
    """The ADTR transformer: ``(B, C, h, w)`` -> reconstruction ``(B, C, h, w)``.

    ``(h, w) = cfg.grid_hw``; C is the backbone's concatenated channel count (or 768 for pixel patches).
    """

    def __init__(self, in_channels: int, cfg: ModelConfig) -> None:
        super().__init__()
        d, n = cfg.hidden_dim, cfg.tokens
        self.use_query = cfg.query
        self.input_proj = nn.Conv2d(in_channels, d, 1)
        self.pos_embed = nn.Parameter(torch.zeros(1, n, d))
        self.query_embed = nn.Parameter(torch.zeros(1, n, d)) if cfg.query else None
        self.encoder = nn.ModuleList(EncoderLayer(cfg) for _ in range(cfg.enc_layers))
        self.decoder = nn.ModuleList(DecoderLayer(cfg) for _ in range(cfg.dec_layers))
        self.output_proj = nn.Conv2d(d, in_channels, 1)
        nn.init.trunc_normal_(self.pos_embed, std=0.02)
        if self.query_embed is not None:
            nn.init.trunc_normal_(self.query_embed, std=0.02)

    def forward(self, f: torch.Tensor) -> torch.Tensor:
        b, _, h, w = f.shape
        x = self.input_proj(f).flatten(2).transpose(1, 2)  # (B, N, d)
        pos = self.pos_embed
        for layer in self.encoder:
            x = layer(x, pos)
        memory = x
        q = self.query_embed.expand(b, -1, -1) if self.query_embed is not None else memory
        for layer in self.decoder:
            q = layer(q, memory, pos)
        out = q.transpose(1, 2).reshape(b, -1, h, w)
        return self.output_proj(out)


class PixelPatches(nn.Module):
    """Target for the 'pixels' ablation: 16x16 RGB patches as 768-channel tokens, ``(B, 768, h, w)``."""

    out_channels = 3 * GRID_STRIDE * GRID_STRIDE

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.pixel_unshuffle(x, GRID_STRIDE)


class ADTR(nn.Module):
    """Feature extractor (frozen) + reconstructor. ``forward`` always returns :class:`ADTROutput`."""

    def __init__(self, cfg: ModelConfig, extractor: MultiScaleBackbone | PixelPatches) -> None:
        super().__init__()
        self.cfg = cfg
        self.extractor = extractor
        self.reconstructor = Reconstructor(extractor.out_channels, cfg)
        c = extractor.out_channels
        # The leading target channels that make the defect map (cfg.map_strides); None: all of them (also when
        # map_strides names every used stage, so the scorer does not take the same norm twice).
        self.map_channels: int | None = None
        if cfg.map_strides is not None and isinstance(extractor, MultiScaleBackbone):
            n = sum(extractor.stage_channels[:len(cfg.map_strides)])
            self.map_channels = n if n < extractor.out_channels else None
        # Per-channel target statistics (identity until set_target_stats); saved with the weights.
        self.register_buffer("target_mean", torch.zeros(1, c, 1, 1))
        self.register_buffer("target_std", torch.ones(1, c, 1, 1))

    @torch.no_grad()
    def set_target_stats(self, raw_targets: torch.Tensor) -> None:
        """Fit the standardisation to raw targets ``(N, C, h, w)`` of the training set (if enabled)."""
        if not self.cfg.standardize:
            return
        self.target_mean.copy_(raw_targets.mean(dim=(0, 2, 3), keepdim=True))
        self.target_std.copy_(raw_targets.std(dim=(0, 2, 3), keepdim=True).clamp_min(1e-6))

    def standardize(self, raw: torch.Tensor) -> torch.Tensor:
        """Raw targets -> the targets the reconstructor learns (identity when standardize is off)."""
        if not self.cfg.standardize:
            return raw
        return (raw - self.target_mean) / self.target_std

    def extract(self, images: torch.Tensor) -> torch.Tensor:
        """Normalised images ``(B, 3, H, W)`` -> reconstruction target ``(B, C, H/16, W/16)``."""
        with torch.no_grad():
            return self.standardize(self.extractor(images))

    def forward(self, images: torch.Tensor) -> ADTROutput:
        f = self.extract(images)
        return ADTROutput(f, self.reconstructor(f))


# --- public constructor ------------------------------------------------------------------------


def create_adtr(cfg: ModelConfig, backbone_weights: str | None = None) -> tuple[ADTR, WeightsSource | None]:
    """Build ADTR for ``cfg`` with its pretrained frozen extractor.

    Returns the model and where its backbone weights came from (None for the pixel target, which has no
    backbone). Raises WeightsError when no pretrained weights are available.
    """
    if cfg.target == "pixels":
        return ADTR(cfg, PixelPatches()), None
    extractor, source = build_backbone(cfg.backbone, cfg.used_strides, backbone_weights, cfg.stage_resize)
    return ADTR(cfg, extractor), source

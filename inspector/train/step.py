"""One optimisation step of ADTR: MSE, backward, clip, AdamW — eager, or replayed from a CUDA graph.

Small-batch training of a small transformer is launch-bound on a big GPU: an eager step is hundreds of
tiny kernels. ``GraphedStep`` captures the whole step (forward, backward, gradient clipping, fused AdamW
with a device-tensor learning rate) once per batch shape and replays it, so a step costs one launch.

The CUDA-graph path needs a CUDA device; it was written against PyTorch's documented whole-network capture
recipe and has NOT been run on a GPU in this repository's CI (which has none). ``EagerStep`` is the CPU path
and the reference the graphed step must match.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class EagerStep:
    """The reference step: ``step(f)`` returns the (detached) loss of batch ``f`` ``(B, C, h, w)``."""

    def __init__(self, module: nn.Module, opt: torch.optim.Optimizer, grad_clip: float) -> None:
        self.module, self.opt, self.grad_clip = module, opt, grad_clip

    def set_lr(self, lr: float) -> None:
        for group in self.opt.param_groups:
            group["lr"] = lr

    def _body(self, f: torch.Tensor) -> torch.Tensor:
        loss = F.mse_loss(self.module(f), f)
        loss.backward()
        if self.grad_clip > 0:
            torch.nn.utils.clip_grad_norm_(self.module.parameters(), self.grad_clip, foreach=True)
        self.opt.step()
        return loss.detach()

    def step(self, f: torch.Tensor) -> torch.Tensor:
        self.opt.zero_grad(set_to_none=True)
        return self._body(f)


class GraphedStep(EagerStep):
    """Whole-step CUDA-graph replay, one graph per batch shape (the last, smaller batch gets its own).

    The first ``warmup`` steps run eagerly on a side stream (they are real training steps); this
    initialises the optimizer state and lets cuDNN/cuBLAS pick kernels before capture.
    """

    def __init__(self, module: nn.Module, opt: torch.optim.Optimizer, grad_clip: float, warmup: int = 3) -> None:
        super().__init__(module, opt, grad_clip)
        self.warmup = warmup
        self.calls = 0
        self.graphs: dict[tuple[int, ...], tuple[torch.cuda.CUDAGraph, torch.Tensor, torch.Tensor]] = {}

    def set_lr(self, lr: float) -> None:
        # In place: the captured graph reads this device tensor, so no re-capture is needed. A float lr
        # (an optimizer state loaded from a CPU checkpoint) becomes a device tensor before any capture.
        for group in self.opt.param_groups:
            if isinstance(group["lr"], torch.Tensor):
                group["lr"].fill_(lr)
            elif self.graphs:
                raise RuntimeError("optimizer lr was replaced after CUDA-graph capture")
            else:
                group["lr"] = torch.tensor(lr, device=group["params"][0].device)

    def step(self, f: torch.Tensor) -> torch.Tensor:
        if self.calls < self.warmup:
            self.calls += 1
            side = torch.cuda.Stream()
            side.wait_stream(torch.cuda.current_stream())
            with torch.cuda.stream(side):
                loss = super().step(f)
            torch.cuda.current_stream().wait_stream(side)
            return loss
        key = tuple(f.shape)
        if key not in self.graphs:
            static_in = f.clone()
            graph = torch.cuda.CUDAGraph()
            self.opt.zero_grad(set_to_none=True)
            with torch.cuda.graph(graph):
                static_loss = self._body(static_in)
            self.graphs[key] = (graph, static_in, static_loss)
        graph, static_in, static_loss = self.graphs[key]
        static_in.copy_(f)
        graph.replay()
        return static_loss.clone()


def make_step(module: nn.Module, lr: float, weight_decay: float, grad_clip: float, device: torch.device,
              cuda_graphs: bool) -> EagerStep:
    """AdamW plus the right step for the device: graphed fused AdamW on CUDA, plain AdamW on the CPU."""
    params = [p for p in module.parameters() if p.requires_grad]
    if device.type == "cuda" and cuda_graphs:
        opt = torch.optim.AdamW(params, lr=torch.tensor(lr, device=device), weight_decay=weight_decay,
                                fused=True, capturable=True)
        return GraphedStep(module, opt, grad_clip)
    kwargs = {"fused": True} if device.type == "cuda" else {}
    return EagerStep(module, torch.optim.AdamW(params, lr=lr, weight_decay=weight_decay, **kwargs), grad_clip)

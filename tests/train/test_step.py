"""The optimisation step: the CUDA-graph replay must train exactly like the eager reference step."""

from __future__ import annotations

import copy

import pytest
import torch

from inspector.model.adtr import ModelConfig, Reconstructor
from inspector.train.step import EagerStep, GraphedStep, make_step

CFG = ModelConfig(input_size=64, hidden_dim=32, enc_layers=1, dec_layers=1, heads=2, ffn_dim=64, dropout=0.0)


def _batches(n: int, device: str) -> list[torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    return [torch.randn(4, 24, CFG.grid, CFG.grid, generator=g).to(device) for _ in range(n)]


def test_eager_step_lowers_the_loss_on_the_cpu():
    torch.manual_seed(0)
    step = make_step(Reconstructor(24, CFG), lr=3e-3, weight_decay=0.0, grad_clip=1.0, device=torch.device("cpu"),
                     cuda_graphs=True)
    assert type(step) is EagerStep  # no CUDA graphs on the CPU, whatever the flag says
    data = _batches(2, "cpu")
    first = [float(step.step(b)) for b in data]
    for _ in range(30):
        for b in data:
            step.step(b)
    assert sum(float(step.step(b)) for b in data) < 0.5 * sum(first)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU (run deploy/gpu_check.sh)")
def test_graphed_step_matches_the_eager_step_on_cuda():
    torch.manual_seed(0)
    eager_model = Reconstructor(24, CFG).cuda()
    graphed_model = copy.deepcopy(eager_model)
    dev = torch.device("cuda")
    eager = EagerStep(eager_model, torch.optim.AdamW(eager_model.parameters(), lr=1e-3, fused=True), 0.1)
    graphed = make_step(graphed_model, 1e-3, 1e-2, 0.1, dev, cuda_graphs=True)
    eager.opt.param_groups[0]["weight_decay"] = 1e-2
    assert isinstance(graphed, GraphedStep)
    data = _batches(3, "cuda") + [torch.randn(2, 24, CFG.grid, CFG.grid, device=dev)]  # a smaller last batch
    for epoch in range(6):  # warm-up steps, capture, replay; lr changed in place between epochs
        lr = 1e-3 if epoch < 4 else 1e-4
        eager.set_lr(lr)
        graphed.set_lr(lr)
        for b in data:
            le, lg = eager.step(b), graphed.step(b)
            torch.testing.assert_close(lg, le, rtol=1e-4, atol=1e-6)
    for pe, pg in zip(eager_model.parameters(), graphed_model.parameters(), strict=True):
        torch.testing.assert_close(pg, pe, rtol=1e-3, atol=1e-5)

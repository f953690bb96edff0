"""The torch backend: the same function as the exported graph; refuses a checkpoint that is not the export's.

The CUDA tests (fp16 + CUDA graphs + pipelined copies) are marked ``gpu`` and skip without one; deploy/gpu_check.sh
runs them on a GPU machine.
"""

from __future__ import annotations

import shutil

import numpy as np
import pytest
import torch

from inspector.device import resolve_device
from inspector.errors import BackendError
from inspector.evaluate.metrics import auroc
from inspector.runtime import open_backend
from inspector.runtime.torch_backend import TorchBackend, choose_precision
from tests.export_support import exported_home, labelled_frames, private_copy
from tests.manifest_support import fp16_decisions, make_manifest

needs_gpu = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU (run deploy/gpu_check.sh)")


@pytest.fixture(scope="module")
def home(trained, tmp_path_factory):
    return exported_home(trained, tmp_path_factory.getbasetemp())


def test_cpu_eager_matches_onnxruntime(home, trained):
    frames, _ = labelled_frames(trained["data"])
    with open_backend("torch", home, "cable", device="cpu") as t, \
            open_backend("onnxruntime", home, "cable", device="cpu") as o:
        rt, ro = t.infer(frames[:4]), o.infer(frames[:4])
        d = t.describe()
    assert d["device"] == "cpu" and d["precision"] == "fp32" and d["mode"] == "eager"
    span = rt.anomaly_map.max() - rt.anomaly_map.min()
    assert np.abs(rt.anomaly_map - ro.anomaly_map).max() <= 1e-3 * span
    assert rt.score.dtype == np.float32 and rt.anomaly_map.shape == (4, 64, 64)


def test_retrained_checkpoint_is_refused(home, trained, tmp_path):
    copy = private_copy(home, tmp_path / "h")
    ckpt = copy / "engines" / "cable" / "model.pt"
    shutil.copy2(trained["result"].model_path.parent / "checkpoints" / "epoch_00010.pt", ckpt)
    with pytest.raises(BackendError, match="run `inspector export --product cable` again"):
        open_backend("torch", copy, "cable", device="cpu")


def test_device_and_precision_rules(home):
    assert resolve_device("cpu", BackendError).type == "cpu"
    assert choose_precision("auto", torch.device("cpu")) == "fp32"
    assert choose_precision("auto", torch.device("cuda")) == "fp16"
    with pytest.raises(BackendError, match="CUDA only"):
        choose_precision("fp16", torch.device("cpu"))
    with pytest.raises(BackendError, match="int8 is an onnxruntime CPU graph"):
        choose_precision("int8", torch.device("cpu"))
    with pytest.raises(BackendError, match="unknown device"):
        resolve_device("npu", BackendError)
    if not torch.cuda.is_available():
        with pytest.raises(BackendError, match="sees no CUDA GPU"):
            resolve_device("cuda", BackendError)
        with pytest.raises(BackendError, match="sees no CUDA GPU"):
            TorchBackend(_bundle(home), device="cuda")
    assert make_manifest(fp16_decisions=fp16_decisions("fp16")).layernorm_fp32 is False
    assert make_manifest(fp16_decisions=None).layernorm_fp32 is True  # no measurement: the safe side


@pytest.mark.gpu
@needs_gpu
def test_cuda_fp16_matches_cpu_fp32(home, trained):
    frames, labels = labelled_frames(trained["data"])
    with TorchBackend(_bundle(home), device="cuda", precision="fp16") as g, \
            TorchBackend(_bundle(home), device="cpu", precision="fp32") as c:
        rg = np.concatenate([g.infer(frames[i:i + 4]).score for i in range(0, len(frames), 4)])
        rc = np.concatenate([c.infer(frames[i:i + 4]).score for i in range(0, len(frames), 4)])
        mg, mc = g.infer(frames[:4]).anomaly_map, c.infer(frames[:4]).anomaly_map
    assert abs(auroc(labels, rg) - auroc(labels, rc)) <= 0.02
    assert np.abs(mg - mc).max() <= 0.05 * (mc.max() - mc.min())


@pytest.mark.gpu
@needs_gpu
@pytest.mark.parametrize("graphs", [True, False])
def test_cuda_pipeline_batches_and_pinned_frames(home, trained, graphs):
    frames, _ = labelled_frames(trained["data"])
    with TorchBackend(_bundle(home), device="cuda", precision="fp32", graphs=graphs, chunk=2) as g:
        whole = g.infer(frames[:4])  # two chunks, both buffers
        single = np.concatenate([g.infer(frames[i:i + 1]).score for i in range(4)])
        pinned = torch.empty((3, 64, 64, 3), dtype=torch.uint8, pin_memory=True).numpy()
        pinned[...] = frames[:3]
        r3 = g.infer(pinned)  # odd batch: a padded bucket
    np.testing.assert_allclose(whole.score, single, rtol=1e-3, atol=1e-4)
    np.testing.assert_allclose(r3.score, whole.score[:3], rtol=1e-3, atol=1e-4)


def _bundle(home):
    from inspector.runtime.common import open_bundle

    return open_bundle(home, "cable")

"""TensorRT build decisions (pure) and the builder shell run against a fake tensorrt module.

TensorRT itself never runs here; what is checked: version rules for 10.x and 11.x, plan naming, profile
shapes, I/O names, the manifest entry, the timing cache on disk, and the errors without TensorRT or a GPU.
"""

from __future__ import annotations

import sys

import pytest

from inspector.errors import BackendError
from inspector.export import tensorrt_build as tb
from inspector.files import sha256_file
from inspector.manifest import OnnxEntry, load_manifest
from tests.export_support import exported_home, private_copy
from tests.manifest_support import fp16_decisions, make_manifest
from tests.runtime import fake_tensorrt


@pytest.fixture(scope="module")
def home(trained, tmp_path_factory):
    return exported_home(trained, tmp_path_factory.getbasetemp())


def _manifest(fp16=True, layernorm="fp32"):
    if not fp16:
        return make_manifest("cable")
    onnx = {"fp32": OnnxEntry("model.onnx", "a" * 64), "fp16": OnnxEntry("model.fp16.onnx", "b" * 64)}
    return make_manifest("cable", onnx=onnx, fp16_decisions=fp16_decisions(layernorm))


def test_plan_file_naming():
    assert tb.gpu_slug("NVIDIA H200") == "nvidia-h200"
    assert tb.gpu_slug("NVIDIA GeForce RTX 4090") == "nvidia-geforce-rtx-4090"
    assert tb.gpu_slug("Orin (nvgpu)") == "orin-nvgpu"
    assert tb.plan_filename("NVIDIA H200", "9.0", "10.13.0.35") == "nvidia-h200-sm90-trt10.13.0.35.plan"
    assert tb.plan_filename("Orin (nvgpu)", "8.7", "10.3.0") == "orin-nvgpu-sm87-trt10.3.0.plan"


def test_version_parsing():
    assert tb.parse_version("10.13.0.35") == (10, 13, 0, 35)
    assert tb.parse_version("11.0.0b1") == (11, 0, 0)
    with pytest.raises(BackendError):
        tb.parse_version("unknown")


def test_profile_covers_batch_one_to_max_at_the_fixed_frame():
    assert tb.profile_shapes((1080, 1920), 32) == ((1, 1080, 1920, 3), (32, 1080, 1920, 3), (32, 1080, 1920, 3))
    assert tb.profile_shapes((64, 80), 8, opt_batch=2)[1] == (2, 64, 80, 3)
    with pytest.raises(BackendError):
        tb.profile_shapes((64, 64), 8, opt_batch=9)
    with pytest.raises(BackendError):
        tb.profile_shapes((64, 64), 0)


def test_recipe_tensorrt_11_is_strongly_typed_from_the_fp16_onnx():
    r = tb.build_recipe("11.0.0", _manifest())
    assert (r.onnx_precision, r.strongly_typed, r.fp16_flag, r.pin_layernorm_fp32) == ("fp16", True, False, False)
    with pytest.raises(BackendError, match="--fp16"):
        tb.build_recipe("11.1.0", _manifest(fp16=False))
    with pytest.raises(BackendError, match="only strongly typed"):
        tb.build_recipe("11.0.0", _manifest(), strongly_typed=False)
    assert tb.build_recipe("11.0.0", _manifest(fp16=False), precision="fp32").onnx_precision == "fp32"


def test_recipe_tensorrt_10_uses_the_fp16_flag_and_pins_layernorm_when_measured_risky():
    r = tb.build_recipe("10.13.0.35", _manifest(layernorm="fp32"))
    assert (r.onnx_precision, r.strongly_typed, r.fp16_flag, r.pin_layernorm_fp32) == ("fp32", False, True, True)
    assert not tb.build_recipe("10.3.0", _manifest(layernorm="fp16")).pin_layernorm_fp32
    assert tb.build_recipe("10.3.0", _manifest(fp16=False)).pin_layernorm_fp32  # not measured: float32
    typed = tb.build_recipe("10.13.0", _manifest(), strongly_typed=True)
    assert (typed.onnx_precision, typed.strongly_typed, typed.fp16_flag) == ("fp16", True, False)
    assert tb.build_recipe("10.13.0", _manifest(), precision="fp32") == tb.BuildRecipe("fp32", "fp32", False, False, False)
    with pytest.raises(BackendError, match="too old"):
        tb.build_recipe("8.6.1", _manifest())


def test_network_io_names_are_the_result_type():
    tb.check_network_io(["frames"], ["anomaly_map", "score"])
    with pytest.raises(BackendError, match="expected"):
        tb.check_network_io(["input"], ["score", "anomaly_map"])


def test_without_tensorrt_the_error_names_what_works(monkeypatch):
    monkeypatch.setitem(sys.modules, "tensorrt", None)  # import tensorrt -> ImportError
    with pytest.raises(BackendError, match="TensorRT is not installed.*torch backend.*onnxruntime"):
        tb.import_tensorrt()


def test_without_a_gpu_the_error_names_what_works(monkeypatch):
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(BackendError, match="needs an NVIDIA GPU.*onnxruntime"):
        tb.gpu_identity()


@pytest.mark.parametrize("version", ["10.13.0.35", "11.0.0"])
def test_build_engine_against_fake_tensorrt(home, tmp_path, monkeypatch, version):
    copy = private_copy(home, tmp_path / "h")
    monkeypatch.setitem(sys.modules, "tensorrt", fake_tensorrt.module(version))
    monkeypatch.setattr(tb, "gpu_identity", lambda index=0: ("NVIDIA H200", "9.0"))
    entry = tb.build_engine(copy, "cable", workspace_mib=512, max_batch=4, opt_batch=2)
    builder = fake_tensorrt.Builder.last
    bundle = copy / "engines" / "cable"
    plan = bundle / f"nvidia-h200-sm90-trt{version}.plan"
    assert entry.plan == plan.name and entry.sha256 == sha256_file(plan)
    assert builder.config.pools[fake_tensorrt.MemoryPoolType.WORKSPACE] == 512 << 20
    assert builder.config.profiles[0].shapes["frames"] == ((1, 64, 64, 3), (2, 64, 64, 3), (4, 64, 64, 3))
    manifest = load_manifest(bundle)
    if version.startswith("11"):
        assert builder.network.flags == 1 << 5 and not builder.config.flags
        assert entry.onnx == "model.fp16.onnx" and entry.onnx_sha256 == manifest.onnx["fp16"].sha256
    else:
        assert builder.network.flags == 0 and fake_tensorrt.BuilderFlag.FP16 in builder.config.flags
        assert entry.onnx == "model.onnx"
        pinned = manifest.fp16_decisions.layernorm == "fp32"
        assert entry.pin_layernorm_fp32 is pinned
        norms = [la for la in builder.network.layers if la.type == fake_tensorrt.LayerType.NORMALIZATION]
        assert norms and all((la.precision == fake_tensorrt.DataType.FLOAT) is pinned for la in norms)
    assert manifest.engines == (entry,)
    cache = bundle.parent / ".timing" / (plan.stem + ".cache")
    assert cache.read_bytes() == b"+timing" and entry.timing_cache == f"../.timing/{plan.stem}.cache"
    # A rebuild starts from the cache on disk and replaces the entry instead of adding one.
    tb.build_engine(copy, "cable", workspace_mib=512, max_batch=4)
    assert fake_tensorrt.Builder.last.config.created_cache_from == b"+timing"
    assert len(load_manifest(bundle).engines) == 1


def test_build_refuses_a_batch_beyond_the_export(home, tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "tensorrt", fake_tensorrt.module("10.13.0"))
    monkeypatch.setattr(tb, "gpu_identity", lambda index=0: ("NVIDIA H200", "9.0"))
    with pytest.raises(BackendError, match="export again with --max-batch 64"):
        tb.build_engine(home, "cable", max_batch=64)

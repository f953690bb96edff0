"""The offline Lite weights are real ImageNet weights, loaded strictly; missing weights are an error."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from inspector.errors import WeightsError
from inspector.model import weights as W

skimage_data = pytest.importorskip("skimage.data", reason="scikit-image (the [dev] extra) provides the test photos")


def _classify(model: torch.nn.Module, rgb: np.ndarray) -> int:
    x = torch.from_numpy(rgb).permute(2, 0, 1)[None].float() / 255
    x = F.interpolate(x, size=(224, 224), mode="bilinear", align_corners=False)
    mean, std = W.normalization("tf_efficientnet_lite0")
    assert mean == (0.5, 0.5, 0.5) and std == (0.5, 0.5, 0.5)  # what this model was trained with
    x = (x - 0.5) / 0.5
    with torch.no_grad():
        return int(model(x).argmax(-1))


def test_lite0_weights_predict_imagenet_classes():
    model = W.pretrained_classifier("tf_efficientnet_lite0")
    assert _classify(model, skimage_data.chelsea()) == 285  # Egyptian cat
    assert _classify(model, skimage_data.coffee()) == 967  # espresso


def test_lite0_key_map_is_complete_and_one_to_one():
    import timm

    src = W.resolve("tf_efficientnet_lite0", None)
    assert src.kind == "lite-package" and src.path.is_file()
    mapped = W.classifier_state_dict(src)
    target = timm.create_model("tf_efficientnet_lite0", pretrained=False).state_dict()
    assert set(mapped) == set(target)
    assert all(mapped[k].shape == target[k].shape for k in target)


def test_load_checked_refuses_missing_and_misshaped_keys():
    import timm

    model = timm.create_model("tf_efficientnet_lite0", pretrained=False)
    state = W.classifier_state_dict(W.resolve("tf_efficientnet_lite0", None))
    partial = dict(state)
    partial.pop("conv_stem.weight")
    with pytest.raises(WeightsError, match="1 missing"):
        W.load_checked(model, partial, "test")
    bad = dict(state)
    bad["classifier.weight"] = torch.zeros(10, 1280)
    with pytest.raises(WeightsError, match="shape mismatch"):
        W.load_checked(model, bad, "test")


def test_wrong_file_is_an_error(tmp_path):
    p = tmp_path / "junk.pth"
    p.write_bytes(b"not a checkpoint")
    with pytest.raises(WeightsError, match="junk.pth"):
        W.pretrained_classifier("tf_efficientnet_lite0", p)
    with pytest.raises(WeightsError, match="does not exist"):
        W.resolve("resnet18", tmp_path / "missing.pth")


def test_no_weights_offline_is_an_error_not_random_init(monkeypatch):
    # Offline, timm's hub download must fail, and that failure must surface as WeightsError.
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(WeightsError, match="Refusing to use random weights"):
        W.pretrained_classifier("resnet18")


def test_unknown_backbone():
    with pytest.raises(WeightsError, match="unknown backbone"):
        W.resolve("vgg11", None)


def test_local_file_in_timm_layout_loads(tmp_path):
    import timm

    from inspector.model.backbone import build_backbone

    net = timm.create_model("resnet18", pretrained=False)
    path = tmp_path / "r18.pth"
    torch.save(net.state_dict(), path)
    bb, src = build_backbone("resnet18", (8, 16), path)
    assert src.kind == "local-file"
    # The features model holds the same tensors as the file.
    assert torch.equal(bb.net.state_dict()["conv1.weight"], net.state_dict()["conv1.weight"])

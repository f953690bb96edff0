"""A real, calibrated tiny product on disk and a daemon loader that serves it without an ONNX export.

``calibrated_home`` copies the session's tiny trained model into a private home, writes its manifest and
calibrates it (conformal, target FRR 0.02) on the 8 held-out good images plus 60 unseen synthetic ones, with
the real model (:class:`tests.calibration_support.TorchFrames`). ``TorchLoader`` is a ProductLoader giving
the daemon that model and the real calibration record (refused for another model, as BundleLoader does).
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

from inspector.bundle import bundle_dir, load_checkpoint, model_path
from inspector.calibrate.record import CalibrationRecord, load_calibration
from inspector.stream.product import Product

from .calibration_support import TorchFrames, copy_home, write_manifest

FRAME_HW = (64, 64)


_CACHE: dict[str, Path] = {}


def calibrated_home(trained: dict, dst: Path, extra_good: int = 60) -> tuple[Path, CalibrationRecord]:
    """(home, calibration record) of a private copy of the tiny model, calibrated as said above.

    Calibrated once per session; each caller gets its own copy (``dst/home``, with the extra good images in
    ``dst/extra/cable``), which it may change (reviews, new calibrations)."""
    import shutil

    if "root" not in _CACHE:
        from inspector.calibrate.run import Policy, calibrate
        from inspector.data.synthetic import write_product

        root = Path(trained["home"]).parent / "calibrated-product"
        home = copy_home(Path(trained["home"]), root / "home")
        write_manifest(bundle_dir(home, "cable"), load_checkpoint(model_path(home, "cable")).sha256)
        extra = write_product(root / "extra" / "cable", n_train=extra_good, n_test_good=0, n_test_per_defect=0,
                              size=64, seed=7)
        calibrate("cable", home, data=extra, policy=Policy(target_frr=0.02),
                  backend=TorchFrames(model_path(home, "cable")), write_report=False)
        _CACHE["root"] = root
    for part in ("home", "extra"):
        shutil.copytree(_CACHE["root"] / part, dst / part)
    return dst / "home", load_calibration(dst / "home", "cable")


class TorchLoader:
    """Products of ``home`` served by the real tiny model in torch (no export needed)."""

    def __init__(self, home: Path) -> None:
        self.home = home

    def load(self, name: str) -> Product:
        from inspector.manifest import load_manifest

        manifest = load_manifest(bundle_dir(self.home, name))
        cal = load_calibration(self.home, name, manifest)
        return Product(name, TorchFrames(model_path(self.home, name), FRAME_HW), cal, manifest.model_sha, None,
                       FRAME_HW, manifest)

    def reload_calibration(self, product: Product) -> Product:
        return dataclasses.replace(product, calibration=load_calibration(self.home, product.name, product.manifest))

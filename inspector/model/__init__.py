"""The ADTR model: frozen multi-scale backbone, transformer reconstructor, scoring. Pure torch."""

from inspector.model.adtr import ADTR, ModelConfig, create_adtr
from inspector.model.graph import InspectionModel
from inspector.model.preprocess import Preprocess
from inspector.model.scoring import AnomalyScorer

__all__ = ["ADTR", "AnomalyScorer", "InspectionModel", "ModelConfig", "Preprocess", "create_adtr"]

"""inspector: factory-line visual inspection with ADTR (Anomaly Detection Transformer)."""

__version__ = "0.1.0"

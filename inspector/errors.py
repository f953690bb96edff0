"""One family of exceptions. Every message says what was expected and where."""


class InspectorError(Exception):
    """Base of every error inspector raises on purpose."""


class ConfigError(InspectorError):
    """A configuration key, type or value is invalid (names the key, the file and what is allowed)."""


class DataError(InspectorError):
    """A dataset path, layout or image is missing, unreadable or of the wrong shape."""


class WeightsError(InspectorError):
    """Pretrained weights are missing or do not match the architecture."""


class CheckpointError(InspectorError):
    """A checkpoint or product bundle is missing, corrupt or incompatible."""


class ExportError(InspectorError):
    """ONNX export or verification failed."""


class BackendError(InspectorError):
    """An inference backend is unavailable or failed (names what is missing and what would work)."""


class CalibrationError(InspectorError):
    """A calibration cannot be made, or does not belong to this model."""


class DecisionError(InspectorError):
    """A frame's score or anomaly map cannot be decided on (NaN, infinity, wrong shape)."""


class SourceError(InspectorError):
    """A camera or frame source cannot be opened or has died."""


class ProtocolError(InspectorError):
    """A ZeroMQ message is malformed."""

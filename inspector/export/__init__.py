"""Making a product, step 4: the serving graph as ONNX files and TensorRT plans.

The defaults and choices of ``inspector export`` and ``inspector build`` are stated here, once: the CLI
builds its parser from them without importing torch.
"""

from inspector.manifest import PRECISIONS

DEFAULT_OPSET = 18
MIN_OPSET = 17  # LayerNormalization, which TensorRT maps to its normalisation layer
DEFAULT_MAX_BATCH = 32
LAYERNORM_CHOICES = ("auto", *PRECISIONS)  # LayerNorm in the fp16 graph: measured (auto), or forced
DEFAULT_WORKSPACE_MIB = 4096  # TensorRT builder workspace

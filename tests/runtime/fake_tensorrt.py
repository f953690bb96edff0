"""A stand-in for the ``tensorrt`` module: records what the builder code asks of TensorRT.

Only the calls ``inspector.export.tensorrt_build`` makes exist. The ONNX "parser" reads the real ONNX
file's input and output names, so the I/O checks run on what the export wrote.
"""

from __future__ import annotations

import enum
import types
from dataclasses import dataclass, field

import onnx


class NetworkDefinitionCreationFlag(enum.IntEnum):
    STRONGLY_TYPED = 5


class BuilderFlag(enum.Enum):
    FP16 = "FP16"
    OBEY_PRECISION_CONSTRAINTS = "OBEY_PRECISION_CONSTRAINTS"


class MemoryPoolType(enum.Enum):
    WORKSPACE = "WORKSPACE"


class LayerType(enum.Enum):
    NORMALIZATION = "NORMALIZATION"
    CONVOLUTION = "CONVOLUTION"


class DataType(enum.Enum):
    FLOAT = "float32"
    HALF = "float16"
    UINT8 = "uint8"


@dataclass
class Tensor:
    name: str


@dataclass
class Layer:
    type: LayerType
    precision: DataType | None = None
    output_types: dict = field(default_factory=dict)

    def set_output_type(self, index: int, dtype: DataType) -> None:
        self.output_types[index] = dtype


@dataclass
class Network:
    flags: int
    inputs: list = field(default_factory=list)
    outputs: list = field(default_factory=list)
    layers: list = field(default_factory=list)

    @property
    def num_inputs(self) -> int:
        return len(self.inputs)

    @property
    def num_outputs(self) -> int:
        return len(self.outputs)

    @property
    def num_layers(self) -> int:
        return len(self.layers)

    def get_input(self, i: int) -> Tensor:
        return self.inputs[i]

    def get_output(self, i: int) -> Tensor:
        return self.outputs[i]

    def get_layer(self, i: int) -> Layer:
        return self.layers[i]


class OnnxParser:
    def __init__(self, network: Network, logger: object) -> None:
        self.network = network
        self.num_errors = 0
        self.parsed: str | None = None

    def parse_from_file(self, path: str) -> bool:
        m = onnx.load(path, load_external_data=False)
        self.parsed = path
        self.network.inputs = [Tensor(i.name) for i in m.graph.input]
        self.network.outputs = [Tensor(o.name) for o in m.graph.output]
        kinds = {"LayerNormalization": LayerType.NORMALIZATION}
        self.network.layers = [Layer(kinds.get(n.op_type, LayerType.CONVOLUTION)) for n in m.graph.node]
        return True

    def get_error(self, i: int) -> str:
        return "no error"


class TimingCache:
    def __init__(self, data: bytes) -> None:
        self.data = data

    def serialize(self) -> bytes:
        return self.data + b"+timing"


@dataclass
class Profile:
    shapes: dict = field(default_factory=dict)

    def set_shape(self, name: str, min: tuple, opt: tuple, max: tuple) -> None:  # noqa: A002 - TensorRT's names
        self.shapes[name] = (tuple(min), tuple(opt), tuple(max))


@dataclass
class Config:
    flags: set = field(default_factory=set)
    pools: dict = field(default_factory=dict)
    profiles: list = field(default_factory=list)
    cache: TimingCache | None = None
    created_cache_from: bytes | None = None

    def set_memory_pool_limit(self, pool: MemoryPoolType, size: int) -> None:
        self.pools[pool] = size

    def set_flag(self, flag: BuilderFlag) -> None:
        self.flags.add(flag)

    def add_optimization_profile(self, profile: Profile) -> int:
        self.profiles.append(profile)
        return len(self.profiles) - 1

    def create_timing_cache(self, data: bytes) -> TimingCache:
        self.created_cache_from = bytes(data)
        return TimingCache(bytes(data))

    def set_timing_cache(self, cache: TimingCache, ignore_mismatch: bool) -> bool:
        self.cache = cache
        return True

    def get_timing_cache(self) -> TimingCache:
        return self.cache


class Logger:
    WARNING = "WARNING"

    def __init__(self, level: str = "WARNING") -> None:
        self.level = level


class Builder:
    last: Builder | None = None

    def __init__(self, logger: Logger) -> None:
        self.network: Network | None = None
        self.config: Config | None = None
        Builder.last = self

    def create_network(self, flags: int = 0) -> Network:
        self.network = Network(flags)
        return self.network

    def create_builder_config(self) -> Config:
        self.config = Config()
        return self.config

    def create_optimization_profile(self) -> Profile:
        return Profile()

    def build_serialized_network(self, network: Network, config: Config) -> bytes:
        return b"PLAN" + repr(sorted(f.value for f in config.flags)).encode()


def module(version: str) -> types.ModuleType:
    """A fake ``tensorrt`` module of ``version``; TensorRT 11 has no FP16 or precision-constraint flags."""
    m = types.ModuleType("tensorrt")
    m.__version__ = version
    for name in ("NetworkDefinitionCreationFlag", "MemoryPoolType", "LayerType", "Logger", "Builder", "OnnxParser"):
        setattr(m, name, globals()[name])
    m.BuilderFlag = BuilderFlag if version.startswith("10.") else types.SimpleNamespace()
    m.float32, m.float16, m.uint8 = DataType.FLOAT, DataType.HALF, DataType.UINT8
    m.TensorIOMode = types.SimpleNamespace(INPUT="INPUT", OUTPUT="OUTPUT")
    return m

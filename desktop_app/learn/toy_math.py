"""The toy network's arithmetic in numpy, for the Learn page's sliders: forward pass, LoRA, merging.

The lessons' sliders answer at once, so their network runs in the GUI process, in numpy (torch stays
out of it).  It is the guide's ``SimpleModel`` (``trainer/jobs/toy.py``'s ``ToyNet``): Linear 10→50,
sigmoid, Linear 50→50, sigmoid, Linear 50→1, with weights stored as PyTorch does (``out × in``).
The pretrained weights are read from the shipped safetensors file by :func:`read_safetensors`: that
format is a JSON header and raw little-endian arrays, simple enough to read here without the
safetensors package (one of the libraries the GUI process must not import).
"""

from __future__ import annotations

import json
import struct
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

LAYERS = ("input_layer", "hidden_layer", "output_layer")
SHAPES = {"input_layer": (50, 10), "hidden_layer": (50, 50), "output_layer": (1, 50)}
DTYPES = {"F32": "<f4", "F64": "<f8", "F16": "<f2"}
MAX_HEADER = 1 << 20  # the toy file's header is about 2 kB; anything huge is not a toy network


class ToyFileError(ValueError):
    """A file that is not the toy network's weights; the message names the file."""


def read_safetensors(path: Path) -> dict[str, np.ndarray]:
    """Every tensor of a small float safetensors file, as read-only numpy arrays in the file's own dtype (so two
    files can be compared bit for bit); nothing in the file is executed."""
    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise ToyFileError(f"{path}: cannot read it ({exc.strerror or exc})") from None
    if len(data) < 8:
        raise ToyFileError(f"{path}: not a safetensors file (too short)")
    (header_size,) = struct.unpack("<Q", data[:8])
    if header_size > min(MAX_HEADER, len(data) - 8):
        raise ToyFileError(f"{path}: not a safetensors file (header size {header_size})")
    try:
        header = json.loads(data[8:8 + header_size])
    except (UnicodeDecodeError, json.JSONDecodeError):
        raise ToyFileError(f"{path}: not a safetensors file (unreadable header)") from None
    body = memoryview(data)[8 + header_size:]
    tensors = {}
    for name, info in header.items():
        if name == "__metadata__":
            continue
        dtype = DTYPES.get(info.get("dtype"))
        begin, end = info.get("data_offsets", (0, -1))
        shape = tuple(info.get("shape", ()))
        if dtype is None or not 0 <= begin <= end <= len(body):
            raise ToyFileError(f"{path}: tensor {name!r} has an unsupported dtype or bad offsets")
        array = np.frombuffer(body[begin:end], dtype=dtype)
        if array.size != int(np.prod(shape)):
            raise ToyFileError(f"{path}: tensor {name!r} does not match its shape {shape}")
        tensors[name] = array.reshape(shape)
    return tensors


@dataclass(frozen=True)
class ToyWeights:
    """The three layers' weights (out × in) and biases."""

    weights: dict[str, np.ndarray]
    biases: dict[str, np.ndarray]

    @classmethod
    def load(cls, path: Path) -> ToyWeights:
        tensors = read_safetensors(path)
        missing = [f"{layer}.{kind}" for layer in LAYERS for kind in ("weight", "bias")
                   if f"{layer}.{kind}" not in tensors]
        if missing:
            raise ToyFileError(f"{path}: not the toy network's weights (missing {', '.join(missing)})")
        for layer, shape in SHAPES.items():
            if tensors[f"{layer}.weight"].shape != shape:
                raise ToyFileError(f"{path}: {layer}.weight is {tensors[f'{layer}.weight'].shape}, not {shape}")
        return cls({layer: tensors[f"{layer}.weight"].astype(np.float64) for layer in LAYERS},
                   {layer: tensors[f"{layer}.bias"].astype(np.float64) for layer in LAYERS})

    def with_weight(self, layer: str, weight: np.ndarray) -> ToyWeights:
        return replace(self, weights={**self.weights, layer: weight})

    def with_bias(self, layer: str, bias: np.ndarray) -> ToyWeights:
        return replace(self, biases={**self.biases, layer: bias})

    def parameter_count(self, layers: tuple[str, ...] = LAYERS) -> int:
        return sum(self.weights[layer].size + self.biases[layer].size for layer in layers)


def sigmoid(z: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-z))


@dataclass(frozen=True)
class ForwardPass:
    """What each layer computed for one input: pre-activations ``z = W·x + b`` and activations."""

    x: np.ndarray
    z: dict[str, np.ndarray]
    activations: dict[str, np.ndarray]  # the hidden layers after the sigmoid; the output layer has none

    @property
    def output(self) -> float:
        return float(self.activations["output_layer"][0])


def forward(net: ToyWeights, x: np.ndarray) -> ForwardPass:
    """The guide's forward pass: sigmoid after the first two layers, a plain number out of the last."""
    z, activations = {}, {}
    signal = np.asarray(x, dtype=np.float64)
    for layer in LAYERS:
        z[layer] = net.weights[layer] @ signal + net.biases[layer]
        signal = z[layer] if layer == "output_layer" else sigmoid(z[layer])
        activations[layer] = signal
    return ForwardPass(np.asarray(x, dtype=np.float64), z, activations)


@dataclass(frozen=True)
class LoraAdapter:
    """One layer's trained adapter: B (d_out × r), A (r × d_in) and α, as the toy's LoRA runs write them."""

    b: np.ndarray
    a: np.ndarray
    alpha: float

    @property
    def rank(self) -> int:
        return self.a.shape[0]

    def delta(self) -> np.ndarray:
        """``(α/r)·B·A``: the change the adapter makes to its layer's weight."""
        return (self.alpha / self.rank) * (self.b @ self.a)


def load_toy_lora(path: Path) -> dict[str, LoraAdapter]:
    """The adapters of a toy LoRA file (``kamaal-train train`` of a toy preset in ``lora`` mode), by layer:
    ``LAYER.lora_A.weight``, ``LAYER.lora_B.weight`` and ``LAYER.alpha``, checked against the toy's shapes."""
    tensors = read_safetensors(path)
    adapters = {}
    for layer, (d_out, d_in) in SHAPES.items():
        names = (f"{layer}.lora_B.weight", f"{layer}.lora_A.weight", f"{layer}.alpha")
        if not any(name in tensors for name in names):
            continue
        if not all(name in tensors for name in names):
            raise ToyFileError(f"{path}: {layer} needs all of {', '.join(names)}")
        b, a, alpha = (tensors[name].astype(np.float64) for name in names)
        if b.ndim != 2 or a.ndim != 2 or b.shape[0] != d_out or a.shape[1] != d_in or b.shape[1] != a.shape[0]:
            raise ToyFileError(f"{path}: {layer}'s B {b.shape} and A {a.shape} do not fit a {d_out} × {d_in} layer")
        adapters[layer] = LoraAdapter(b, a, float(alpha.reshape(-1)[0]))
    if not adapters:
        raise ToyFileError(f"{path}: no toy LoRA in it (no LAYER.lora_A.weight / LAYER.lora_B.weight)")
    return adapters


def strongest_directions(delta: np.ndarray, rank: int) -> np.ndarray:
    """The best rank-``rank`` approximation of ``delta`` (its ``rank`` largest singular directions): what is
    left of a trained change kept in fewer dimensions.  At or above the change's own rank it is ``delta`` itself,
    bit for bit."""
    if rank >= min(delta.shape) or np.linalg.matrix_rank(delta) <= rank:
        return delta
    u, s, vt = np.linalg.svd(delta, full_matrices=False)
    return (u[:, :rank] * s[:rank]) @ vt[:rank]


def lora_parameters(d_in: int, d_out: int, rank: int) -> int:
    """A LoRA's trained numbers on one Linear layer: A (r × d_in) and B (d_out × r)."""
    return rank * (d_in + d_out)


def weighted_merge(first: np.ndarray, second: np.ndarray, weight: float) -> np.ndarray:
    """``(1 − w)·first + w·second``: w = 0 is ``first`` exactly, w = 1 is ``second`` exactly."""
    return (1 - weight) * first + weight * second


def add_difference(base: np.ndarray, tuned: np.ndarray, original: np.ndarray, multiplier: float) -> np.ndarray:
    """``base + m·(tuned − original)``: what fine-tuning taught ``original``, carried over to ``base``."""
    return base + multiplier * (tuned - original)

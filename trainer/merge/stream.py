"""A safetensors writer that takes one tensor at a time, so a merge of three SDXL checkpoints
never holds more than a few tensors in memory.

The format is simple enough to write directly: 8 bytes of little-endian header length, a JSON header
(name → dtype, shape, byte offsets; ``__metadata__`` → strings), then the tensors' bytes back to back.
Knowing every name, dtype and shape up front (from the inputs' headers) lets us write the header
first and stream the data after it.  The file is written under a temporary name, fsynced and renamed
into place, so a cancel, crash or full disk never leaves a half-written output behind.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import torch

_DTYPE_NAMES: dict[torch.dtype, str] = {
    torch.float64: "F64", torch.float32: "F32", torch.float16: "F16", torch.bfloat16: "BF16",
    torch.int64: "I64", torch.int32: "I32", torch.int16: "I16", torch.int8: "I8", torch.uint8: "U8",
    torch.bool: "BOOL", torch.float8_e4m3fn: "F8_E4M3", torch.float8_e5m2: "F8_E5M2",
}


@dataclass(frozen=True)
class TensorSpec:
    """What one output tensor will be: its name, dtype and shape (known before its values are)."""

    name: str
    dtype: torch.dtype
    shape: tuple[int, ...]

    @property
    def nbytes(self) -> int:
        count = 1
        for side in self.shape:
            count *= side
        return count * torch.empty((), dtype=self.dtype).element_size()


def write_streaming(path: Path, specs: Sequence[TensorSpec], produce: Callable[[TensorSpec], torch.Tensor],
                    metadata: dict[str, str] | None = None,
                    after_each: Callable[[int, int], None] | None = None) -> Path:
    """Write ``path`` atomically; ``produce(spec)`` gives each tensor in turn (dtype and shape must match).

    ``after_each(done, total)`` runs after each tensor: progress reports and cancel checks go there
    (an exception from it removes the temporary file and leaves any existing ``path`` untouched).
    """
    path = Path(path)
    header: dict[str, object] = {}
    if metadata:
        header["__metadata__"] = {str(k): str(v) for k, v in metadata.items()}
    offset = 0
    for spec in specs:
        if spec.dtype not in _DTYPE_NAMES:
            raise ValueError(f"{spec.name}: dtype {spec.dtype} cannot be stored in safetensors")
        header[spec.name] = {"dtype": _DTYPE_NAMES[spec.dtype], "shape": list(spec.shape),
                             "data_offsets": [offset, offset + spec.nbytes]}
        offset += spec.nbytes
    encoded = json.dumps(header, separators=(",", ":")).encode("utf-8")
    encoded += b" " * (-len(encoded) % 8)  # the reference writer aligns the data to 8 bytes
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as stream:
            stream.write(len(encoded).to_bytes(8, "little"))
            stream.write(encoded)
            for done, spec in enumerate(specs, start=1):
                tensor = produce(spec)
                if tensor.dtype != spec.dtype or tuple(tensor.shape) != spec.shape:
                    raise ValueError(f"{spec.name}: produced {tensor.dtype} {tuple(tensor.shape)}, "
                                     f"promised {spec.dtype} {spec.shape}")
                stream.write(_raw_bytes(tensor))
                if after_each is not None:
                    after_each(done, len(specs))
            stream.flush()
            os.fsync(stream.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def _raw_bytes(tensor: torch.Tensor) -> memoryview:
    # Viewing as bytes works for every dtype, bfloat16 included (which numpy cannot represent).
    flat = tensor.detach().to("cpu").contiguous().reshape(-1)
    return memoryview(flat.view(torch.uint8).numpy())

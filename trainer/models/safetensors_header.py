"""The header of a ``.safetensors`` file, read and checked without torch or the safetensors library.

The format: 8 bytes of little-endian header length N, N bytes of JSON (tensor name → dtype, shape,
``data_offsets`` [begin, end) into the data that follows; an optional ``__metadata__`` table of
text), then the tensors' bytes back to back.  A downloaded file is untrusted input, so everything the
safetensors library would refuse later (or trip over in a way that surfaces as an odd exception) is
checked here first and refused with an ``InputError`` that names the file and, where one is to blame,
the tensor: a header that is not a table, nested past reason, metadata that is not text, a dtype
nobody knows, a shape that is not a list of sizes, byte ranges that overlap, leave gaps, or promise
more bytes than the file has.

Standard library only (cheap: a few hundred kilobytes of JSON even for SDXL).
"""

from __future__ import annotations

import json
import math
import os
import stat
from dataclasses import dataclass
from pathlib import Path

from trainer.errors import InputError

MAX_HEADER_BYTES = 100 * 1024 * 1024  # the safetensors library's own limit
# Bits per element of every dtype the safetensors format names.
DTYPE_BITS = {"BOOL": 8, "U8": 8, "I8": 8, "F8_E5M2": 8, "F8_E4M3": 8, "F8_E8M0": 8, "I16": 16, "U16": 16,
              "F16": 16, "BF16": 16, "I32": 32, "U32": 32, "F32": 32, "I64": 64, "U64": 64, "F64": 64,
              "C64": 64, "F4": 4, "F6_E2M3": 6, "F6_E3M2": 6}
# The dtypes Kamaal reads model and LoRA weights in (torch computes with them, and the merge writer
# writes them back); a file with any other one is refused, naming the tensor.
WEIGHT_DTYPES = frozenset({"F64", "F32", "F16", "BF16", "I64", "I32", "I16", "I8", "U8", "BOOL",
                           "F8_E4M3", "F8_E5M2"})
FLOAT_DTYPES = frozenset({"F64", "F32", "F16", "BF16"})


@dataclass(frozen=True)
class TensorEntry:
    dtype: str
    shape: tuple[int, ...]
    begin: int  # byte range in the data part of the file
    end: int

    @property
    def numel(self) -> int:
        return math.prod(self.shape)


@dataclass(frozen=True)
class SafetensorsHeader:
    path: Path
    tensors: dict[str, TensorEntry]  # in the file's order
    metadata: dict[str, str]
    data_start: int  # 8 + the header's length


def read_header(path: Path | str, what: str = "model.path") -> SafetensorsHeader:
    """The checked header of ``path``; ``InputError`` beginning ``"{what}: {path}"`` for anything wrong."""
    path = Path(path)
    prefix = f"{what}: {path}"
    try:
        info = os.stat(path)
    except (OSError, ValueError) as error:
        reason = "does not exist" if isinstance(error, FileNotFoundError) else f"cannot be read ({error})"
        raise InputError(f"{prefix} {reason}") from None
    if not stat.S_ISREG(info.st_mode):
        raise InputError(f"{prefix} is not a regular file")  # a FIFO would block the read below
    size = info.st_size
    not_safetensors = f"{prefix} is truncated or not a safetensors file"
    try:
        with open(path, "rb") as stream:
            first = stream.read(8)
            if len(first) < 8:
                raise InputError(f"{not_safetensors} (only {len(first)} bytes)")
            length = int.from_bytes(first, "little")
            if length < 2 or length > min(MAX_HEADER_BYTES, size - 8):
                raise InputError(f"{not_safetensors} (its first 8 bytes give a header of {length:,} bytes, "
                                 f"the file has {size:,})")
            raw = stream.read(length)
    except OSError as error:
        raise InputError(f"{prefix} cannot be read ({error.strerror or error})") from None
    try:
        header = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, ValueError):
        raise InputError(f"{not_safetensors} (its header is not JSON)") from None
    except RecursionError:
        raise InputError(f"{not_safetensors} (its header is nested too deeply)") from None
    if not isinstance(header, dict):
        raise InputError(f"{not_safetensors} (its header is not a table)")
    metadata = _metadata(header.pop("__metadata__", None), prefix)
    tensors = {name: _entry(name, entry, prefix) for name, entry in header.items()}
    _check_layout(tensors, 8 + length, size, prefix)
    return SafetensorsHeader(path, tensors, metadata, 8 + length)


def _metadata(value: object, prefix: str) -> dict[str, str]:
    if value is None:
        return {}
    if not isinstance(value, dict) or not all(isinstance(v, str) for v in value.values()):
        raise InputError(f"{prefix} is not a valid safetensors file (its __metadata__ must be a table of text "
                         f"values, got {_kind(value)})")
    return dict(value)


def _kind(value: object) -> str:
    if isinstance(value, dict):
        odd = next((v for v in value.values() if not isinstance(v, str)), None)
        return f"a table holding {type(odd).__name__} values"
    return {list: "a list", str: "text", bool: "true/false", int: "a number", float: "a number"}.get(
        type(value), type(value).__name__)


def _entry(name: str, entry: object, prefix: str) -> TensorEntry:
    bad = f"{prefix} is not a valid safetensors file: tensor {name!r}"
    if not isinstance(entry, dict):
        raise InputError(f"{bad} is described by {_kind(entry)}, not a table")
    dtype, shape, offsets = entry.get("dtype"), entry.get("shape"), entry.get("data_offsets")
    if not isinstance(dtype, str) or dtype not in DTYPE_BITS:
        raise InputError(f"{bad} has an unknown dtype {dtype!r}")
    if not isinstance(shape, list) or not all(type(n) is int and n >= 0 for n in shape):
        raise InputError(f"{bad} has a shape that is not a list of sizes: {_short(shape)}")
    if (not isinstance(offsets, list) or len(offsets) != 2 or not all(type(n) is int for n in offsets)
            or not 0 <= offsets[0] <= offsets[1]):
        raise InputError(f"{bad} has invalid data_offsets {_short(offsets)}")
    bits = math.prod(shape) * DTYPE_BITS[dtype]
    if bits % 8 or bits // 8 != offsets[1] - offsets[0]:
        raise InputError(f"{bad} is {dtype} {shape} ({_bytes(bits)}) but its data_offsets span "
                         f"{offsets[1] - offsets[0]:,} bytes")
    return TensorEntry(dtype, tuple(shape), offsets[0], offsets[1])


def _bytes(bits: int) -> str:
    return f"{bits // 8:,} bytes" if bits % 8 == 0 else f"{bits / 8:,} bytes"


def _short(value: object) -> str:
    text = json.dumps(value) if not isinstance(value, str) else repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _check_layout(tensors: dict[str, TensorEntry], data_start: int, size: int, prefix: str) -> None:
    """The tensors' byte ranges tile the data part exactly: no overlap, no gap, nothing past the end."""
    position = 0
    for name, entry in sorted(tensors.items(), key=lambda item: (item[1].begin, item[1].end)):
        if entry.begin != position:
            problem = "overlaps the tensor before it" if entry.begin < position else "leaves a gap before it"
            raise InputError(f"{prefix} is not a valid safetensors file: tensor {name!r} {problem} "
                             f"(data_offsets [{entry.begin}, {entry.end}])")
        position = entry.end
    if data_start + position > size:
        raise InputError(f"{prefix} is truncated (the header promises {data_start + position} bytes, the file has "
                         f"{size}); download it again")
    if data_start + position < size:
        raise InputError(f"{prefix} is not a valid safetensors file ({size - data_start - position:,} bytes after "
                         "its last tensor)")


def refuse_dtypes(header: SafetensorsHeader, what: str, allowed: frozenset[str] = WEIGHT_DTYPES,
                  kind: str = "model weights") -> None:
    """Refuse a tensor stored in a dtype outside ``allowed``, naming it."""
    for name, entry in header.tensors.items():
        if entry.dtype not in allowed:
            raise InputError(f"{what}: {header.path} stores tensor {name} as {entry.dtype}, which Kamaal does not "
                             f"read as {kind} (expected one of {', '.join(sorted(allowed))})")

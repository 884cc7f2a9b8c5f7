"""Reading single-file checkpoints safely, with messages that name the file.

``.safetensors`` is read lazily: the header gives every tensor's name and shape, so the architecture
can be detected without loading gigabytes.  ``.ckpt``/``.pt``/``.pth``/``.bin`` go through
``torch.load(weights_only=True)`` and nothing else: a pickle can run code, and a downloaded checkpoint
is untrusted input.  Every failure becomes an ``InputError`` saying what is wrong with which file.
"""

from __future__ import annotations

import pickle
import warnings
import zipfile
from collections.abc import Mapping
from pathlib import Path

import torch

from trainer.errors import InputError
from trainer.models.safetensors_header import read_header, refuse_dtypes

SAFETENSORS_SUFFIXES = (".safetensors",)
PICKLE_SUFFIXES = (".ckpt", ".pt", ".pth", ".bin")

Shapes = Mapping[str, tuple[int, ...]]


class CheckpointFile:
    """One checkpoint file: tensor names and shapes up front, tensors on demand."""

    def __init__(self, path: Path, shapes: dict[str, tuple[int, ...]], metadata: dict[str, str],
                 tensors: dict[str, torch.Tensor] | None = None) -> None:
        self.path = path
        self.shapes = shapes
        self.metadata = metadata
        self._tensors = tensors  # already in memory for pickles; read lazily for safetensors

    def tensor(self, key: str) -> torch.Tensor | None:
        """One tensor (``None`` if absent), without reading the rest of a safetensors file."""
        if key not in self.shapes:
            return None
        if self._tensors is not None:
            return self._tensors[key]
        from safetensors import safe_open

        with _reading(self.path), safe_open(str(self.path), framework="pt") as handle:
            return handle.get_tensor(key)

    def state_dict(self) -> dict[str, torch.Tensor]:
        """All tensors, in the file's own (original) key layout."""
        if self._tensors is not None:
            return self._tensors
        from safetensors.torch import load_file

        with _reading(self.path):
            return load_file(str(self.path))


class _reading:
    """Turns any low-level read failure into an ``InputError`` naming the file."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def __enter__(self) -> None:
        return None

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None, _tb: object) -> bool:
        if error is not None and not isinstance(error, InputError) and isinstance(error, Exception):
            raise InputError(f"model.path: {self.path} could not be read ({error})") from error
        return False


def open_checkpoint(path: Path) -> CheckpointFile:
    """Open a single-file checkpoint for inspection; refuses anything that is not plainly tensors."""
    try:
        exists = path.exists()
    except (OSError, ValueError):  # ValueError: a NUL in the path
        raise InputError(f"model.path: {path!r} is not a usable path") from None
    if not exists:
        raise InputError(f"model.path: {path} does not exist")
    if not path.is_file():
        raise InputError(f"model.path: {path} is not a file")
    suffix = path.suffix.lower()
    if suffix in SAFETENSORS_SUFFIXES:
        return _open_safetensors(path)
    if suffix in PICKLE_SUFFIXES:
        return _open_pickle(path)
    raise InputError(f"model.path: {path} is neither a .safetensors/.ckpt file nor a diffusers folder")


def _open_safetensors(path: Path) -> CheckpointFile:
    # Parse the header ourselves (safetensors_header checks it whole): it is cheap, and it lets us say what
    # is wrong — truncated, not safetensors, a tensor with a bad shape or dtype — naming the file.
    header = read_header(path, "model.path")
    refuse_dtypes(header, "model.path")
    if not header.tensors:
        raise InputError(f"model.path: {path} contains no tensors")
    return CheckpointFile(path, {name: entry.shape for name, entry in header.tensors.items()}, header.metadata)


def _open_pickle(path: Path) -> CheckpointFile:
    not_checkpoint = f"model.path: {path} is truncated or not a PyTorch checkpoint"
    try:
        loaded = _weights_only_load(path)
    except pickle.UnpicklingError as error:
        message = str(error)
        # "Unsupported global" = a real object the weights-only unpickler would not build; anything
        # else it trips over (bad opcodes, odd bytes) means the file is damaged or not a checkpoint.
        refused = next((line.strip() for line in message.splitlines() if "Unsupported global" in line), None)
        if refused is None:
            raise InputError(f"{not_checkpoint} (the weights-only unpickler could not read it)") from None
        refused = refused.removeprefix("WeightsUnpickler error: ").split(" was not an allowed")[0]
        raise InputError(
            f"model.path: {path} holds Python objects besides tensors, so it was not loaded: "
            f"torch.load(weights_only=True) refused it ({refused}). Use a .safetensors version of this model.") \
            from None
    except Exception as error:  # on damaged bytes the unpickler raises anything (KeyError, IndexError…)
        raise InputError(f"{not_checkpoint} ({str(error).splitlines()[0] if str(error) else type(error).__name__})") \
            from None
    tensors = _tensors_of(loaded)
    if not tensors:
        raise InputError(f"model.path: {path} contains no tensors")
    return CheckpointFile(path, {k: tuple(v.shape) for k, v in tensors.items()}, {}, tensors)


def _weights_only_load(path: Path) -> object:
    # weights_only: tensors, dicts and plain numbers only; any other object is refused, never run.
    # mmap avoids a second copy in memory, but only works for the zip format (torch >= 1.6 files).
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # "unusual pickle protocol" noise on damaged files
        if zipfile.is_zipfile(path):
            return torch.load(str(path), map_location="cpu", weights_only=True, mmap=True)
        return torch.load(str(path), map_location="cpu", weights_only=True)


def _tensors_of(loaded: object) -> dict[str, torch.Tensor]:
    # Lightning/CompVis checkpoints nest the weights under "state_dict" beside optimizer state etc.
    while isinstance(loaded, dict) and isinstance(loaded.get("state_dict"), dict):
        loaded = loaded["state_dict"]
    if not isinstance(loaded, dict):
        return {}
    return {str(k): v for k, v in loaded.items() if isinstance(v, torch.Tensor)}

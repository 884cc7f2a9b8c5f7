"""Lazy tensor access to a whole model, whichever form it is in, for merges that go tensor by tensor.

* A single file (``.safetensors``: read one tensor at a time with ``safe_open``; ``.ckpt``: loaded
  with ``torch.load(weights_only=True)`` through ``trainer.models.checkpoint_io``, all at once, since
  a pickle cannot be read partially).  Keys are the file's own (original layout).
* A diffusers folder: every component's safetensors file(s); keys are ``component/tensor`` (for example
  ``unet/down_blocks.0.resnets.0.conv1.weight``) and each remembers its file, so an output folder is
  written file by file in the same layout.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from trainer.errors import InputError
from trainer.merge.stream import _DTYPE_NAMES
from trainer.models import ModelInfo, inspect_model
from trainer.models.checkpoint_io import CheckpointFile, open_checkpoint
from trainer.models.safetensors_header import read_header, refuse_dtypes

_DTYPES_BY_NAME = {name: dtype for dtype, name in _DTYPE_NAMES.items()}


@dataclass
class ModelTensors:
    """One model's tensors: names, dtypes and shapes up front; values on demand."""

    path: Path
    info: ModelInfo
    specs: dict[str, tuple[torch.dtype, tuple[int, ...]]]
    file_of: dict[str, str] = field(default_factory=dict)  # diffusers: key → file relative to the folder
    # A name in ``specs`` → the file's own, where they differ (``rename_prefix``: ComfyUI's ``model.diffusion_model.``).
    aliases: dict[str, str] = field(default_factory=dict)
    _handles: dict[str, Any] = field(default_factory=dict)
    _checkpoint: CheckpointFile | None = None

    @property
    def is_folder(self) -> bool:
        return self.info.source_kind == "diffusers"

    def get(self, key: str) -> torch.Tensor:
        key = self.aliases.get(key, key)
        if self._checkpoint is not None and self._checkpoint._tensors is not None:
            return self._checkpoint._tensors[key]
        relative = self.file_of.get(key, "")
        name = key.split("/", 1)[1] if self.is_folder else key
        return self._handle(relative).get_tensor(name)

    def _handle(self, relative: str) -> Any:
        from safetensors import safe_open

        if relative not in self._handles:
            file = self.path / relative if relative else self.path
            try:
                self._handles[relative] = safe_open(str(file), framework="pt")
            except Exception as error:  # safetensors raises its own error types on damaged files
                raise InputError(f"{file} could not be read ({error})") from None
        return self._handles[relative]

    def rename_prefix(self, old: str, new: str) -> None:
        """Name every tensor ``new`` + rest instead of ``old`` + rest (reading them still by the file's names)."""
        renamed = {}
        for key, spec in self.specs.items():
            name = new + key.removeprefix(old) if key.startswith(old) else key
            renamed[name] = spec
            if name != key:
                self.aliases[name] = self.aliases.get(key, key)
        self.specs = renamed

    def close(self) -> None:
        self._handles.clear()  # safe_open handles close when released

    def __enter__(self) -> ModelTensors:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def refuse_unmergeable(info: ModelInfo, path: Path, what: str, *, transformers: bool = False) -> None:
    """Refuse, by name, a family the operation cannot handle: single-file conversions work on the SD families
    (``Family.single_file``); checkpoint merges and LoRA fusing (``transformers``) also on every transformer family,
    whose weights they read tensor by tensor (diffusers folders, and the family's own single files)."""
    from trainer.families import MODEL_FAMILIES, family

    model = family(info.architecture)
    if model.single_file or (transformers and model.kind == "transformer"):
        return
    able = ", ".join(family(name).display_name for name in MODEL_FAMILIES if family(name).single_file)
    raise InputError(f"{what}: {path} is {model.a_name} model; merging and converting "
                     f"{model.display_name} models is not available yet (it is for {able})")


def open_model(path: Path, what: str) -> ModelTensors:
    """Open a full model for merging (any family's diffusers folder, or a single file Kamaal reads: SD's
    original layout, a transformer family's own file); ``InputError`` naming ``what`` if it is not one."""
    try:
        info = inspect_model(path)
    except InputError as error:
        raise InputError(f"{what}: {str(error).removeprefix('model.path: ')}") from None
    refuse_unmergeable(info, path, what, transformers=True)
    if info.source_kind == "diffusers":
        return _open_folder(path, info, what)
    checkpoint = open_checkpoint(path)
    if checkpoint._tensors is not None:  # a pickle: already in memory
        specs = {k: (v.dtype, tuple(v.shape)) for k, v in checkpoint._tensors.items()}
        return ModelTensors(path, info, dict(sorted(specs.items())), _checkpoint=checkpoint)
    model = ModelTensors(path, info, {})
    model.specs = dict(sorted(_specs(path, what).items()))
    return model


def _specs(file: Path, what: str) -> dict[str, tuple[torch.dtype, tuple[int, ...]]]:
    """Names, dtypes and shapes from the file's checked header (``safetensors_header``): a damaged or odd
    file is refused here, naming it, before any tensor is read."""
    header = read_header(file, what)
    refuse_dtypes(header, what)
    return {name: (_DTYPES_BY_NAME[entry.dtype], entry.shape) for name, entry in header.tensors.items()}


def weight_files(component: Path, what: str = "model") -> list[Path]:
    """A component folder's safetensors files: the sharded set if indexed, else the one plain file."""
    indexes = sorted(component.glob("*.safetensors.index.json"))
    if indexes:
        try:
            weight_map = json.loads(indexes[0].read_text(encoding="utf-8")).get("weight_map", {})
        except (OSError, UnicodeDecodeError, ValueError, RecursionError, AttributeError):
            raise InputError(f"{what}: {indexes[0]} is not a readable safetensors index") from None
        names = set(weight_map.values()) if isinstance(weight_map, dict) else {None}
        if not all(isinstance(n, str) and n and Path(n).name == n and n not in (".", "..") for n in names):
            raise InputError(f"{what}: {indexes[0]} has a weight_map that does not name files of its folder")
        return [component / name for name in sorted(names)]
    files = sorted(component.glob("*.safetensors"))
    plain = [f for f in files if f.name.count(".") == 1]  # model.safetensors, not model.fp16.safetensors
    return plain[:1] or files[:1]


def _open_folder(path: Path, info: ModelInfo, what: str) -> ModelTensors:
    model = ModelTensors(path, info, {})
    for component in sorted(p for p in path.iterdir() if p.is_dir()):
        files = weight_files(component, what)
        if not files and any(component.glob("*.bin")):
            raise InputError(f"{what}: {path} keeps its {component.name} weights in .bin files; only "
                             "safetensors folders are merged (re-save it with safe_serialization=True)")
        for file in files:
            relative = str(file.relative_to(path))
            for key, spec in sorted(_specs(file, what).items()):
                name = f"{component.name}/{key}"
                model.specs[name] = spec
                model.file_of[name] = relative
    if not model.specs:
        raise InputError(f"{what}: {path} holds no safetensors weights")
    return model

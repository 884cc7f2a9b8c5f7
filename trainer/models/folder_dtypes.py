"""The dtypes a diffusers folder written by Kamaal is stored in, and the one pipeline writer that keeps them.

**The rule.**  In every diffusers folder Kamaal writes or ships, the diffusers components (UNet, VAE)
are stored in the output dtype — the one the user asked for, else the UNet's — and the transformers
components (the text encoders) are always stored in fp32.

Why: a plain ``StableDiffusionPipeline.from_pretrained(path)``, with no dtype, brings every diffusers
model up in fp32 whatever its files hold, while transformers 5 keeps a model in the dtype its
``config.json`` names (else the dtype of its weights); transformers 4 used fp32.  Measured with
diffusers 0.42.1 and transformers 5.23.0: a folder stored entirely in fp16 (the first shipped
``shapes-sd``) loads as an fp32 UNet and VAE beside an fp16 text encoder, whose Half prompt
embeddings then fail the UNet's first matmul ("mat1 and mat2 must have the same dtype, but got Half
and Float").  So "one dtype for every part" is not enough; fp32 text encoders are.  With them every
loader gets matching parts: plain → all fp32, ``torch_dtype=X`` → all X.  Cost: an fp16 SD 1.5 folder
grows by about 250 MB (to about 2.0 GB), an fp16 SDXL folder by about 1.6 GB (to about 8.5 GB).
Rejected: keeping fp16 text-encoder files and writing ``"dtype": "float32"`` in their config (transformers
would upcast them) — that field is documented as the dtype of the weights, and other readers trust it.

Writers: ``save_diffusers_folder`` for a pipeline in memory (training outputs, fuse, convert, the
shapes and tiny models); ``stored_dtype`` + ``record_stored_dtype`` for the streamed checkpoint merge.
"""

from __future__ import annotations

import copy
import json
import struct
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any

import torch

from trainer.fsutil import atomic_write_text

TEXT_ENCODER_DTYPE = torch.float32
_SAFETENSORS_DTYPES = {"F64": torch.float64, "F32": torch.float32, "F16": torch.float16, "BF16": torch.bfloat16}


def stored_dtype(library: str | None, dtype: torch.dtype) -> torch.dtype:
    """The dtype a floating tensor of a component from ``library`` ("diffusers", "transformers") is
    stored in when the folder's output dtype is ``dtype``."""
    return TEXT_ENCODER_DTYPE if library == "transformers" else dtype


def component_libraries(folder: Path) -> dict[str, str]:
    """Component name → the library that loads it, from the folder's ``model_index.json``."""
    index = json.loads((Path(folder) / "model_index.json").read_text(encoding="utf-8"))
    return {name: value[0] for name, value in index.items()
            if isinstance(value, list) and len(value) == 2 and isinstance(value[0], str)}


def record_stored_dtype(component_dir: Path, dtype: torch.dtype) -> None:
    """Name ``dtype`` in a transformers component's ``config.json`` (its "auto" loading reads it there
    before looking at the weights), for a component whose files were written without ``save_pretrained``."""
    path = Path(component_dir) / "config.json"
    config = json.loads(path.read_text(encoding="utf-8"))
    config["dtype"] = str(dtype).removeprefix("torch.")
    config.pop("torch_dtype", None)  # the older name; transformers 5 reads either
    path.write_text(json.dumps(config, indent=2, sort_keys=True) + "\n", encoding="utf-8")


def stored_dtypes(folder: Path) -> dict[str, set[torch.dtype]]:
    """Component name → the floating dtypes its safetensors files hold (headers only)."""
    found: dict[str, set[torch.dtype]] = {}
    for file in sorted(Path(folder).glob("*/*.safetensors")):
        with file.open("rb") as handle:
            header = json.loads(handle.read(struct.unpack("<Q", handle.read(8))[0]))
        dtypes = {_SAFETENSORS_DTYPES[v["dtype"]] for k, v in header.items()
                  if k != "__metadata__" and v["dtype"] in _SAFETENSORS_DTYPES}
        found.setdefault(file.parent.name, set()).update(dtypes)
    return found


def save_diffusers_folder(pipeline: Any, folder: Path, dtype: torch.dtype | None = None) -> None:
    """Write ``pipeline`` to ``folder`` (``save_pretrained``, safetensors) stored by the rule above;
    ``dtype`` is the output dtype, by default the UNet's.

    The caller's modules come back as they were: a component that must be widened (fp16/bf16 → fp32,
    exact both ways) is widened in place on the CPU for the write and restored afterwards, without
    holding a second copy on the GPU; one that must be narrowed (fp32 → fp16, lossy) is written from a
    narrowed copy."""
    denoiser = getattr(pipeline, "unet", None) or pipeline.transformer
    output = dtype or denoiser.dtype
    libraries = {name: entry[0] for name, entry in pipeline.config.items()
                 if isinstance(entry, (list, tuple)) and len(entry) == 2}
    with ExitStack() as stack:
        for name, module in list(pipeline.components.items()):
            if not isinstance(module, torch.nn.Module):
                continue
            stored = stack.enter_context(_stored_as(module, stored_dtype(libraries.get(name), output)))
            if stored is not module:
                setattr(pipeline, name, stored)
                stack.callback(setattr, pipeline, name, module)
        pipeline.save_pretrained(folder, safe_serialization=True)
    _name_published_classes(pipeline, Path(folder))


def _name_published_classes(pipeline: Any, folder: Path) -> None:
    """Where a component is Kamaal's stand-in for a class transformers builds only with a library Kamaal does not
    install (``published_as``: Qwen-Image 2.1's text processor for ``Qwen3VLProcessor``), ``model_index.json`` names
    the real class, as the published folder does, so that diffusers loads the folder without Kamaal."""
    renamed = {name: list(module.published_as) for name, module in pipeline.components.items()
               if isinstance(getattr(module, "published_as", None), tuple)}
    if renamed:
        index_path = folder / "model_index.json"
        index = json.loads(index_path.read_text(encoding="utf-8"))
        index.update(renamed)
        atomic_write_text(index_path, json.dumps(index, indent=2, sort_keys=True) + "\n")


def _widens_exactly(source: torch.dtype, target: torch.dtype) -> bool:
    return target in (torch.float32, torch.float64) and torch.finfo(source).bits < torch.finfo(target).bits


@contextmanager
def _stored_as(module: torch.nn.Module, dtype: torch.dtype) -> Iterator[torch.nn.Module]:
    tensors = [t for t in (*module.parameters(), *module.buffers()) if t.is_floating_point() and t.dtype != dtype]
    if not tensors:
        yield module
    elif all(_widens_exactly(t.dtype, dtype) for t in tensors):
        places = [(t, t.device, t.dtype) for t in tensors]
        for tensor, _, _ in places:
            tensor.data = tensor.data.to("cpu", dtype)
        try:
            yield module
        finally:
            for tensor, device, original in places:
                tensor.data = tensor.data.to(device, original)
    else:
        yield copy.deepcopy(module).to(dtype=dtype)

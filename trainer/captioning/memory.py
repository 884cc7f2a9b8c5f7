"""Whether a captioner fits in memory, decided before it loads (heavy only when asked about a GPU: torch).

A 7B vision-language model in bf16 is about 16 GB of weights; loading it into a machine with less free memory
ends in a crash (the system's out-of-memory killer gives no message) or a swap storm, long before a
``torch.OutOfMemoryError`` could be caught.  The weights are loaded as they are stored (``dtype="auto"``), so
their files' sizes are what the device must hold; generating needs a little more (the cache of a caption of a
few dozen tokens, the picture's activations), hence the headroom.
"""

from __future__ import annotations

from pathlib import Path

from trainer.errors import InputError

HEADROOM = 1.15  # weights × this: the KV cache and activations of one caption, and the allocator's slack
WEIGHT_SUFFIXES = (".safetensors", ".bin", ".onnx")


def weight_bytes(folder: Path) -> int:
    """The bytes of the weights in ``folder``: its ``.safetensors`` files (transformers reads only those when
    there are any), else its ``.bin`` files, plus any ``.onnx`` model (a tagger, or an ONNX export beside them)."""
    files = [path for path in Path(folder).iterdir() if path.is_file() and path.suffix in WEIGHT_SUFFIXES]
    tensors = [path for path in files if path.suffix == ".safetensors"] or [p for p in files if p.suffix == ".bin"]
    return sum(path.stat().st_size for path in tensors + [p for p in files if p.suffix == ".onnx"])


def free_bytes(device: str) -> int:
    """Memory free for new tensors on ``device``: the GPU's free memory, or the system's available memory."""
    if device.startswith("cuda"):
        import torch

        free, _ = torch.cuda.mem_get_info(torch.device(device))
        return int(free)
    import psutil

    return int(psutil.virtual_memory().available)


def check_fits(folder: Path, device: str, field: str = "--model") -> None:
    """``InputError`` starting with ``field`` when ``folder``'s weights (with headroom) exceed the free memory of
    ``device``; it says how much is needed and free, and what a smaller choice would be."""
    needed = int(weight_bytes(folder) * HEADROOM)
    free = free_bytes(device)
    if needed > free:
        where = "the GPU" if device.startswith("cuda") else "this machine"
        raise InputError(f"{field}: {folder} needs about {gigabytes(needed)} of memory to caption and {where} has "
                         f"{gigabytes(free)} free; close other programs, or pick a smaller model (a WD14 tagger, "
                         "BLIP or Florence-2, or a smaller or quantized VLM)")


def gigabytes(count: int) -> str:
    return f"{count / 1e9:.1f} GB"

"""Where and in which precision to run: CUDA when there is one, else the CPU, and a dtype that device can use."""

from __future__ import annotations

from typing import Literal

import torch

DtypeName = Literal["auto", "fp32", "fp16", "bf16"]
_NAMED: dict[str, torch.dtype] = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}


def pick_device() -> torch.device:
    """CUDA if available, else the CPU (Apple's MPS is left out until it is tested)."""
    return torch.device("cuda") if torch.cuda.is_available() else torch.device("cpu")


def pick_dtype(requested: DtypeName | str, device: torch.device | str) -> torch.dtype:
    """The weight dtype to use: ``auto`` means bf16 on GPUs that do it natively, fp16 on older GPUs,
    fp32 on the CPU (half precision on CPU is slow and some kernels are missing)."""
    device = torch.device(device)
    if requested == "auto":
        if device.type != "cuda":
            return torch.float32
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    if requested not in _NAMED:
        raise ValueError(f"dtype must be one of auto, fp32, fp16, bf16, got {requested!r}")
    dtype = _NAMED[requested]
    if device.type == "cuda" and dtype == torch.bfloat16 and not torch.cuda.is_bf16_supported():
        raise ValueError("dtype bf16 is not supported by this GPU; use fp16 or auto")
    return dtype


# Above this many UNet parameters a model is "real size" (SD 1.5's UNet has 860 M, the tiny one 1 M).
REAL_SIZE_PARAMETERS = 100_000_000


def cpu_warning(unet: torch.nn.Module, device: torch.device | str) -> str | None:
    """A warning for people about to train a real-size model on the CPU; ``None`` when all is fine.

    Returned rather than logged so the worker can send it as a ``Log`` event and the CLI can print it.
    """
    if torch.device(device).type != "cpu":
        return None
    parameters = sum(p.numel() for p in unet.parameters())
    if parameters < REAL_SIZE_PARAMETERS:
        return None
    return (f"Training a real-size model ({parameters / 1e6:.0f} M UNet parameters) on the CPU is impractical: "
            "expect minutes per step and tens of GB of memory. Use a CUDA GPU, or the tiny model "
            "(kamaal-train tiny-model) to try things out.")

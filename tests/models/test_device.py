"""Device and dtype choice, and the warning for real-size models on the CPU."""

from __future__ import annotations

import pytest
import torch

from trainer.models import cpu_warning, pick_device, pick_dtype, tiny_pipeline


def test_pick_device_is_cuda_only_when_available():
    assert pick_device().type == ("cuda" if torch.cuda.is_available() else "cpu")


def test_pick_dtype():
    assert pick_dtype("auto", "cpu") == torch.float32
    assert pick_dtype("fp16", "cpu") == torch.float16
    assert pick_dtype("bf16", torch.device("cpu")) == torch.bfloat16
    assert pick_dtype("fp32", "cpu") == torch.float32
    with pytest.raises(ValueError, match="dtype must be one of"):
        pick_dtype("int8", "cpu")


def test_cpu_warning_only_for_real_size_models_on_cpu():
    assert cpu_warning(tiny_pipeline("sd15").unet, "cpu") is None
    with torch.device("meta"):
        big = torch.nn.Linear(20_000, 10_000)  # 200 M parameters, no memory
    assert "impractical" in cpu_warning(big, "cpu")
    assert cpu_warning(big, "cuda") is None

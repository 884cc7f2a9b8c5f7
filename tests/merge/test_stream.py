"""The streaming safetensors writer: what it writes reads back exactly, and a failure leaves nothing."""

from __future__ import annotations

import pytest
import torch
from safetensors import safe_open

from trainer.merge.stream import TensorSpec, write_streaming


def test_every_dtype_reads_back_exactly(tmp_path):
    generator = torch.Generator().manual_seed(0)
    tensors = {"f32": torch.randn(3, 5, generator=generator), "f16": torch.randn(7, generator=generator).half(),
               "bf16": torch.randn(2, 2, 2, generator=generator).bfloat16(), "i64": torch.arange(6),
               "scalar": torch.tensor(4.0), "empty": torch.zeros(0, 3)}
    specs = [TensorSpec(k, v.dtype, tuple(v.shape)) for k, v in tensors.items()]
    path = write_streaming(tmp_path / "out.safetensors", specs, lambda s: tensors[s.name], {"who": "test"})
    with safe_open(path, "pt") as handle:
        assert handle.metadata() == {"who": "test"}
        for name, value in tensors.items():
            assert torch.equal(handle.get_tensor(name), value) and handle.get_tensor(name).dtype == value.dtype


def test_a_failure_midway_leaves_the_old_file_and_no_temporary(tmp_path):
    target = tmp_path / "out.safetensors"
    target.write_bytes(b"the earlier output")
    specs = [TensorSpec(f"t{i}", torch.float32, (4,)) for i in range(5)]

    def cancel_after_two(done: int, _total: int) -> None:
        if done == 2:
            raise KeyboardInterrupt  # what Ctrl-C or a cancelled task does

    with pytest.raises(KeyboardInterrupt):
        write_streaming(target, specs, lambda s: torch.ones(4), None, cancel_after_two)
    assert target.read_bytes() == b"the earlier output"
    assert [p.name for p in tmp_path.iterdir()] == ["out.safetensors"]
    with pytest.raises(ValueError, match="promised"):
        write_streaming(target, specs, lambda s: torch.ones(3))
    assert [p.name for p in tmp_path.iterdir()] == ["out.safetensors"]

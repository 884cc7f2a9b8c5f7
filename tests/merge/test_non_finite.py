"""NaN and infinity never reach a merge's output: refused by name, nothing written, exit 2.

Before: ``merge checkpoints --alpha nan`` wrote a model of NaN tensors and exited 0, and ``fuse-lora`` with a
NaN LoRA wrote a fused model whose changed weights were all NaN.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from tests.merge.conftest import random_lora, write_lora
from trainer.cli import main

UNET_FILE = Path("unet") / "diffusion_pytorch_model.safetensors"


def poisoned_copy(model: Path, folder: Path, value: float = float("nan")) -> tuple[Path, str]:
    """A copy of diffusers folder ``model`` with one value of one UNet weight set to ``value``."""
    copy = shutil.copytree(model, folder)
    state = load_file(copy / UNET_FILE)
    name = sorted(k for k in state if k.endswith("attn2.to_k.weight"))[0]
    state[name][0, 0] = value
    save_file(state, copy / UNET_FILE)
    return copy, name


def only_inputs_left(folder: Path, *inputs: str) -> None:
    """Nothing was written: no output, no staging folder, no temporary file."""
    assert sorted(p.name for p in folder.iterdir()) == sorted(inputs)


def test_checkpoint_merge_refuses_a_nan_alpha(tmp_path, capsys, sd15_a, sd15_b):
    assert main(["merge", "checkpoints", str(sd15_a), str(sd15_b), "--alpha", "nan", "--out",
                 str(tmp_path / "merged")]) == 2
    assert capsys.readouterr().err.strip().splitlines()[-1] == "error: alpha must be a finite number, got nan"
    only_inputs_left(tmp_path)


def test_checkpoint_merge_refuses_an_input_tensor_with_nan(tmp_path, capsys, sd15_a, sd15_b):
    broken, name = poisoned_copy(sd15_b, tmp_path / "broken-b")
    assert main(["merge", "checkpoints", str(sd15_a), str(broken), "--out", str(tmp_path / "merged")]) == 2
    error = capsys.readouterr().err.strip().splitlines()[-1]
    assert error.startswith(f"error: model B: {broken}: tensor unet/{name} holds 1 NaN or infinite value(s)")
    only_inputs_left(tmp_path, "broken-b")


def test_checkpoint_merge_refuses_a_result_that_overflows_its_dtype(tmp_path, capsys, sd15_a, sd15_b):
    assert main(["merge", "checkpoints", str(sd15_a), str(sd15_b), "--alpha", "1e6", "--dtype", "fp16", "--out",
                 str(tmp_path / "merged")]) == 2
    assert "overflows torch.float16 to infinity; check alpha and the block weights" in capsys.readouterr().err
    only_inputs_left(tmp_path)


def test_fuse_refuses_a_nan_lora_naming_the_tensor(tmp_path, capsys, sd15_a):
    tensors = random_lora(sd15_a, "sd15", seed=3, rank=2, alpha=2.0)
    name = sorted(k for k in tensors if k.endswith("lora_up.weight"))[0]
    tensors[name][0, 0] = float("inf")
    lora = write_lora(tmp_path / "broken.safetensors", tensors)
    assert main(["merge", "fuse-lora", str(sd15_a), str(lora), "--out-dir", str(tmp_path / "fused"),
                 "--out-file", str(tmp_path / "fused.safetensors")]) == 2
    error = capsys.readouterr().err.strip().splitlines()[-1]
    assert error.startswith(f"error: LoRA: {lora} tensor {name} holds 1 NaN or infinite value(s)")
    only_inputs_left(tmp_path, "broken.safetensors")
    assert main(["merge", "loras", str(lora), "--out", str(tmp_path / "m.safetensors")]) == 2
    assert f"LoRA 1: {lora} tensor {name} holds" in capsys.readouterr().err


def test_fuse_refuses_a_base_model_with_nan(tmp_path, capsys, sd15_b, lora_1):
    broken, name = poisoned_copy(sd15_b, tmp_path / "broken-base")
    assert main(["merge", "fuse-lora", str(broken), str(lora_1), "--out-file", str(tmp_path / "f.safetensors")]) == 2
    error = capsys.readouterr().err.strip().splitlines()[-1]
    assert error.startswith(f"error: base model: {broken}: unet tensor {name} holds 1 NaN or infinite value(s) "
                            "after fusing")
    only_inputs_left(tmp_path, "broken-base")
    assert torch.isfinite(load_file(lora_1)[next(iter(load_file(lora_1)))]).all()

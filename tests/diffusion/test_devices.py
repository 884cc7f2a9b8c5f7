"""The trainer's device paths — mixed precision, the GradScaler, 8-bit AdamW, resume, export, device-info and
Measure — one test body per behaviour, run on the CPU in ``make test`` and on a GPU by ``pytest -m cuda``
(``make gpu-check``).

Each test takes a device: ``cpu`` pins the trainer to the CPU (``trainer.models.pick_device`` patched, so a
GPU machine tests the CPU path too), ``cuda`` is marked ``cuda`` and skipped without a GPU (tests/conftest.py).
What only CUDA has — fp16 autocast with its GradScaler, bitsandbytes' 8-bit AdamW — has only a cuda variant;
the CPU's own answer to those settings (fp32, a refusal) is tested beside them.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import pytest
import torch
from safetensors.torch import load_file

from tests.diffusion.conftest import diffusion_config, straight_and_resumed
from tests.trainer.helpers import run_in_process
from trainer.protocol import EXIT_BAD_INPUT, EXIT_OK, Failed, Finished, Started
from trainer.runfolder import RunFolder

# bf16 keeps 8 significant bits: two runs "equal within bf16" differ by at most this much, relatively.
BF16_TOLERANCE = 2**-7
DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}
# 8-bit AdamW keeps 32-bit state for tensors under 4,096 values (bitsandbytes' min_8bit_size): the tiny
# model's attention LoRA is smaller, so its 3×3 ResNet convolutions get adapters too (rank 8 × 64 × 9).
EIGHT_BIT_LORA = {"rank": 8, "alpha": 8.0, "target_modules": ["to_q", "to_k", "to_v", "to_out.0", "conv1", "conv2"]}


def cuda(*values: Any) -> Any:
    return pytest.param("cuda", *values, marks=pytest.mark.cuda, id="-".join(["cuda", *map(str, values)]))


def cpu(*values: Any) -> Any:
    return pytest.param("cpu", *values, id="-".join(["cpu", *map(str, values)]))


@pytest.fixture
def on_device(monkeypatch):
    """Pin the trainer (its job, device-info, Measure) to a device: ``on_device("cpu")``."""

    def pin(device: str) -> str:
        monkeypatch.setattr("trainer.models.pick_device", lambda: torch.device(device))
        return device

    return pin


def bitsandbytes_or_skip(optimizer: str) -> None:
    if optimizer == "adamw8bit":
        pytest.importorskip("bitsandbytes", reason="8-bit AdamW needs bitsandbytes (installed with Kamaal)")


def assert_same(straight: torch.Tensor, resumed: torch.Tensor, device: str, what: str) -> None:
    """Bit-equal on the CPU (its kernels are deterministic); within bf16's precision on CUDA, where some
    backward kernels (nearest upsampling, some convolutions) add in a different order each run."""
    if device == "cpu":
        assert torch.equal(straight, resumed), what
    else:
        scale = float(straight.float().abs().max()) or 1.0
        torch.testing.assert_close(resumed.float(), straight.float(), rtol=BF16_TOLERANCE,
                                   atol=BF16_TOLERANCE * scale, msg=what)


@pytest.mark.parametrize(("device", "precision", "optimizer"), [
    cpu("bf16", "adamw"), cuda("bf16", "adamw"), cuda("fp16", "adamw"), cuda("bf16", "adamw8bit")])
def test_mixed_precision_resume_equals_uninterrupted(tmp_path, tiny_sd15, shapes_dataset, on_device,
                                                     device, precision, optimizer):
    """Stopped at step 5 and resumed, a mixed-precision run ends where an uninterrupted one does: the
    optimizer state (8-bit too), the GradScaler's scale (fp16) and every random stream come back."""
    bitsandbytes_or_skip(optimizer)
    on_device(device)
    config = diffusion_config(tiny_sd15, shapes_dataset, model={"precision": precision},
                              training={"steps": 12, "eval_every": 4, "optimizer": optimizer},
                              **({"lora": EIGHT_BIT_LORA} if optimizer == "adamw8bit" else {}))
    straight, _, (a, b) = straight_and_resumed(config, tmp_path, stop_at=5)
    assert straight.of(Started)[0].device.startswith(device)

    state = torch.load(RunFolder(tmp_path / "split").checkpoint_dir(5) / "training_state.pt", weights_only=True)
    assert ("grad_scaler" in state) == (precision == "fp16")  # bf16 needs no loss scaling
    if precision == "fp16":
        assert math.isfinite(state["grad_scaler"]["scale"]) and state["grad_scaler"]["scale"] > 0
    moments = tensors_in(state["optimizer"]["state"])
    assert moments, "the checkpoint holds no optimizer state"
    if optimizer == "adamw8bit":
        assert any(m.dtype == torch.uint8 for m in moments), "no 8-bit optimizer state in the checkpoint"

    assert a.keys() == b.keys()
    for key in a:
        assert_same(a[key], b[key], device, key)
    losses = [[r["loss"] for r in RunFolder(tmp_path / name).read_metrics() if r.get("loss") is not None]
              for name in ("straight", "split")]
    assert len(losses[0]) == len(losses[1]) == 12 and all(math.isfinite(x) for x in losses[0])
    assert_same(torch.tensor(losses[0]), torch.tensor(losses[1]), device, "losses")


def tensors_in(value: Any) -> list[torch.Tensor]:
    """Every tensor in a nested state (bitsandbytes 0.50 keeps its 8-bit state one dict further down)."""
    if isinstance(value, torch.Tensor):
        return [value]
    children = value.values() if isinstance(value, dict) else value if isinstance(value, (list, tuple)) else []
    return [tensor for child in children for tensor in tensors_in(child)]


def loaded_deltas(pipeline: Any) -> dict[str, torch.Tensor]:
    """ΔW of every LoRA layer diffusers put on the UNet (module path → scale · up @ down, fp32)."""
    from peft.tuners.lora import LoraLayer

    deltas = {}
    for name, layer in pipeline.unet.named_modules():
        if isinstance(layer, LoraLayer):
            for adapter in layer.lora_A:
                down, up = layer.lora_A[adapter].weight.float(), layer.lora_B[adapter].weight.float()
                deltas[name] = (layer.scaling[adapter] * up.flatten(1) @ down.flatten(1)).cpu()
    return deltas


def trained_deltas(checkpoint: Path, scale: float) -> dict[str, torch.Tensor]:
    """ΔW of every adapter as trained, from the run's own checkpoint (the peft weights, fp32)."""
    weights = load_file(checkpoint / "weights.safetensors")
    prefix, down_suffix = "unet.", ".lora_A.default.weight"
    return {key[len(prefix):-len(down_suffix)]: scale * weights[key.replace("lora_A", "lora_B")].flatten(1)
            @ weights[key].flatten(1) for key in weights if key.startswith(prefix) and key.endswith(down_suffix)}


@pytest.mark.parametrize(("device", "precision"), [cpu("bf16"), cuda("bf16"), cuda("fp16")])
def test_export_from_a_mixed_precision_run_loads_in_diffusers(tmp_path, tiny_sd15, shapes_dataset, on_device,
                                                              device, precision):
    """Both files of a bf16 (fp16) run, loaded by diffusers into a pipeline of that dtype on that device, put
    every trained adapter on the UNet with the trained ΔW (module by module), and the pipeline draws."""
    import diffusers
    import numpy as np

    on_device(device)
    config = diffusion_config(tiny_sd15, shapes_dataset, model={"precision": precision},
                              training={"steps": 6, "eval_every": 6})
    code, rec = run_in_process(config, tmp_path / "run")
    assert code == EXIT_OK, rec.of(Failed)
    run = RunFolder(tmp_path / "run")
    trained = trained_deltas(run.checkpoint_dir(6), config.lora.alpha / config.lora.rank)
    assert trained and any(float(delta.abs().max()) > 0 for delta in trained.values())

    for lora_file in (Path(p) for p in rec.of(Finished)[0].outputs):
        pipe = diffusers.StableDiffusionPipeline.from_pretrained(
            tiny_sd15, dtype=DTYPES[precision], local_files_only=True, safety_checker=None,
            requires_safety_checker=False).to(device)
        pipe.set_progress_bar_config(disable=True)
        pipe.load_lora_weights(str(lora_file.parent), weight_name=lora_file.name)
        loaded = loaded_deltas(pipe)
        assert set(loaded) == set(trained), f"{lora_file.name}: modules lost or added"
        for name, delta in trained.items():
            # The file is read into the pipeline's dtype: equal within that dtype's precision.
            torch.testing.assert_close(loaded[name], delta, rtol=BF16_TOLERANCE,
                                       atol=BF16_TOLERANCE * float(delta.abs().max()), msg=name)
        image = pipe("a red circle", width=64, height=64, num_inference_steps=3,
                     generator=torch.Generator("cpu").manual_seed(7)).images[0]
        pixels = np.asarray(image, dtype=np.int16)
        assert pixels.std() > 1, f"{lora_file.name}: a flat picture (NaN in {precision}?)"


def test_adamw8bit_is_refused_on_the_cpu_naming_the_field(tmp_path, tiny_sd15, shapes_dataset, on_device):
    """The CPU's answer to 8-bit AdamW (bitsandbytes' optimizers are CUDA kernels): a refusal naming the field."""
    on_device("cpu")
    config = diffusion_config(tiny_sd15, shapes_dataset, training={"steps": 2, "optimizer": "adamw8bit"})
    code, rec = run_in_process(config, tmp_path / "run")
    assert code == EXIT_BAD_INPUT
    assert rec.of(Failed)[0].message.startswith("training.optimizer: adamw8bit needs a CUDA GPU")


@pytest.mark.parametrize("device", [cpu(), cuda()])
def test_device_info_and_measure_report_the_training_device(tiny_sd15, shapes_dataset, on_device, device):
    """device-info names the device training would use; Measure trains on it and reads its memory."""
    from trainer.runlog import NoCommands
    from trainer.tasks.measure import device_info, measure
    from trainer.tasks.runner import TaskContext

    class Quiet:
        def emit(self, event: Any) -> None:
            pass

    on_device(device)
    context = TaskContext(NoCommands(), Quiet())
    info = device_info({"model": str(tiny_sd15)}, context)
    assert info["cuda"] == (device == "cuda") and info["total_bytes"] >= info["free_bytes"] > 0
    assert info["name"] == (torch.cuda.get_device_name(0) if device == "cuda" else "CPU")
    assert info["parameters"]["unet"] == sum(p.numel() for p in load_unet(tiny_sd15).parameters())

    config = diffusion_config(tiny_sd15, shapes_dataset, training={"batch_size": 1})
    result = measure({"config": config.to_dict(), "steps": 5, "warmup": 2}, context)
    assert result["device"].startswith(device) and result["steps"] == 5
    assert result["memory_kind"] == ("cuda" if device == "cuda" else "rss")
    assert 0 < result["peak_memory_bytes"] <= result["peak_reserved_bytes"]
    assert len(result["losses"]) == 5 and all(math.isfinite(x) for x in result["losses"])
    assert math.isfinite(result["it_per_s"]) and result["it_per_s"] > 0


def load_unet(model: Path) -> torch.nn.Module:
    from diffusers import UNet2DConditionModel

    return UNet2DConditionModel.from_pretrained(model, subfolder="unet", local_files_only=True)

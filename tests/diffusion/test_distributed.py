"""Several processes under ``accelerate launch``: same result as one process with the same effective batch,
and only the main process writes the run folder."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys

import pytest
import torch
from safetensors.torch import load_file

from tests.conftest import REPO
from tests.diffusion.conftest import diffusion_config, draw_shapes
from tests.trainer.helpers import run_in_process
from trainer.config import save_config
from trainer.protocol import EXIT_OK, Failed

STEPS = 4


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def lora_config(model, dataset, batch_size: int):
    return diffusion_config(model, dataset, training={"steps": STEPS, "batch_size": batch_size, "eval_every": STEPS,
                                                      "warmup_steps": 0, "learning_rate": 1e-2},
                            lora={"rank": 4, "alpha": 4.0, "dropout": 0.0, "train_text_encoder": True},
                            sampling={"prompts": ["a red circle"], "seeds": [7], "inference_steps": 2,
                                      "at_start": False, "every_n_steps": 0},
                            output={"run_name": "tiny", "checkpoint_every": 2})


def final_weights(run_dir) -> dict[str, torch.Tensor]:
    return load_file(run_dir / "checkpoints" / f"step-{STEPS:06d}" / "weights.safetensors")


def largest_difference(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> float:
    assert a.keys() == b.keys()
    return max(float((a[k] - b[k]).abs().max()) for k in a)


@pytest.mark.timeout(600)
def test_two_processes_match_one_with_the_same_effective_batch(tmp_path, tiny_sd15):
    dataset = draw_shapes(tmp_path / "data", 8)  # one bucket, full batches: 8 = 2 global batches of 4
    single = {}
    for batch in (4, 2):
        code, rec = run_in_process(lora_config(tiny_sd15, dataset, batch), tmp_path / f"single-{batch}")
        assert code == EXIT_OK, rec.of(Failed)
        single[batch] = final_weights(tmp_path / f"single-{batch}")

    config_path = tmp_path / "two.toml"
    save_config(lora_config(tiny_sd15, dataset, 2), config_path)  # 2 per process × 2 processes = 4
    run_dir = tmp_path / "two"
    # accelerate's torchrun launcher ("--multi_gpu"); without CUDA the processes train on the CPU over gloo.
    # (Its "--cpu" flag alone starts one process unless MPI is installed.)
    launch = [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", "2",
              "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no",
              "--main_process_port", str(free_port()), "-m", "trainer", "train", str(config_path),
              "--run-dir", str(run_dir)]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO)}
    done = subprocess.run(launch, cwd=REPO, env=env, capture_output=True, text=True, timeout=540)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-5000:]

    two = final_weights(run_dir)
    moved = largest_difference(two, load_file(run_dir / "checkpoints" / "step-000002" / "weights.safetensors"))
    # Same as one process with batch 4, up to float summation order (Adam magnifies it a little) …
    assert largest_difference(two, single[4]) < 2e-4 < moved / 50
    assert largest_difference(two, single[2]) > 1e-2  # … and clearly not what batch 2 alone gives
    assert any(k.startswith("text_encoder_0.") for k in two)  # text-encoder LoRA gradients were averaged too

    # Only the main process wrote: one row per logged step, one log, one set of samples and outputs.
    steps = [json.loads(line)["step"] for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    assert steps == sorted(set(steps)) and steps[-1] == STEPS
    assert json.loads((run_dir / "checkpoints" / f"step-{STEPS:06d}" / "state.json").read_text())["processes"] == 2
    assert sorted(p.name for p in (run_dir / "output").iterdir()) == ["diffusers", "tiny.safetensors"]
    assert len(list((run_dir / "samples").rglob("*.png"))) == 1
    assert done.stdout.count("Finished at step") == 1

"""Kamaal's LoRA step against a bare DreamBooth-LoRA-style loop: same tiny model, data, batch, steps.

    python -m bench --only bench_training

Kamaal runs in-process through ``trainer.worker.run_worker`` (a recording sink, no child process:
bench_messaging measures that part), once with latent/text caching on and once off.  Its steps/s
come from the worker's own ``Progress`` events (``elapsed_s`` at each step), so loading, sampling and
saving are outside the window.  The reference (``bench/reference_loop.py``, shared with
``gpu_check``) is written the way the diffusers ``train_dreambooth_lora.py`` example works: VAE encode and
text encoder on every step, ``add_adapter`` (peft) on the UNet, AdamW, DDPM noise, MSE on epsilon.  The
first ``WARMUP`` steps are excluded
from both.  The ratio is Kamaal ÷ reference steps/s (above 1: Kamaal faster).
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

from bench.reference_loop import ReferenceSpec, draw_shapes, run_reference, steps_per_s

STEPS, WARMUP, BATCH, RESOLUTION, RANK = 40, 5, 2, 64, 4


def kamaal_config(model_dir: Path, dataset_dir: Path, caching: bool, steps: int = STEPS) -> Any:
    from trainer.config import config_from_dict

    return config_from_dict({
        "mode": "lora",
        "model": {"architecture": "sd15", "path": str(model_dir)},
        "dataset": {"path": str(dataset_dir), "resolution": RESOLUTION, "min_bucket_side": 64,
                    "max_bucket_side": 128, "cache_latents": "memory" if caching else "off",
                    "cache_text": "on" if caching else "off"},
        "training": {"steps": steps, "batch_size": BATCH, "learning_rate": 1e-4, "eval_every": steps,
                     "log_every": 1, "seed": 1},
        "lora": {"rank": RANK, "alpha": float(RANK)},
        "sampling": {"prompts": ["a red circle"], "seeds": [7], "inference_steps": 1, "at_start": False},
        "output": {"run_name": "bench"},
    })


class _Recorder:
    def __init__(self) -> None:
        self.events: list[Any] = []

    def emit(self, event: Any) -> None:
        self.events.append(event)


def kamaal_steps_per_s(config: Any, run_dir: Path) -> float:
    from trainer.protocol import Failed, Progress
    from trainer.runfolder import RunFolder
    from trainer.runlog import NoCommands
    from trainer.worker import run_worker

    RunFolder.create(config, run_dir)
    sink = _Recorder()
    code = run_worker(run_dir, NoCommands(), sink)
    failed = [e for e in sink.events if isinstance(e, Failed)]
    if code != 0 or failed:
        raise RuntimeError(f"Kamaal run failed (exit {code}): {failed[:1]}")
    at = {e.step: e.elapsed_s for e in sink.events if isinstance(e, Progress) and e.step > 0}
    last = max(at) - 1  # the last step's time may include the held-out evaluation at eval_every
    return (last - WARMUP) / (at[last] - at[WARMUP])


def reference_steps_per_s(model_dir: Path, dataset_dir: Path, steps: int = STEPS) -> float:
    """The diffusers DreamBooth LoRA example's inner loop (``bench/reference_loop.py``), on the CPU."""
    run = run_reference(ReferenceSpec(model_dir, dataset_dir, "sd15", RESOLUTION, BATCH, RANK, steps))
    return steps_per_s(run.stamps, WARMUP, steps - 1)  # the same steps as Kamaal's window


def rows() -> list[dict[str, str]]:
    from trainer.models.tiny import build_tiny_model

    with tempfile.TemporaryDirectory(prefix="kamaal-bench-train-") as tmp:
        root = Path(tmp)
        model_dir = build_tiny_model(root / "model", "sd15", seed=0)
        dataset_dir = draw_shapes(root / "shapes")
        reference = reference_steps_per_s(model_dir, dataset_dir)
        cached = kamaal_steps_per_s(kamaal_config(model_dir, dataset_dir, True), root / "runs" / "cached")
        uncached = kamaal_steps_per_s(kamaal_config(model_dir, dataset_dir, False), root / "runs" / "uncached")
        reference_again = reference_steps_per_s(model_dir, dataset_dir)  # both sides of the Kamaal runs
    reference = (reference + reference_again) / 2
    spread = abs(reference - reference_again) / reference
    shape = f"tiny sd15, {RESOLUTION} px, batch {BATCH}, {STEPS} steps ({WARMUP} warm-up excluded), CPU"
    return [
        {"name": "training: LoRA steps/s, caching on", "kamaal": f"{cached:.2f} it/s",
         "reference": f"{reference:.2f} it/s", "ratio": f"{cached / reference:.2f}",
         "note": f"vs diffusers DreamBooth-LoRA loop; {shape}; reference spread {spread:.0%}"},
        {"name": "training: LoRA steps/s, caching off", "kamaal": f"{uncached:.2f} it/s",
         "reference": f"{reference:.2f} it/s", "ratio": f"{uncached / reference:.2f}",
         "note": "same work per step as the reference (images read, VAE + text encoder every step)"},
    ]

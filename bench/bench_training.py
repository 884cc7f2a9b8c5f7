"""Kamaal's LoRA step against a bare DreamBooth-LoRA-style loop: same tiny model, data, batch, steps.

    python -m bench --only bench_training

Kamaal runs in-process through ``trainer.worker.run_worker`` (a recording sink, no child process:
bench_messaging measures that part), with latent/text caching on and off.  Its steps/s come from the
worker's own ``Progress`` events (``elapsed_s`` at each step), so loading, sampling and saving are
outside the window.  The reference (``bench/reference_loop.py``, shared with ``gpu_check``) is written
the way the diffusers ``train_dreambooth_lora.py`` example works: VAE encode and text encoder on every
step, ``add_adapter`` (peft) on the UNet, AdamW, DDPM noise, MSE on epsilon.  The first ``WARMUP``
steps are excluded from both.  The runs are interleaved (``ROUNDS`` rounds of reference, caching on,
caching off), so each round's ratios compare runs that shared the machine's load.  The ratio is
Kamaal ÷ reference steps/s (above 1: Kamaal faster).
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

from bench.reference_loop import ReferenceSpec, draw_shapes, run_reference, steps_per_s

STEPS, WARMUP, BATCH, RESOLUTION, RANK = 40, 5, 2, 64, 4
ROUNDS = 3  # reference, caching on, caching off: three times over, interleaved


def kamaal_config(model_dir: Path, dataset_dir: Path, caching: bool, steps: int = STEPS,
                  resolution: int = RESOLUTION, batch: int = BATCH) -> Any:
    from trainer.config import config_from_dict

    return config_from_dict({
        "mode": "lora",
        "model": {"architecture": "sd15", "path": str(model_dir)},
        "dataset": {"path": str(dataset_dir), "resolution": resolution, "min_bucket_side": 64,
                    "max_bucket_side": 2 * resolution, "cache_latents": "memory" if caching else "off",
                    "cache_text": "on" if caching else "off"},
        "training": {"steps": steps, "batch_size": batch, "learning_rate": 1e-4, "eval_every": steps,
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


class _StopAfter:
    """Commands for a timed run that need not finish: ``Stop(save=False)`` once the recorder has seen step
    ``last``, so a big model's run ends there instead of evaluating, saving, exporting and sampling."""

    def __init__(self, recorder: _Recorder, last: int) -> None:
        self.recorder, self.last = recorder, last

    def poll(self) -> Any:
        from trainer.protocol import Progress, Stop

        done = any(isinstance(e, Progress) and e.step >= self.last for e in self.recorder.events)
        return Stop(save=False) if done else None

    def wait(self, timeout: float) -> Any:
        return self.poll()


def kamaal_steps_per_s(config: Any, run_dir: Path, warmup: int = WARMUP, stop_after: int | None = None) -> float:
    """Steps/s from the worker's own ``Progress`` times over steps ``warmup + 1 …``: up to the step before the last
    (whose time may include the held-out evaluation at ``eval_every``), or to ``stop_after``, where it stops."""
    from trainer.protocol import Failed, Progress
    from trainer.runfolder import RunFolder
    from trainer.runlog import NoCommands
    from trainer.worker import run_worker

    RunFolder.create(config, run_dir)
    sink = _Recorder()
    commands = NoCommands() if stop_after is None else _StopAfter(sink, stop_after)
    code = run_worker(run_dir, commands, sink)
    failed = [e for e in sink.events if isinstance(e, Failed)]
    if code != 0 or failed:
        raise RuntimeError(f"Kamaal run failed (exit {code}): {failed[:1]}")
    at = {e.step: e.elapsed_s for e in sink.events if isinstance(e, Progress) and e.step > 0}
    last = stop_after if stop_after is not None else max(at) - 1
    return (last - warmup) / (at[last] - at[warmup])


def reference_steps_per_s(model_dir: Path, dataset_dir: Path, steps: int = STEPS) -> float:
    """The diffusers DreamBooth LoRA example's inner loop (``bench/reference_loop.py``), on the CPU."""
    run = run_reference(ReferenceSpec(model_dir, dataset_dir, "sd15", RESOLUTION, BATCH, RANK, steps))
    return steps_per_s(run.stamps, WARMUP, steps - 1)  # the same steps as Kamaal's window


def _spread(values: list[float]) -> str:
    return f"{min(values):.2f}–{max(values):.2f}"


def rows() -> list[dict[str, str]]:
    """ROUNDS rounds of reference, caching on, caching off, back to back: a load that comes and goes (another
    job on the machine) slows the runs of one round alike, so each round's ratios stay fair.  The row gives the
    median ratio over the rounds, and the range.

    Both sides run with the torch thread count Kamaal's trainer picks on this machine (``trainer.threads``:
    1 on 2 cores): torch's default of one spinning thread per core collapses both sides under a passing load
    (on 2 shared cores at load 5: under 1 it/s, round ratios 0.4–4.8), which measures the load, not the loop."""
    import os
    import statistics

    import torch

    from trainer.models.tiny import build_tiny_model
    from trainer.threads import choose_threads, usable_cores

    speeds: dict[str, list[float]] = {"reference": [], "on": [], "off": []}
    before = torch.get_num_threads()
    chosen = choose_threads(os.environ, cuda=False, cores=usable_cores()).threads
    torch.set_num_threads(chosen or before)
    with tempfile.TemporaryDirectory(prefix="kamaal-bench-train-") as tmp:
        root = Path(tmp)
        model_dir = build_tiny_model(root / "model", "sd15", seed=0)
        dataset_dir = draw_shapes(root / "shapes")
        for round_ in range(ROUNDS):
            speeds["reference"].append(reference_steps_per_s(model_dir, dataset_dir))
            for caching in ("on", "off"):
                config = kamaal_config(model_dir, dataset_dir, caching == "on")
                speeds[caching].append(kamaal_steps_per_s(config, root / "runs" / f"{caching}-{round_}"))
    threads = torch.get_num_threads()
    torch.set_num_threads(before)
    load = " ".join(f"{v:.1f}" for v in os.getloadavg()) if hasattr(os, "getloadavg") else "n/a"
    shape = (f"tiny sd15, {RESOLUTION} px, batch {BATCH}, {STEPS} steps ({WARMUP} warm-up excluded), CPU, "
             f"{threads} torch thread(s) both sides, {ROUNDS} interleaved rounds, load {load} at the end")
    out = []
    for caching, what in (("on", f"vs diffusers DreamBooth-LoRA loop; {shape}"),
                          ("off", "same work per step as the reference (images read, VAE + text encoder every step)")):
        ratios = [k / r for k, r in zip(speeds[caching], speeds["reference"], strict=True)]
        out.append({"name": f"training: LoRA steps/s, caching {caching}",
                    "kamaal": f"{statistics.median(speeds[caching]):.2f} it/s ({_spread(speeds[caching])})",
                    "reference": f"{statistics.median(speeds['reference']):.2f} it/s ({_spread(speeds['reference'])})",
                    "ratio": f"{statistics.median(ratios):.2f} ({_spread(ratios)})", "note": what})
    return out

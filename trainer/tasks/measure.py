"""Tasks for the hyperparameter panel: which device trains, how much memory a config really takes, and
the block tree of a model (toy network included).

Run in a trainer process (spawn child; heavy: torch).  ``measure`` reuses the training engine itself:
it snapshots the config into a throw-away run folder and drives :func:`trainer.worker.run_worker` for a
few steps with a command source that stops it (without saving), reading the ``Progress`` events on
the way — so the numbers are those of a real run, not of a model of one.
"""

from __future__ import annotations

import math
import shutil
import tempfile
import time
from pathlib import Path

from trainer.config import config_from_dict
from trainer.errors import InputError
from trainer.families import is_toy
from trainer.model_sizes import count_parameters
from trainer.protocol import Command, Event, Failed, OutOfMemory, Progress, Started, Stop
from trainer.runfolder import RunFolder
from trainer.tasks.runner import TaskCancelled, TaskContext

MEASURE_STEPS_DEFAULT = 5


def machine_facts() -> dict:
    """``{"cuda": bool, "name", "total_bytes", "free_bytes", "ram_bytes", "cpu_count", "torch", "cpu_threads"}``:
    the device training would use (total/free: the GPU's memory, or the computer's without one), and the
    computer's memory and cores (what the memory planner needs besides)."""
    import os

    import psutil
    import torch

    from trainer.models import pick_device

    # str(): torch.__version__ is a TorchVersion, and unpickling one would import torch into the GUI process.
    memory = psutil.virtual_memory()
    result = {"cuda": False, "name": "CPU", "total_bytes": int(memory.total), "free_bytes": int(memory.available),
              "ram_bytes": int(memory.total), "cpu_count": os.cpu_count() or 1, "torch": str(torch.__version__),
              "cpu_threads": torch.get_num_threads()}
    if pick_device().type == "cuda":  # the device training would pick (one rule for both)
        free, total = torch.cuda.mem_get_info(0)
        result.update(cuda=True, name=torch.cuda.get_device_name(0), total_bytes=int(total), free_bytes=int(free))
    return result


def device_info(args: dict, context: TaskContext) -> dict:
    """:func:`machine_facts` and, given ``args["model"]``, ``"parameters"``: the model's parameter counts by
    component (from file headers)."""
    result = machine_facts()
    model = str(args.get("model") or "")
    result["parameters"] = count_parameters(Path(model)) if model else {}
    return result


class _StopAfter:
    """The command source of a measuring run: ``Stop(save=False)`` once ``steps`` steps are done or on cancel."""

    def __init__(self, steps: int, context: TaskContext) -> None:
        self.steps, self.context = steps, context
        self.done = 0

    def poll(self) -> Command | None:
        if self.done >= self.steps or self.context.cancelled():
            return Stop(save=False)
        return None

    def wait(self, timeout: float) -> Command | None:
        time.sleep(timeout)
        return self.poll()


class _Readings:
    """The event sink of a measuring run: keeps the progress readings, passes on what matters."""

    def __init__(self, stopper: _StopAfter, context: TaskContext) -> None:
        self.stopper, self.context = stopper, context
        self.progress: list[Progress] = []
        self.failure: Failed | None = None
        self.device = "cpu"

    def emit(self, event: Event) -> None:
        if isinstance(event, Progress) and event.step > 0:
            self.progress.append(event)
            self.stopper.done = event.step
            self.context.progress(event.step, self.stopper.steps, f"step {event.step} of {self.stopper.steps}")
        elif isinstance(event, Failed):
            self.failure = event
        elif isinstance(event, OutOfMemory):  # this plan does not fit: a measurement of it failed
            self.failure = Failed("error", f"Out of memory in step {event.step}: {event.message}")
        elif isinstance(event, Started):
            self.device = event.device


def measure(args: dict, context: TaskContext) -> dict:
    """Train ``args["config"]`` (a resolved config dict) for ``args["steps"]`` steps; report speed and memory.

    Result: ``{"steps", "it_per_s", "peak_memory_bytes", "peak_reserved_bytes", "memory_kind", "device",
    "seconds", "losses"}``; it/s leaves out the first ``args["warmup"]`` steps (default 1: they pay for warm-up —
    allocations, kernel selection).  On CUDA ``peak_memory_bytes`` is the peak *allocated* and
    ``peak_reserved_bytes`` the peak held by PyTorch's caching allocator (nearer what nvidia-smi shows); on
    the CPU both are the peak resident set size.  ``losses`` are the training losses of every step.
    """
    from trainer.worker import run_worker  # heavy, and only in the child

    warmup = max(1, int(args.get("warmup", 1)))
    steps = max(warmup + 1, int(args.get("steps", MEASURE_STEPS_DEFAULT)))
    data = dict(args["config"])
    # Measure training only: no samples, checkpoints or held-out passes in the way; every step logged.
    data["training"] = {**data.get("training", {}), "steps": max(steps, int(data.get("training", {})
                                                                            .get("warmup_steps", 0))),
                        "log_every": 1, "eval_every": 10_000_000}
    data["sampling"] = {**data.get("sampling", {}), "at_start": False, "every_n_steps": 0}
    data["output"] = {**data.get("output", {}), "checkpoint_every": 0}
    config = config_from_dict(data, "measure")
    folder = Path(tempfile.mkdtemp(prefix="kamaal-measure-"))
    try:
        context.progress(0, steps, "Loading the model…")
        run = RunFolder.create(config, folder / "run")
        stopper = _StopAfter(steps, context)
        readings = _Readings(stopper, context)
        started = time.perf_counter()
        run_worker(run.root, stopper, readings)
        seconds = time.perf_counter() - started
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    if context.cancelled():
        raise TaskCancelled
    if readings.failure is not None:
        if readings.failure.kind == "input":
            raise InputError(readings.failure.message)
        raise RuntimeError(readings.failure.message)
    timed = [p for p in readings.progress if p.step >= warmup]  # from the end of the last warm-up step
    if len(timed) >= 2:
        it_per_s = (timed[-1].step - timed[0].step) / max(timed[-1].elapsed_s - timed[0].elapsed_s, 1e-9)
    else:
        # Too few steps for a difference: the one speed there is (warm-up included, so a low estimate).
        last_reading = readings.progress[-1] if readings.progress else None
        it_per_s = (last_reading.it_per_s or last_reading.step / max(last_reading.elapsed_s, 1e-9)
                    if last_reading is not None else math.nan)
    last = readings.progress[-1] if readings.progress else None
    peak = max((p.peak_memory_bytes for p in readings.progress), default=0)
    return {"steps": last.step if last else 0, "it_per_s": it_per_s, "seconds": seconds,
            "peak_memory_bytes": peak, "peak_reserved_bytes": _peak_reserved(readings.device, peak),
            "memory_kind": last.memory_kind if last else "", "device": readings.device,
            "losses": [p.loss for p in readings.progress]}


def _peak_reserved(device: str, peak_allocated: int) -> int:
    """The caching allocator's peak on CUDA (of the whole process: a task child measures nothing else);
    elsewhere the peak itself."""
    if not device.startswith("cuda"):
        return peak_allocated
    import torch

    return int(torch.cuda.max_memory_reserved())


def model_blocks(args: dict, context: TaskContext) -> dict:
    """The block tree for the frozen-layer panel: the toy network's layers, or a Stable Diffusion model's
    UNet and text encoders (as ``inspect-blocks``).  Arguments: ``architecture``, ``model``, ``depth``."""
    if not is_toy(args.get("architecture")):
        from trainer.tasks.builtin import inspect_blocks

        return inspect_blocks(args, context)
    from trainer.freezing import block_tree
    from trainer.jobs.toy import ToyNet

    context.progress(0, 1, "Building the toy network…")
    tree = block_tree(ToyNet(), int(args.get("depth", 2)))
    rows = [{"block": block, "parameters": total, "trainable": 0} for block, (total, _) in tree.items()]
    context.progress(1, 1, "Done")
    return {"model": str(args.get("model") or "toy network"), "blocks": {"network": rows}}

"""Out of memory in a training step (issue 24): recognised, measured, and planned around.

The loop (``trainer/worker.py``) catches the failure, has the job undo the failed step
(:meth:`TrainingJob.undo_failed_step`), frees what it can, saves the state after the last completed step and
reports an :class:`~trainer.protocol.OutOfMemory` event with the next-smaller memory plan
(:func:`trainer.memory_plan.next_smaller_plan`), computed for this device with the pressure the failure measured.
"""

from __future__ import annotations

import gc
import os
from dataclasses import dataclass
from pathlib import Path

import psutil
import torch

from trainer.config import Config
from trainer.memory_plan import DeviceFacts, MemoryPlan, next_smaller_plan

# What the CPU allocator says when malloc fails: a RuntimeError, not torch.OutOfMemoryError (torch 2.13).
_CPU_ALLOCATOR_WORDS = ("DefaultCPUAllocator: can't allocate memory", "DefaultCPUAllocator: not enough memory")


def is_out_of_memory(exc: BaseException) -> bool:
    """CUDA's OutOfMemoryError, the CPU allocator's failure, or Python's (and numpy's) MemoryError."""
    if isinstance(exc, (torch.OutOfMemoryError, MemoryError)):
        return True
    return isinstance(exc, RuntimeError) and any(words in str(exc) for words in _CPU_ALLOCATOR_WORDS)


@dataclass(frozen=True)
class MemoryAtFailure:
    """``peak``: the most the run held (CUDA: allocated; CPU: resident); ``limit``: what it could hold when it
    failed (CUDA: its allocator's reservation plus the free memory; CPU: resident plus what was left — available
    memory, a container's limit, ``ulimit -v``)."""

    peak: int
    limit: int
    device: DeviceFacts


def memory_at_failure(device: str) -> MemoryAtFailure:
    """Measured right after the failure, before anything is freed (the peak counters keep the peak)."""
    ram = psutil.virtual_memory()
    if device.startswith("cuda"):
        index = torch.device(device).index or 0
        free, total = torch.cuda.mem_get_info(index)
        limit = int(torch.cuda.memory_reserved(index) + free)
        facts = DeviceFacts(vram_total=int(total), ram=int(ram.total), vram_free=limit, cpus=os.cpu_count() or 1)
        return MemoryAtFailure(int(torch.cuda.max_memory_allocated(index)), limit, facts)
    memory = psutil.Process().memory_info()
    limit = int(memory.rss + _room_left(ram.available, memory.vms))
    # On the CPU the run's budget is what it could have had, not the computer's total (other programs hold the rest).
    return MemoryAtFailure(_peak_rss(memory.rss), limit, DeviceFacts(vram_total=0, ram=limit, cpus=os.cpu_count() or 1))


def _room_left(available: int, virtual: int) -> int:
    """How much more the process could have taken: the computer's available memory, or less where a container's
    memory limit (cgroup v2) or the process's address-space limit (``ulimit -v``) leaves less."""
    room = available
    try:
        limit, used = (Path("/sys/fs/cgroup", name).read_text().strip() for name in ("memory.max", "memory.current"))
        if limit.isdigit() and used.isdigit():
            room = min(room, max(int(limit) - int(used), 0))
    except OSError:
        pass  # no cgroup v2 here
    try:
        import resource

        address_space = resource.getrlimit(resource.RLIMIT_AS)[0]
        if address_space != resource.RLIM_INFINITY:
            room = min(room, max(address_space - virtual, 0))
    except ImportError:
        pass  # Windows
    return room


def _peak_rss(current: int) -> int:
    try:
        import resource
    except ImportError:  # Windows: psutil's peak working set
        return int(getattr(psutil.Process().memory_info(), "peak_wset", current))
    return max(current, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024)  # Linux: kB


def free_memory(device: str) -> None:
    """Return the failed step's memory: its tensors are unreachable once the exception is gone."""
    gc.collect()
    if device.startswith("cuda"):
        torch.cuda.empty_cache()


def plan_after(config: Config, measured: MemoryAtFailure, images: int) -> MemoryPlan | None:
    """The next-smaller plan for this device, from the model's own sizes where its files tell them."""
    from trainer.model_sizes import count_parameters

    parameters = count_parameters(Path(config.model.path)) if config.model.path else {}
    return next_smaller_plan(config, measured.device, parameters or None, images, measured.limit)


def first_line(exc: BaseException) -> str:
    lines = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {lines[0][:400] if lines else ''}"

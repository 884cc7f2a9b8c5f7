"""Speed, ETA and memory readings for progress events.

Speed is a moving average over recent steps (so a slow first step or a pause does not
distort the ETA); paused time is not training time.  Memory is CUDA allocated/peak on a
GPU, the process's resident set size on the CPU.
"""

from __future__ import annotations

import time

import psutil

SMOOTHING = 0.1  # weight of the newest step in the moving average of step time


class Speedometer:
    def __init__(self, total_steps: int, start_step: int = 0, elapsed_s: float = 0.0) -> None:
        self.total_steps = total_steps
        self._elapsed_before = elapsed_s
        self._started = time.perf_counter()
        self._last = self._started
        self._paused_at: float | None = None
        self._paused_total = 0.0
        self._step_time: float | None = None
        self._ticks = 0

    def tick(self) -> None:
        now = time.perf_counter()
        duration = now - self._last
        self._last = now
        self._ticks += 1
        if self._ticks == 1:
            return  # the first step after a start includes warm-up (first kernels, caches): not a speed
        self._step_time = duration if self._step_time is None else (
            (1 - SMOOTHING) * self._step_time + SMOOTHING * duration)

    def pause(self) -> None:
        self._paused_at = time.perf_counter()

    def resume(self) -> None:
        if self._paused_at is not None:
            paused = time.perf_counter() - self._paused_at
            self._paused_total += paused
            self._last += paused  # the step after a pause is not charged for it
            self._paused_at = None

    @property
    def elapsed_s(self) -> float:
        return self._elapsed_before + (time.perf_counter() - self._started - self._paused_total)

    @property
    def it_per_s(self) -> float:
        return 1.0 / self._step_time if self._step_time else 0.0

    def eta_s(self, step: int) -> float:
        return (self.total_steps - step) * self._step_time if self._step_time else 0.0


class MemoryMeter:
    def __init__(self, device: str) -> None:
        self.kind = "cuda" if device.startswith("cuda") else "rss"
        self._process = psutil.Process()
        self._peak = 0

    def read(self) -> tuple[int, int]:
        """(current, peak) bytes."""
        if self.kind == "cuda":
            import torch

            return int(torch.cuda.memory_allocated()), int(torch.cuda.max_memory_allocated())
        used = int(self._process.memory_info().rss)
        self._peak = max(self._peak, used)
        return used, self._peak

"""Event-loop stalls, measured the way a user feels them: a 5 ms ``QTimer`` on the GUI thread, whose
late ticks are the time the loop was busy elsewhere (stall = gap between two ticks − the interval).

    meter = StallMeter()          # after the QApplication exists
    meter.start(); ...; meter.stop()
    meter.summary()               # {"max_ms", "p99_ms", "over_50ms", "ticks", "seconds"}

On Linux each stall is also split by the GUI thread's scheduler statistics
(``/proc/thread-self/schedstat``): time it ran on a CPU (its own work: a slot, painting), time it
waited for a CPU (the machine was busy: other processes, our own workers), and the rest, time it
was blocked (the GIL held by a worker thread, a lock).  ``breakdown()`` sums that over the stalls
over 50 ms: which of the three to fix.

``StallMeter(sample_stacks=True)`` also runs a watcher thread that, while a tick is more than
``SAMPLE_AFTER_MS`` late, records the GUI thread's Python stack every couple of milliseconds; the
stacks seen during the longest stalls say which slot, paint or model update held the loop (when
the stack ends in the event loop itself, the time went to Qt's C++ code: layout, painting).  The
watcher competes for the GIL, so numbers taken with it are not the ones to report.

Not a test: the numbers are compared with a reference measured the same way on the same machine.
"""

from __future__ import annotations

import math
import os
import sys
import threading
import time
import traceback
from collections import Counter
from collections.abc import Callable

TICK_MS = 5
OVER_MS = 50.0
SAMPLE_AFTER_MS = 20.0


def percentile(values: list[float], q: float) -> float:
    """The ``q``-quantile (0–1) by the nearest-rank method; 0 for no values."""
    if not values:
        return 0.0
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, math.ceil(q * len(ordered)) - 1))]


class StallMeter:
    """A high-frequency timer on the GUI thread; every late tick is a stall (see the module docstring)."""

    def __init__(self, interval_ms: int = TICK_MS, *, sample_stacks: bool = False) -> None:
        from PySide6.QtCore import Qt, QTimer

        self.interval_ms = interval_ms
        self.stalls: list[float] = []  # one per tick: how late it came, in ms (0 when on time)
        self.long: list[tuple[float, float, float]] = []  # per stall over 50 ms: (stall, on CPU, waiting for one) ms
        self._schedfd: int | None = None
        self._sched: tuple[int, int] | None = None
        self._last = 0.0
        self._started = 0.0
        self._stopped = 0.0
        self._timer = QTimer()
        self._timer.setTimerType(Qt.TimerType.PreciseTimer)
        self._timer.setInterval(interval_ms)
        self._timer.timeout.connect(self._tick)
        self._sample = sample_stacks
        self._gui_thread = threading.get_ident()
        self._watcher: threading.Thread | None = None
        self._watching = threading.Event()
        self.stacks: list[tuple[float, str]] = []  # (how late the tick was when seen, stack text)

    def start(self) -> None:
        self.stalls.clear()
        self.long.clear()
        self._schedfd = _open_schedstat()  # the GUI thread's: start is called there
        self._sched = _schedstat(self._schedfd)
        self._started = self._last = time.perf_counter()
        self._timer.start()
        if self._sample:
            self._watching.set()
            self._watcher = threading.Thread(target=self._watch, name="stall-watcher", daemon=True)
            self._watcher.start()

    def stop(self) -> None:
        self._timer.stop()
        self._stopped = time.perf_counter()
        if self._schedfd is not None:
            os.close(self._schedfd)
            self._schedfd = None
        self._watching.clear()
        if self._watcher is not None:
            self._watcher.join()
            self._watcher = None

    def _tick(self) -> None:
        now = time.perf_counter()
        stall = max(0.0, (now - self._last) * 1000 - self.interval_ms)
        self.stalls.append(stall)
        sched = _schedstat(self._schedfd)
        if stall > OVER_MS and sched is not None and self._sched is not None:
            self.long.append((stall, (sched[0] - self._sched[0]) / 1e6, (sched[1] - self._sched[1]) / 1e6))
        self._sched = sched
        self._last = now

    def summary(self) -> dict[str, float]:
        seconds = (self._stopped or time.perf_counter()) - self._started
        return {"max_ms": round(max(self.stalls, default=0.0), 1), "p99_ms": round(percentile(self.stalls, 0.99), 1),
                "over_50ms": sum(1 for s in self.stalls if s > OVER_MS), "ticks": len(self.stalls),
                "seconds": round(seconds, 2)}

    def breakdown(self) -> str:
        """Where the stalls over 50 ms went: the GUI thread running, waiting for a CPU, or blocked."""
        if not self.long:
            return "no stall over 50 ms" if self._sched is not None or not self.stalls else "n/a"
        total = sum(s for s, _c, _w in self.long)
        cpu = sum(c for _s, c, _w in self.long)
        wait = sum(w for _s, _c, w in self.long)
        return (f"{len(self.long)} stalls over 50 ms, {total:.0f} ms: GUI thread on a CPU {100 * cpu / total:.0f} %, "
                f"waiting for a CPU {100 * wait / total:.0f} %, blocked (GIL, locks) "
                f"{max(0.0, 100 * (total - cpu - wait) / total):.0f} %")

    # ---------------------------------------------------------------- stack sampling (profiling only)

    def _watch(self) -> None:
        while self._watching.is_set():
            time.sleep(0.002)
            late_ms = (time.perf_counter() - self._last) * 1000 - self.interval_ms
            if late_ms < SAMPLE_AFTER_MS:
                continue
            frame = sys._current_frames().get(self._gui_thread)
            if frame is not None:
                stack = "".join(traceback.format_stack(frame, limit=7))
                self.stacks.append((late_ms, stack))

    def report_stacks(self, top: int = 8) -> str:
        """The GUI thread's stacks seen most often during stalls, with how often (profiling)."""
        counts = Counter(stack for _late, stack in self.stacks)
        worst: dict[str, float] = {}
        for late, stack in self.stacks:
            worst[stack] = max(worst.get(stack, 0.0), late)
        parts = [f"--- seen {n}× (up to {worst[stack]:.0f} ms late)\n{stack}" for stack, n in counts.most_common(top)]
        return "\n".join(parts) if parts else "(no stall long enough to sample)"


def _open_schedstat() -> int | None:
    """A descriptor on the calling thread's scheduler statistics (Linux), read again with ``pread``."""
    try:
        return os.open("/proc/thread-self/schedstat", os.O_RDONLY)
    except OSError:
        return None


def _schedstat(fd: int | None) -> tuple[int, int] | None:
    """That thread's (ns on a CPU, ns waiting on a run queue); None where there are no such statistics."""
    if fd is None:
        return None
    try:
        on_cpu, waiting, _slices = os.pread(fd, 128, 0).split()
        return int(on_cpu), int(waiting)
    except (OSError, ValueError):
        return None


def wait_until(done: Callable[[], object], timeout_s: float, step_ms: int = 5) -> bool:
    """Run the event loop until ``done()`` is true or ``timeout_s`` passes; returns ``done()``."""
    from PySide6.QtCore import QEventLoop, QTimer

    loop = QEventLoop()
    deadline = time.perf_counter() + timeout_s
    while not done() and time.perf_counter() < deadline:
        QTimer.singleShot(step_ms, loop.quit)
        loop.exec()
    return bool(done())

"""The cost of the trainer child process and its queues: a short toy run through
``trainer.process.TrainerProcess`` (spawn child, events over a queue, polled the way the GUI polls)
against the same run in-process through ``run_worker`` with a recording sink.

Wall time from start to the exit code, including the child's spawn and imports (what the user
waits for).  The ratio is child ÷ in-process wall time (above 1: the overhead of the process).
Best of ``REPEAT`` each, alternated.
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path
from typing import Any

PRESET = Path(__file__).resolve().parents[1] / "resources" / "presets" / "toy.toml"
STEPS, REPEAT, POLL_S = 300, 2, 0.016  # the GUI polls events on a ~60 Hz timer


def toy_config(steps: int = STEPS) -> Any:
    from trainer.config import apply_overrides, config_from_dict, load_config

    data = apply_overrides(load_config(PRESET).to_dict(), [f"training.steps={steps}", "output.run_name=bench"])
    return config_from_dict(data)


class _Recorder:
    def __init__(self) -> None:
        self.events: list[Any] = []

    def emit(self, event: Any) -> None:
        self.events.append(event)


def in_process(run_dir: Path) -> tuple[float, int]:
    from trainer.runfolder import RunFolder
    from trainer.runlog import NoCommands
    from trainer.worker import run_worker

    RunFolder.create(toy_config(), run_dir)
    sink = _Recorder()
    started = time.perf_counter()
    code = run_worker(run_dir, NoCommands(), sink)
    if code != 0:
        raise RuntimeError(f"in-process toy run exited {code}")
    return time.perf_counter() - started, len(sink.events)


def in_child(run_dir: Path) -> tuple[float, int, float | None]:
    from trainer.process import TrainerProcess
    from trainer.protocol import Started
    from trainer.runfolder import RunFolder

    RunFolder.create(toy_config(), run_dir)
    started = time.perf_counter()
    child = TrainerProcess(run_dir)
    events: list[Any] = []
    started_at: float | None = None  # when the child's Started event arrived: spawn + imports + run setup
    try:
        child.start()
        while child.is_alive():
            events += child.poll_events()
            if started_at is None and any(isinstance(e, Started) for e in events):
                started_at = time.perf_counter() - started
            time.sleep(POLL_S)
        child.join(30)
        events += child.poll_events()
        seconds = time.perf_counter() - started
        if child.exitcode != 0:
            raise RuntimeError(f"trainer child exited {child.exitcode}")
    finally:
        child.close()
    return seconds, len(events), started_at


def rows() -> list[dict[str, str]]:
    inside, child, first = float("inf"), float("inf"), float("inf")
    counts = (0, 0)
    with tempfile.TemporaryDirectory(prefix="kamaal-bench-msg-") as tmp:
        for i in range(REPEAT):
            s, n_in = in_process(Path(tmp) / f"in-{i}")
            inside = min(inside, s)
            s, n_child, at = in_child(Path(tmp) / f"child-{i}")
            child, first = min(child, s), min(first, at if at is not None else s)
            counts = (n_in, n_child)
    return [{"name": f"messaging: toy run, {STEPS} steps, wall time", "kamaal": f"{child:.2f} s",
             "reference": f"{inside:.2f} s", "ratio": f"{child / inside:.2f}",
             "note": f"spawn child + queue ({counts[1]} events) vs in-process run_worker ({counts[0]} events); "
                     f"best of {REPEAT}; lower is better"},
            {"name": "messaging: child start -> Started event", "kamaal": f"{first:.2f} s",
             "reference": f"{child:.2f} s", "ratio": f"{first / child:.2f}",
             "note": "spawn + imports + setup, as a share of the child run's wall time above"}]

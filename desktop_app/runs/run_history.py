"""What the Runs page says about one past run, read from its folder: name, mode, steps, how it ended.

Qt-free and cheap: the config, the *last* line of metrics.jsonl (read from the end of the file), the
checkpoint folders and the output folder.  How a run ended is read from what it left behind:

* **finished** — outputs written and the last logged step is the planned total;
* **stopped** — outputs written earlier (Stop with save); resumable from its last checkpoint;
* **interrupted** — no outputs (crash, kill, power cut); resumable when a checkpoint exists;
* **failed** — ``log.txt`` ends with the trainer's refusal or error;
* **out of memory** — ``log.txt`` ends with the trainer's out-of-memory report (its state saved, resumable;
  the app's notice, or ``kamaal-train resume --set``, continues it with a smaller plan);
* **running** — the run the session trains now (the page marks it).
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path

from trainer.config import Config, ConfigError
from trainer.runfolder import RunFolder

TAIL_BYTES = 8192
OUT_OF_MEMORY_MARKER = "Out of memory in step"  # the worker's report (trainer/worker.py)


@dataclass(frozen=True)
class RunSummary:
    root: Path
    name: str
    config: Config | None
    last_step: int
    total_steps: int
    status: str  # finished, stopped, interrupted, failed, broken (unreadable config)
    started: float  # seconds since the epoch (the config snapshot's mtime)
    checkpoint_step: int | None
    outputs: list[Path] = field(default_factory=list)
    problem: str = ""

    @property
    def resumable(self) -> bool:
        return (self.config is not None and self.checkpoint_step is not None
                and self.checkpoint_step < self.total_steps and self.status != "finished")

    @property
    def mode(self) -> str:
        if self.config is None:
            return "?"
        mode, architecture = self.config.mode, self.config.model.architecture
        return mode if mode == architecture else f"{mode} · {architecture}"

    @property
    def started_text(self) -> str:
        return time.strftime("%b %d, %H:%M", time.localtime(self.started))


def summarize(root: Path) -> RunSummary:
    run = RunFolder(Path(root))
    problem = ""
    try:
        config: Config | None = run.load_config()
    except (ConfigError, OSError) as exc:
        config, problem = None, str(exc)
    total = config.training.steps if config is not None else 0
    latest = run.latest_checkpoint()
    checkpoint_step = latest[0] if latest else None
    last_step = max(last_metrics_step(run.metrics_path), checkpoint_step or 0)
    outputs = sorted(p for p in run.output_dir.rglob("*") if p.is_file()) if run.output_dir.is_dir() else []
    failure = _failure_in_log(run.log_path)
    if config is None:
        status = "broken"
    elif failure.startswith(OUT_OF_MEMORY_MARKER):
        status, problem = "out of memory", failure.split(";")[0]
    elif failure:
        status, problem = "failed", failure
    elif outputs:
        status = "finished" if last_step >= total else "stopped"
    else:
        status = "interrupted"
    try:
        started = run.config_path.stat().st_mtime
    except OSError:
        started = 0.0
    return RunSummary(run.root, run.root.name, config, last_step, total, status, started, checkpoint_step,
                      outputs, problem)


def last_metrics_step(path: Path) -> int:
    """The step of the last complete row of metrics.jsonl (0 when there is none)."""
    try:
        with open(path, "rb") as handle:
            handle.seek(0, 2)
            size = handle.tell()
            handle.seek(max(0, size - TAIL_BYTES))
            lines = handle.read().decode("utf-8", errors="replace").splitlines()
    except OSError:
        return 0
    for line in reversed(lines):
        try:
            step = json.loads(line).get("step")
        except (json.JSONDecodeError, AttributeError):
            continue
        if isinstance(step, int):
            return step
    return 0


def _failure_in_log(path: Path) -> str:
    """The trainer's last word when it refused, failed or ran out of memory (``Refused: …`` / ``Training failed`` /
    ``Out of memory in step …``), else ""."""
    try:
        with open(path, "rb") as handle:
            handle.seek(0, 2)
            handle.seek(max(0, handle.tell() - TAIL_BYTES))
            text = handle.read().decode("utf-8", errors="replace")
    except OSError:
        return ""
    for marker in ("Refused: ", "Training failed", OUT_OF_MEMORY_MARKER):
        index = text.rfind(marker)
        if index >= 0 and "Finished at step" not in text[index:] and "Stopped at step" not in text[index:]:
            return text[index:].splitlines()[0].strip()
    return ""

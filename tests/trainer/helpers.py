"""Helpers for driving the worker in tests."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from trainer.config import Config, config_from_dict
from trainer.protocol import Command, Event
from trainer.runfolder import RunFolder


def toy_config(**sections: dict[str, Any]) -> Config:
    """A small, fast toy config; keyword arguments override whole-table values."""
    data: dict[str, Any] = {
        "mode": "toy",
        "training": {"steps": 60, "batch_size": 16, "learning_rate": 0.01, "seed": 3, "log_every": 1,
                     "eval_every": 10},
        "toy": {"samples": 256, "weights_every": 20},
        "output": {"run_name": "t"},
    }
    return config_from_dict(with_sections(data, sections))


def with_sections(data: dict[str, Any], sections: dict[str, Any]) -> dict[str, Any]:
    """``data`` with each table in ``sections`` merged in (non-table values replace)."""
    for name, values in sections.items():
        if isinstance(values, dict):
            data.setdefault(name, {}).update(values)
        else:
            data[name] = values
    return data


class Recorder:
    """An event sink that keeps every event."""

    def __init__(self) -> None:
        self.events: list[Event] = []

    def emit(self, event: Event) -> None:
        self.events.append(event)

    def of(self, kind: type) -> list[Any]:
        return [e for e in self.events if isinstance(e, kind)]


class ScriptedCommands:
    """Delivers commands at given step boundaries (the worker polls once per boundary)."""

    def __init__(self, script: dict[int, list[Command]]) -> None:
        self._script = {k: list(v) for k, v in script.items()}
        self.boundary = -1
        self._pending: list[Command] = []
        self._inside_boundary = False  # True while this boundary's commands are being handed out

    def poll(self) -> Command | None:
        if self._pending:
            return self._pending.pop(0)
        if self._inside_boundary:  # the worker asked again after the last command: boundary done
            self._inside_boundary = False
            return None
        self.boundary += 1
        self._pending = self._script.pop(self.boundary, [])
        if not self._pending:
            return None
        self._inside_boundary = True
        return self._pending.pop(0)

    def wait(self, timeout: float) -> Command | None:
        command = self._pending.pop(0) if self._pending else None
        if command is None:
            time.sleep(min(timeout, 0.01))
        return command


def run_in_process(config: Config, run_dir: Path, commands: Any = None, resume: bool = False) -> tuple[int, Recorder]:
    from trainer.runlog import NoCommands
    from trainer.worker import run_worker

    if not resume:
        RunFolder.create(config, run_dir)
    recorder = Recorder()
    code = run_worker(run_dir, commands or NoCommands(), recorder, resume=resume)
    return code, recorder

"""Runs one registered task in the current process and reports over the event sink.

Light (standard library + protocol): :mod:`trainer.process` imports it in the GUI process.  The
task's own module — torch and all — is imported with :func:`importlib.import_module` only when the
task runs, in the child.
"""

from __future__ import annotations

import importlib
import traceback
from collections.abc import Callable
from typing import Any, Protocol

from trainer.errors import BAD_INPUT_ERRORS
from trainer.protocol import (
    EXIT_BAD_INPUT,
    EXIT_ERROR,
    EXIT_OK,
    Command,
    Event,
    Failed,
    Log,
    Stop,
    TaskDone,
    TaskProgress,
)
from trainer.tasks import TASKS


class CommandSource(Protocol):
    def poll(self) -> Command | None: ...


class EventSink(Protocol):
    def emit(self, event: Event) -> None: ...


class TaskCancelled(Exception):
    """Raised by :meth:`TaskContext.check_cancelled` when the GUI sent ``Stop``."""


class TaskContext:
    """What a task may do besides computing: report progress, log, and notice a cancel request."""

    def __init__(self, commands: CommandSource, events: EventSink) -> None:
        self._commands = commands
        self._events = events
        self._cancelled = False

    def progress(self, done: int, total: int, message: str = "", data: dict | None = None) -> None:
        self._events.emit(TaskProgress(done, total, message, data or {}))

    def log(self, message: str, level: str = "info") -> None:
        self._events.emit(Log(level, message))

    def cancelled(self) -> bool:
        """True once a ``Stop`` arrived; cheap, call it between units of work."""
        while not self._cancelled and (command := self._commands.poll()) is not None:
            self._cancelled = isinstance(command, Stop)
        return self._cancelled

    def check_cancelled(self) -> None:
        if self.cancelled():
            raise TaskCancelled


def resolve(name: str) -> Callable[[dict, TaskContext], dict]:
    """The function of a registered task, or of ``"package.module:function"`` given directly (tests, plugins)."""
    target = TASKS.get(name, name)
    if ":" not in target:
        raise ValueError(f"unknown task {name!r}; known: {', '.join(sorted(TASKS))}")
    module_name, function_name = target.split(":", 1)
    return getattr(importlib.import_module(module_name), function_name)


def run_task(name: str, args: dict[str, Any], commands: CommandSource, events: EventSink) -> int:
    """Run task ``name``; emit ``TaskDone`` or ``Failed``; return the exit code (0, 1, or 2 for bad input)."""
    context = TaskContext(commands, events)
    try:
        result = resolve(name)(args, context)
    except TaskCancelled:
        events.emit(Failed("cancelled", f"The {name} task was cancelled."))
        return EXIT_ERROR
    except BAD_INPUT_ERRORS as exc:
        events.emit(Failed("input", str(exc)))
        return EXIT_BAD_INPUT
    except Exception as exc:  # a bug or an environment problem: report it with its traceback
        events.emit(Failed("error", f"{type(exc).__name__}: {exc}", traceback.format_exc()))
        return EXIT_ERROR
    events.emit(TaskDone(name, result))
    return EXIT_OK

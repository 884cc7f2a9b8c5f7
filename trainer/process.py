"""The process boundary: start the trainer in a spawn-context child and talk to it over two queues.

Light on purpose: the GUI imports this module, so nothing heavy is imported at module level.
The child imports :mod:`trainer.worker` (torch and friends) only once it is running.

Thread/process map:
  * GUI process, GUI thread: :class:`TrainerProcess` methods (``start``, ``send``, ``poll_events``).
  * Trainer process, main thread: :func:`child_main` → ``worker.run_worker`` (a training run), or
    :func:`task_child_main` → ``tasks.runner.run_task`` (a short task: inspect a model, merge, …);
    both first apply the CPU thread policy (:func:`trainer.threads.apply_policy`), before torch loads.
  * Trainer process, watchdog thread: waits on the parent's sentinel and hard-exits if the
    parent dies, so an orphaned trainer never keeps a GPU busy.
"""

from __future__ import annotations

import multiprocessing
import os
import queue
import sys
import threading
import traceback
from collections.abc import Callable
from multiprocessing.connection import wait
from pathlib import Path
from typing import Any

from trainer import threads
from trainer.protocol import EXIT_ERROR, Command, Event, Failed

SPAWN = multiprocessing.get_context("spawn")
ORPHAN_EXIT_CODE = 3


class QueueCommands:
    """Commands arriving from the GUI over a multiprocessing queue (worker side)."""

    def __init__(self, commands: Any) -> None:
        self._queue = commands

    def poll(self) -> Command | None:
        try:
            return self._queue.get_nowait()
        except queue.Empty:
            return None

    def wait(self, timeout: float) -> Command | None:
        try:
            return self._queue.get(timeout=timeout)
        except queue.Empty:
            return None


class QueueEvents:
    """Events sent to the GUI over a multiprocessing queue (worker side)."""

    def __init__(self, events: Any) -> None:
        self._queue = events

    def emit(self, event: Event) -> None:
        self._queue.put(event)


def _watch_parent() -> None:
    parent = multiprocessing.parent_process()
    if parent is None:
        return

    def watchdog() -> None:
        wait([parent.sentinel])  # returns when the parent process is gone, however it died
        os._exit(ORPHAN_EXIT_CODE)

    threading.Thread(target=watchdog, name="kamaal-parent-watchdog", daemon=True).start()


def child_main(run_dir: str, resume: bool, commands: Any, events: Any) -> None:
    """Entry point of a trainer process that trains (runs in the child)."""

    def train(sink: QueueEvents) -> int:
        from trainer.worker import run_worker  # heavy: torch is imported here, in the child only

        return run_worker(Path(run_dir), QueueCommands(commands), sink, resume=resume)

    _run_in_child(train, events)


def task_child_main(name: str, args: dict[str, Any], commands: Any, events: Any) -> None:
    """Entry point of a trainer process that runs one task (see :mod:`trainer.tasks`)."""
    from trainer.tasks.runner import run_task

    _run_in_child(lambda sink: run_task(name, args, QueueCommands(commands), sink), events)


def _run_in_child(body: Callable[[QueueEvents], int], events: Any) -> None:
    _watch_parent()
    sink = QueueEvents(events)
    try:
        # Before torch is imported: the thread count and OpenMP wait policy that keep a run from collapsing
        # when the GUI, the dataset workers or other programs share the CPU (trainer/threads.py).
        threads.apply_policy()
        code = body(sink)
    except BaseException as exc:  # an import failure or a bug outside the worker's own guard
        sink.emit(Failed("error", f"{type(exc).__name__}: {exc}", traceback.format_exc()))
        code = EXIT_ERROR
    # Flush the events queue's feeder thread before exiting, so the last events arrive.
    events.close()
    events.join_thread()
    sys.exit(code)


class ChildProcess:
    """One trainer child process and its two queues (GUI side); see :class:`TrainerProcess`, :class:`TaskProcess`.

    Not thread-safe: call it from one thread (the GUI thread, through a bridge object).
    """

    def __init__(self, target: Callable[..., None], args: tuple[Any, ...], name: str) -> None:
        self._commands = SPAWN.Queue()
        self._events = SPAWN.Queue()
        self._process = SPAWN.Process(target=target, args=(*args, self._commands, self._events), name=name)

    def start(self) -> None:
        self._process.start()
        # Only the child writes events.  Dropping our copy of the pipe's write end means that if the
        # child dies halfway through a message (SIGKILL, out of memory), reading it ends in EOFError
        # instead of waiting forever for bytes no one can send — which would freeze the window.
        self._events._writer.close()

    @property
    def pid(self) -> int | None:
        return self._process.pid

    @property
    def exitcode(self) -> int | None:
        return self._process.exitcode

    def is_alive(self) -> bool:
        return self._process.is_alive()

    def send(self, command: Command) -> None:
        if self._process.is_alive():
            self._commands.put(command)

    def poll_events(self, limit: int = 1000) -> list[Event]:
        """Every event that has arrived so far (up to ``limit``), without blocking."""
        received: list[Event] = []
        while len(received) < limit:
            try:
                received.append(self._events.get_nowait())
            except queue.Empty:
                break
            except (EOFError, OSError, ValueError):  # the child died mid-message
                break
        return received

    def join(self, timeout: float | None = None) -> None:
        self._process.join(timeout)

    def kill(self) -> None:
        if self._process.is_alive():
            self._process.kill()
        self._process.join(5)

    def close(self) -> None:
        """Release the queues and the process object; kills the child if it still runs."""
        self.kill()
        for q in (self._commands, self._events):
            q.close()
            q.cancel_join_thread()
        self._process.close()


class TrainerProcess(ChildProcess):
    """A trainer process that trains (or resumes) the run in ``run_dir``."""

    def __init__(self, run_dir: Path, *, resume: bool = False) -> None:
        self.run_dir = Path(run_dir)
        super().__init__(child_main, (str(self.run_dir), resume), "kamaal-trainer")


class TaskProcess(ChildProcess):
    """A trainer process that runs one registered task (``trainer.tasks.TASKS``) with plain-data ``args``."""

    def __init__(self, task: str, args: dict[str, Any]) -> None:
        self.task = task
        super().__init__(task_child_main, (task, dict(args)), f"kamaal-task-{task}")


def describe_exit(code: int | None) -> str:
    """Words for a child's exit code: '-9' → 'killed by signal SIGKILL'."""
    if code is None:
        return "still running"
    if code < 0:
        import signal

        try:
            return f"killed by signal {signal.Signals(-code).name}"
        except ValueError:
            return f"killed by signal {-code}"
    if code == ORPHAN_EXIT_CODE:
        return "stopped because the app went away"
    return f"exited with code {code}"

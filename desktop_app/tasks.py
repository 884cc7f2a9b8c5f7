"""The task bridge: runs one short engine task (``trainer.tasks``) in a trainer process for a panel.

Inspecting a model's blocks, generating class images, merging models: work that needs torch, so
the GUI process hands it to a spawn child, exactly like a training run, and watches it here.

Threads and processes:
  * GUI thread: every method and slot of :class:`TaskRunner`, including the drain timer's ``_tick``.
  * Trainer process (spawn): ``trainer.process.task_child_main`` → ``trainer.tasks.runner.run_task``.

Each runner owns its own child and queues (one task at a time per runner); panels connect to its
signals, which are always emitted on the GUI thread.  A child that exits without ``TaskDone`` or
``Failed`` becomes ``failed`` with ``kind == "crash"``.
"""

from __future__ import annotations

import time
from typing import Any

from PySide6.QtCore import QObject, QTimer, Signal

from trainer.process import TaskProcess, describe_exit
from trainer.protocol import Failed, Log, Stop, TaskDone, TaskProgress


class TaskRunner(QObject):
    """Starts one task at a time in a trainer process and re-emits its events as Qt signals."""

    progress = Signal(object)  # TaskProgress
    log = Signal(object)  # Log
    done = Signal(object)  # TaskDone
    failed = Signal(object)  # Failed; kind "input", "error", "cancelled" or "crash"
    busyChanged = Signal(bool)

    POLL_INTERVAL_MS = 50

    def __init__(self, parent: QObject | None = None, *, cancel_timeout_s: float = 10.0) -> None:
        super().__init__(parent)
        self.cancel_timeout_s = cancel_timeout_s  # after Cancel, how long the task may take to notice
        self._process: TaskProcess | None = None
        self._outcome_reported = False
        self._cancel_deadline: float | None = None
        self._timer = QTimer(self)
        self._timer.setInterval(self.POLL_INTERVAL_MS)
        self._timer.timeout.connect(self._tick)

    @property
    def task(self) -> str | None:
        return self._process.task if self._process is not None else None

    def is_busy(self) -> bool:
        return self._process is not None

    def start(self, task: str, args: dict[str, Any]) -> bool:
        """Start ``task`` with plain-data ``args``; False (and ``failed``) if the process could not start."""
        if self._process is not None:
            raise RuntimeError(f"the {self._process.task} task is still running")
        self._outcome_reported = False
        self._cancel_deadline = None
        process = TaskProcess(task, args)
        try:
            process.start()
        except OSError as exc:
            process.close()
            self.failed.emit(Failed("error", f"Cannot start the trainer process: {exc}"))
            return False
        self._process = process
        self.busyChanged.emit(True)
        self._timer.start()
        return True

    def cancel(self) -> None:
        """Ask the task to stop at its next check; it is killed if it has not stopped within ``cancel_timeout_s``."""
        if self._process is not None and self._cancel_deadline is None:
            self._process.send(Stop(save=False))
            self._cancel_deadline = time.monotonic() + self.cancel_timeout_s

    def close(self) -> None:
        """Release everything now (kills a task that still runs)."""
        self._timer.stop()
        process, self._process = self._process, None
        if process is not None:
            process.close()
            self.busyChanged.emit(False)

    def _tick(self) -> None:
        process = self._process
        if process is None:
            self._timer.stop()
            return
        alive = process.is_alive()  # asked before draining: a dead child's events are all in the pipe by now
        self._drain(process)
        if alive:
            if self._cancel_deadline is not None and time.monotonic() > self._cancel_deadline:
                process.kill()
            return
        while self._drain(process):
            pass
        if not self._outcome_reported:
            if self._cancel_deadline is not None:
                self.failed.emit(Failed("cancelled", f"The {process.task} task was cancelled."))
            else:
                self.failed.emit(Failed("crash", f"The {process.task} task stopped unexpectedly "
                                                 f"({describe_exit(process.exitcode)})."))
        self._timer.stop()
        self._process = None
        process.join(5)
        process.close()
        self.busyChanged.emit(False)

    def _drain(self, process: TaskProcess) -> bool:
        events = process.poll_events()
        for event in events:
            if isinstance(event, TaskProgress):
                self.progress.emit(event)
            elif isinstance(event, Log):
                self.log.emit(event)
            elif isinstance(event, TaskDone):
                self._outcome_reported = True
                self.done.emit(event)
            elif isinstance(event, Failed):
                self._outcome_reported = True
                self.failed.emit(event)
        return bool(events)

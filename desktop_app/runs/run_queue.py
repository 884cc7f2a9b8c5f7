"""The run queue: configs waiting to train, one after another, kept in the project (``queue.toml``).

:class:`RunQueue` is the model (entries, whether it is running, load/save); :class:`QueueRunner`
watches the session and starts the next entry whenever the trainer falls idle while the queue runs.
The queue stays editable while a run goes: the running entry has already left the queue, so
reordering or removing the waiting ones never touches it.  A run the person *stopped* pauses the
queue (they meant to intervene), and so does one they stopped at once without saving; a run that failed
does not (an overnight queue goes on).  A queued run's Stop waits for its save like any other
(:class:`~desktop_app.session.TrainingSession`): the next entry starts only once the trainer has exited.

Threads: GUI thread only.
"""

from __future__ import annotations

import itertools
import tomllib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import tomli_w
from PySide6.QtCore import QObject, QTimer, Signal

from desktop_app.session import TrainingSession
from trainer.config import Config, ConfigError, config_from_dict
from trainer.fsutil import atomic_write_text
from trainer.protocol import Failed, Finished

QUEUE_FILE = "queue.toml"
_ids = itertools.count(1)


@dataclass(frozen=True)
class QueueEntry:
    id: int
    label: str
    config: Config

    @property
    def description(self) -> str:
        c = self.config
        return f"{c.mode} · {c.model.architecture} · {c.training.steps:,} steps"


class RunQueue(QObject):
    changed = Signal()
    runningChanged = Signal(bool)

    def __init__(self, path: Path | None = None, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.path = path
        self.entries: list[QueueEntry] = []
        self.running = False
        self.problem = ""  # why the file could not be read, if it could not
        if path is not None:
            self.load(path)

    # ------------------------------------------------------------------ editing

    def add(self, config: Config, label: str | None = None) -> QueueEntry:
        entry = QueueEntry(next(_ids), label or config.output.run_name, config)
        self.entries.append(entry)
        self._changed()
        return entry

    def remove(self, entry_id: int) -> None:
        self.entries = [e for e in self.entries if e.id != entry_id]
        self._changed()

    def move(self, entry_id: int, offset: int) -> None:
        """Move an entry up (offset -1) or down (+1) the queue."""
        index = next((i for i, e in enumerate(self.entries) if e.id == entry_id), None)
        if index is None:
            return
        target = max(0, min(len(self.entries) - 1, index + offset))
        entry = self.entries.pop(index)
        self.entries.insert(target, entry)
        self._changed()

    def take_next(self) -> QueueEntry | None:
        if not self.entries:
            return None
        entry = self.entries.pop(0)
        self._changed()
        return entry

    def set_running(self, running: bool) -> None:
        if running != self.running:
            self.running = running
            self.save()
            self.runningChanged.emit(running)

    # ------------------------------------------------------------------ persistence

    def load(self, path: Path) -> None:
        """Read ``path`` (a missing file is an empty queue); entries that no longer validate are dropped."""
        self.path, self.entries, self.problem = path, [], ""
        self.running = False  # a queue never starts by itself when a project opens
        try:
            data = tomllib.loads(path.read_text(encoding="utf-8")) if path.is_file() else {}
        except (OSError, tomllib.TOMLDecodeError) as exc:
            data, self.problem = {}, f"{path.name} could not be read: {exc}"
        for item in data.get("runs", []):
            try:
                config = config_from_dict(item.get("config", {}), f"{path.name}")
            except ConfigError as exc:
                self.problem = f"A queued run was dropped: {exc}"
                continue
            self.entries.append(QueueEntry(next(_ids), str(item.get("label") or config.output.run_name), config))
        self.changed.emit()
        self.runningChanged.emit(self.running)

    def save(self) -> None:
        if self.path is None:
            return
        data = {"runs": [{"label": e.label, "config": e.config.to_dict()} for e in self.entries]}
        atomic_write_text(self.path, "# The run queue of this project (Runs page); written by Kamaal.\n"
                          + tomli_w.dumps(data))

    def _changed(self) -> None:
        self.save()
        self.changed.emit()


class QueueRunner(QObject):
    """Starts queued runs one after another through ``start(config) -> bool`` when the session is idle."""

    runStarted = Signal(object)  # QueueEntry

    def __init__(self, queue: RunQueue, session: TrainingSession, start: Callable[[Config], bool],
                 parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.queue, self.session, self._start = queue, session, start
        self.current: QueueEntry | None = None
        session.stateChanged.connect(self._on_state)
        session.finished.connect(self._on_finished)
        session.failed.connect(self._on_failed)
        queue.runningChanged.connect(lambda running: running and self._schedule())

    def start(self) -> None:
        self.queue.set_running(True)
        self._schedule()

    def pause(self) -> None:
        self.queue.set_running(False)

    def _on_finished(self, event: Finished) -> None:
        if event.stopped and self.current is not None:
            self.queue.set_running(False)  # the person stopped it: wait for them

    def _on_failed(self, event: Failed) -> None:
        if event.kind == "killed" and self.current is not None:
            self.queue.set_running(False)  # "Stop now without saving" was the person's choice: wait for them

    def _on_state(self, _state: str) -> None:
        if not self.session.is_active():
            self._schedule()  # Finished (delivered right after this state change) may still pause the queue

    def _schedule(self) -> None:
        QTimer.singleShot(0, self._start_next)  # after the session has finished its own state change

    def _start_next(self) -> None:
        if self.session.is_active():
            return
        self.current = None
        if not self.queue.running:
            return
        entry = self.queue.take_next()
        if entry is None:
            self.queue.set_running(False)  # done: the queue is empty
            return
        self.current = entry
        if self._start(entry.config):
            self.runStarted.emit(entry)

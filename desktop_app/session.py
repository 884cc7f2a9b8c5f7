"""The session bridge: the one object in the GUI that talks to the trainer process.

Threads and processes:
  * GUI thread: every method and slot of :class:`TrainingSession`, including the drain timer's
    ``_tick``.  Nothing here blocks; ``shutdown`` (the end of the app, test teardown) waits, but runs
    the event loop while it does.
  * Trainer process (spawn): ``trainer.process.child_main`` → ``trainer.worker.run_worker``.
  * multiprocessing's queue feeder threads (one per queue that has been written to) move pickled
    messages through the pipes; they never touch Qt objects.

Widgets never see the queues: they connect to the typed signals below, which are always emitted
on the GUI thread.  An exit of the child without ``Finished`` or ``Failed`` (SIGKILL, a crash,
out of memory) becomes a ``failed`` signal with ``kind == "crash"`` within one drain interval.

Stopping: ``stop(save=True)`` asks the trainer to stop, and then waits for as long as it takes — the
trainer reports each part of its save (``Activity``: saving checkpoint, writing outputs, drawing final
samples 3/8), and the session never ends it by itself.  Only a long silence (``silence_timeout_s``
without any event) is reported, as ``stalled``, for the window to *ask* the person.  ``kill`` (stop
now without saving) is only ever the person's explicit choice, after a warning; its failure has
``kind == "killed"``.
"""

from __future__ import annotations

import time
from enum import StrEnum
from pathlib import Path

from PySide6.QtCore import QCoreApplication, QEventLoop, QObject, QTimer, Signal

from trainer.config import Config, ConfigError
from trainer.process import TrainerProcess, describe_exit
from trainer.protocol import (
    Activity,
    CheckpointSaved,
    Event,
    Failed,
    Finished,
    LayerWeights,
    Log,
    OutOfMemory,
    Pause,
    Paused,
    Progress,
    Resume,
    Resumed,
    Sample,
    SampleNow,
    SaveNow,
    Started,
    Stop,
)
from trainer.runfolder import RunFolder


class SessionState(StrEnum):
    IDLE = "idle"
    STARTING = "starting"
    TRAINING = "training"
    PAUSED = "paused"
    STOPPING = "stopping"
    FINISHED = "finished"
    FAILED = "failed"


ACTIVE_STATES = frozenset({SessionState.STARTING, SessionState.TRAINING, SessionState.PAUSED, SessionState.STOPPING})


def describe_activity(activity: Activity) -> str:
    """'drawing final samples 3/8', 'saving checkpoint': the trainer's words, for labels and messages."""
    return f"{activity.text} {activity.done}/{activity.total}" if activity.total else activity.text


class TrainingSession(QObject):
    """Starts, steers and watches one trainer process at a time; re-emits its events as Qt signals."""

    started = Signal(object)  # Started
    progress = Signal(object)  # Progress
    weights = Signal(object)  # LayerWeights
    sample = Signal(object)  # Sample
    checkpointSaved = Signal(object)  # CheckpointSaved
    paused = Signal(object)  # Paused
    resumed = Signal(object)  # Resumed
    log = Signal(object)  # Log
    failed = Signal(object)  # Failed; kind is "input", "error", or "crash" for an unexpected exit
    outOfMemory = Signal(object)  # OutOfMemory: the run ended cleanly after running out of memory, its state saved
    finished = Signal(object)  # Finished
    activity = Signal(object)  # Activity: what the trainer is busy with outside the steps (saving, sampling)
    stalled = Signal(float)  # seconds without any event while stopping: ask the person (never kill by itself)
    notice = Signal(str)  # a sentence about a command that was sent, when it has to wait ("after drawing …")
    stateChanged = Signal(str)  # a SessionState value
    eventsDrained = Signal()  # after each timer tick that delivered events (lets views repaint once per batch)

    POLL_INTERVAL_MS = 50
    SILENCE_TIMEOUT_S = 300.0  # minutes of silence, not seconds: one big checkpoint can take that long

    def __init__(self, parent: QObject | None = None, *, silence_timeout_s: float = SILENCE_TIMEOUT_S) -> None:
        super().__init__(parent)
        # While stopping: how long without any event before ``stalled`` asks the person (again after each
        # further such silence).  Injectable, so tests play minutes in seconds.
        self.silence_timeout_s = silence_timeout_s
        self._process: TrainerProcess | None = None
        self._state = SessionState.IDLE
        self._run_dir: Path | None = None
        self._outcome_reported = False
        self._stop_requested_at: float | None = None
        self._last_word_at = 0.0  # time.monotonic() of the last event (or of the Stop)
        self._silence_from = 0.0  # the silence that ``stalled`` measures starts here (re-armed after each report)
        self._activity: Activity | None = None
        self._forced = False
        self._timer = QTimer(self)
        self._timer.setInterval(self.POLL_INTERVAL_MS)
        self._timer.timeout.connect(self._tick)

    # ------------------------------------------------------------------ state

    @property
    def state(self) -> SessionState:
        return self._state

    @property
    def run_dir(self) -> Path | None:
        return self._run_dir

    @property
    def pid(self) -> int | None:
        return self._process.pid if self._process is not None else None

    def is_active(self) -> bool:
        return self._state in ACTIVE_STATES

    @property
    def last_activity(self) -> Activity | None:
        """What the trainer last said it was busy with (None while it trains steps, or before it said)."""
        return self._activity

    @property
    def stopping_for_s(self) -> float:
        """Seconds since Stop was asked for (0 when not stopping)."""
        if self._state != SessionState.STOPPING or self._stop_requested_at is None:
            return 0.0
        return time.monotonic() - self._stop_requested_at

    @property
    def silent_for_s(self) -> float:
        """Seconds since the trainer's last event (0 when no trainer runs)."""
        return time.monotonic() - self._last_word_at if self._process is not None else 0.0

    def _set_state(self, state: SessionState) -> None:
        if state != self._state:
            self._state = state
            self.stateChanged.emit(state.value)

    # ------------------------------------------------------------------ starting

    def start(self, config: Config, run_dir: Path) -> bool:
        """Snapshot ``config`` into a new run folder, then start the trainer on it.  False if it could not start."""
        self._require_inactive()
        try:
            run = RunFolder.create(config, run_dir)
        except (ConfigError, OSError) as exc:
            return self._refuse(Path(run_dir), f"Cannot create the run folder: {exc}")
        return self._launch(run.root, resume=False)

    def resume(self, run_dir: Path) -> bool:
        """Continue the run in ``run_dir`` from its last checkpoint."""
        self._require_inactive()
        try:
            run = RunFolder.open(run_dir)
        except (ConfigError, OSError) as exc:
            return self._refuse(Path(run_dir), str(exc))
        return self._launch(run.root, resume=True)

    def _require_inactive(self) -> None:
        if self.is_active():
            raise RuntimeError(f"a run is already {self._state.value}")
        self._release()

    def _launch(self, run_dir: Path, *, resume: bool) -> bool:
        self._run_dir = run_dir
        self._outcome_reported = False
        self._stop_requested_at = None
        self._last_word_at = self._silence_from = time.monotonic()
        self._activity = None
        self._forced = False
        self._process = TrainerProcess(run_dir, resume=resume)
        try:
            self._process.start()
        except OSError as exc:
            self._release()
            return self._refuse(run_dir, f"Cannot start the trainer process: {exc}")
        self._set_state(SessionState.STARTING)
        self._timer.start()
        return True

    def _refuse(self, run_dir: Path, message: str) -> bool:
        self._run_dir = run_dir
        self._outcome_reported = True
        self._set_state(SessionState.FAILED)
        self.failed.emit(Failed("input", message))
        return False

    # ------------------------------------------------------------------ commands

    def pause(self) -> None:
        if self._state == SessionState.TRAINING and self._process is not None:
            self._process.send(Pause())
            self._say_when("Pausing", "after this step")

    def resume_training(self) -> None:
        if self._state == SessionState.PAUSED and self._process is not None:
            self._process.send(Resume())
            self._say_when("Resuming", "now")

    def sample_now(self) -> None:
        if self._state in (SessionState.TRAINING, SessionState.PAUSED) and self._process is not None:
            self._process.send(SampleNow())
            self._say_when("Drawing a preview", "now" if self._state == SessionState.PAUSED else "after this step")

    def save_now(self) -> None:
        if self._state in (SessionState.TRAINING, SessionState.PAUSED) and self._process is not None:
            self._process.send(SaveNow())
            self._say_when("Saving a checkpoint", "now" if self._state == SessionState.PAUSED else "after this step")

    def _say_when(self, what: str, when: str) -> None:
        """Commands are obeyed between steps and between parts of longer work: say when this one will be,
        so a click that has to wait is never silently held."""
        busy = self._activity
        if busy is not None and (not busy.total or busy.done < busy.total):
            self.notice.emit(f"{what} once the trainer has finished {describe_activity(busy)}…")
        else:
            self.notice.emit(f"{what} {when}…")

    def stop(self, save: bool = True) -> None:
        """Ask the trainer to stop at the next step boundary (with ``save``: a checkpoint and the outputs
        first, then the final samples).  It is then waited for as long as it takes; see ``stalled``."""
        if self._state in (SessionState.STARTING, SessionState.TRAINING, SessionState.PAUSED) and self._process:
            self._process.send(Stop(save=save))
            self._stop_requested_at = self._last_word_at = self._silence_from = time.monotonic()
            self._set_state(SessionState.STOPPING)

    def kill(self) -> None:
        """Stop now without saving: end the trainer process at once.  Only ever the person's explicit choice,
        after a warning (the window asks); what the trainer was writing is lost, earlier checkpoints stay."""
        if self._process is not None and self._process.is_alive():
            self._forced = True
            self._process.kill()
            self._tick()

    def shutdown(self, *, kill_after_s: float | None = None) -> None:
        """Blocking, for the end of the app: stop a running trainer with a save and wait until it has exited,
        for as long as it takes.  The event loop keeps running meanwhile (windows repaint, and a long silence
        is reported through ``stalled``, so the window can ask).  ``kill_after_s`` is a hard limit for test
        teardown only; the app never passes it."""
        if self._process is None:
            return
        if self._state in (SessionState.STARTING, SessionState.TRAINING, SessionState.PAUSED):
            self.stop(save=True)
        began = time.monotonic()
        while self._process is not None:
            if kill_after_s is not None and time.monotonic() - began > kill_after_s:
                self.kill()
                break
            QCoreApplication.processEvents(QEventLoop.ProcessEventsFlag.AllEvents, 50)
            if self._process is not None:
                self._process.join(0.02)
                self._tick()  # also without a running drain timer: keeps the pipe empty, notices the exit

    def close(self) -> None:
        """Release everything now (kills a child that still runs).  For teardown; prefer ``shutdown``."""
        self._timer.stop()
        self._release()

    # ------------------------------------------------------------------ watching

    def _tick(self) -> None:
        process = self._process
        if process is None:
            self._timer.stop()
            return
        alive = process.is_alive()  # asked before draining: a dead child's events are all in the pipe by now
        self._drain()
        if alive:
            now = time.monotonic()
            if self._state == SessionState.STOPPING and now - self._silence_from > self.silence_timeout_s:
                self._silence_from = now  # ask again only after another whole silence
                self.stalled.emit(now - self._last_word_at)
            return
        while self._drain():
            pass
        if not self._outcome_reported:
            self._report_unexpected_exit(process.exitcode)
        self._release()
        self._timer.stop()

    def _drain(self) -> bool:
        if self._process is None:
            return False
        events = self._process.poll_events()
        if events:
            self._last_word_at = self._silence_from = time.monotonic()
        for event in events:
            self._dispatch(event)
        if events:
            self.eventsDrained.emit()
        return bool(events)

    def _dispatch(self, event: Event) -> None:
        stopping = self._state == SessionState.STOPPING
        if isinstance(event, Progress):
            self._activity = None  # training steps again
            self.progress.emit(event)
        elif isinstance(event, Activity):
            self._activity = event
            self.activity.emit(event)
        elif isinstance(event, LayerWeights):
            self.weights.emit(event)
        elif isinstance(event, Log):
            self.log.emit(event)
        elif isinstance(event, Sample):
            if not stopping:
                self._activity = None  # the samples are drawn
            self.sample.emit(event)
        elif isinstance(event, CheckpointSaved):
            if not stopping:
                self._activity = None
            self.checkpointSaved.emit(event)
        elif isinstance(event, Started):
            if not stopping:
                self._activity = None  # set-up is over
                self._set_state(SessionState.TRAINING)
            self.started.emit(event)
        elif isinstance(event, Paused):
            if not stopping:
                self._set_state(SessionState.PAUSED)
            self.paused.emit(event)
        elif isinstance(event, Resumed):
            if not stopping:
                self._set_state(SessionState.TRAINING)
            self.resumed.emit(event)
        elif isinstance(event, Finished):
            self._outcome_reported = True
            self._activity = None
            self._set_state(SessionState.FINISHED)
            self.finished.emit(event)
        elif isinstance(event, OutOfMemory):
            self._outcome_reported = True
            self._activity = None
            self._set_state(SessionState.FAILED)
            self.outOfMemory.emit(event)
        elif isinstance(event, Failed):
            self._outcome_reported = True
            self._activity = None
            self._set_state(SessionState.FAILED)
            self.failed.emit(event)

    def _report_unexpected_exit(self, code: int | None) -> None:
        how = describe_exit(code)
        if self._forced:
            kind, doing = "killed", self._activity
            message = "Stopped at once without saving, as you chose"
            message += f", while the trainer was {describe_activity(doing)}." if doing is not None else "."
            message += (" What was saved before stays in the run folder; "
                        "Run ▸ Resume a run… continues from its last checkpoint.")
        else:
            kind = "crash"
            message = f"The trainer process stopped unexpectedly ({how})."
            if code is not None and code < 0:
                message += " It was killed from outside the app, or the system ran out of memory."
            message += (" Checkpoints saved before this are kept in the run folder; "
                        "Run ▸ Resume a run… continues from the last one.")
        self._outcome_reported = True
        self._set_state(SessionState.FAILED)
        self.failed.emit(Failed(kind, message))

    def _release(self) -> None:
        """Let go of the finished child: wait briefly for a clean exit, then close its queues."""
        process, self._process = self._process, None
        if process is None:
            return
        deadline = time.monotonic() + 5.0
        while process.is_alive() and time.monotonic() < deadline:
            for event in process.poll_events():
                if isinstance(event, Log):
                    self.log.emit(event)
            process.join(0.05)
        process.close()

"""What the window shows about the current run, kept in one place: status, loss curves, weights, notice.

The session re-emits the trainer's events one by one; this model folds them into state the views
draw from (the loss history, the latest weights, the step and speed for the status bar, and a
notice when a run ends or fails) and tells them that something changed.

The status line is told once per batch of events (labels are cheap).  The loss plot and the weight
heatmaps are told at most every ``VIEW_INTERVAL_MS`` (leading edge, then the latest state once the
interval has passed): redrawing pyqtgraph's axes for every 50 ms batch of a fast toy run blocked the
event loop for up to 440 ms on a loaded 2-core machine (``bench/bench_gui_stall.py``).  A run's end
shows the final state at once.
"""

from __future__ import annotations

import dataclasses
import math
import time
from array import array
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from PySide6.QtCore import QObject, QTimer, Signal

from desktop_app.preview.sample_history import SampleHistory, read_sample_history
from desktop_app.session import SessionState, TrainingSession
from trainer.memory_plan import describe_changes, gb
from trainer.protocol import (
    Activity,
    CheckpointSaved,
    Failed,
    Finished,
    LayerWeights,
    Log,
    OutOfMemory,
    Progress,
    Sample,
    Started,
)
from trainer.runfolder import RunFolder

if TYPE_CHECKING:
    import numpy as np


@dataclass(frozen=True)
class Notice:
    """A message about the run for the banner: level "error", "warning" or "info"."""

    level: str
    title: str
    text: str
    details: str = ""
    run_dir: str = ""
    field: str = ""  # the config field a refusal names, if any
    plan: dict[str, Any] = dataclasses.field(default_factory=dict)  # after an out-of-memory: the smaller plan's changes


class Series:
    """A growing (step, value) series: appended to in ``array`` buffers (amortised O(1)), read as numpy arrays.

    numpy is imported only when a view reads the series (the plots, after the window's first frame): it is a
    good part of the window's start-up imports otherwise.  A read copies (a view into a growing buffer would stop
    it from growing); the plots read at most a few times a second."""

    def __init__(self) -> None:
        self._x = array("d")
        self._y = array("d")

    def append(self, x: float, y: float) -> None:
        self._x.append(x)
        self._y.append(y)

    @property
    def x(self) -> np.ndarray:
        import numpy as np

        return np.array(self._x, dtype=np.float64)

    @property
    def y(self) -> np.ndarray:
        import numpy as np

        return np.array(self._y, dtype=np.float64)

    def __len__(self) -> int:
        return len(self._x)


class Curves:
    """Training loss, held-out loss and learning rate against step (non-finite values are left out)."""

    def __init__(self) -> None:
        self.train = Series()
        self.heldout = Series()
        self.lr = Series()

    def add(self, step: int, loss: float, heldout: float | None, lr: float | None = None) -> None:
        if math.isfinite(loss):
            self.train.append(step, loss)
        if heldout is not None and math.isfinite(heldout):
            self.heldout.append(step, heldout)
        if lr is not None and math.isfinite(lr) and (not len(self.lr) or self.lr.x[-1] != step):
            self.lr.append(step, lr)

    @classmethod
    def from_metrics(cls, rows: list[dict]) -> Curves:
        """The curves of a run folder's metrics.jsonl rows."""
        curves = cls()
        for row in rows:
            step, loss, heldout, lr = row.get("step"), row.get("loss"), row.get("heldout_loss"), row.get("lr")
            if isinstance(step, int):
                curves.add(step, float(loss) if isinstance(loss, int | float) else math.nan,
                           heldout if isinstance(heldout, int | float) else None,
                           float(lr) if isinstance(lr, int | float) else None)
        return curves

    @property
    def steps(self) -> list[int]:
        return [int(step) for step in self.train.x]


FAILURE_TITLES = {"input": "The trainer refused these settings", "crash": "The trainer stopped unexpectedly",
                  "error": "Training failed", "killed": "Stopped without saving"}


class RunModel(QObject):
    VIEW_INTERVAL_MS = 250  # the plot and heatmaps redraw at most 4 times a second
    STOPPING_REFRESH_MS = 1000  # while stopping, the status counts the seconds even when the trainer is quiet

    statusChanged = Signal()
    curvesChanged = Signal()
    weightsChanged = Signal(object)  # LayerWeights
    samplesChanged = Signal(object)  # Sample, or None before the first one
    noticeChanged = Signal()
    continueWithPlan = Signal(object, object)  # run folder (Path), the plan's changes ("section.field" → value)
    logAdded = Signal(str)  # one line for the log view

    def __init__(self, session: TrainingSession, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.session = session
        self.state = session.state
        self.step = 0
        self.total_steps = 0
        self.it_per_s = 0.0
        self.eta_s = math.nan
        self.memory_bytes = 0
        self.memory_kind = ""
        self.mode = ""
        self.has_started = False  # the trainer said Started for the current run
        self.stopped = False  # the last run ended by a Stop (it "finished" early)
        self.earlier_runs = 0  # runs of this project before this window's (the Runs page lists them)
        self.run_dir: Path | None = None
        self.curves = Curves()
        self.layers: LayerWeights | None = None
        self.samples: Sample | None = None
        self.sample_history = SampleHistory(self)  # every sampling point of the run: the grid's rows
        self.notice: Notice | None = None
        self.activity: Activity | None = None  # what the trainer is busy with outside the steps (saving, sampling)
        self._curves_dirty = False
        self._weights_dirty = False
        self._last_view_update = -math.inf  # time.monotonic() of the last curves/weights signal
        self._view_timer = QTimer(self)
        self._view_timer.setSingleShot(True)
        self._view_timer.timeout.connect(self._update_views)
        self._stopping_timer = QTimer(self)
        self._stopping_timer.setInterval(self.STOPPING_REFRESH_MS)
        self._stopping_timer.timeout.connect(self.statusChanged)
        session.stateChanged.connect(self._on_state)
        session.activity.connect(self._on_activity)
        session.started.connect(self._on_started)
        session.progress.connect(self._on_progress)
        session.weights.connect(self._on_weights)
        session.sample.connect(self._on_sample)
        session.checkpointSaved.connect(self._on_checkpoint)
        session.log.connect(self._on_log)
        session.failed.connect(self._on_failed)
        session.outOfMemory.connect(self._on_out_of_memory)
        session.finished.connect(self._on_finished)
        session.eventsDrained.connect(self._flush)

    def begin(self, run_dir: Path, total_steps: int, mode: str, *, resumed: bool = False) -> None:
        """A new run is about to start: clear the last one (a resumed run shows its history so far)."""
        self.run_dir, self.total_steps, self.mode = Path(run_dir), total_steps, mode
        self.step, self.it_per_s, self.eta_s = 0, 0.0, math.nan
        self.has_started = False
        self.stopped = False
        self.activity = None
        self.curves = Curves()
        self.layers = None
        self.samples = None
        self.sample_history.clear()
        if resumed:
            self.curves = Curves.from_metrics(RunFolder(Path(run_dir)).read_metrics())
            self.step = int(self.curves.train.x[-1]) if len(self.curves.train) else 0
            self.sample_history.load(read_sample_history(Path(run_dir)))
        self.set_notice(None)
        self._view_timer.stop()
        self._curves_dirty = self._weights_dirty = False
        self.curvesChanged.emit()
        self.weightsChanged.emit(None)
        self.samplesChanged.emit(None)
        self.statusChanged.emit()

    def set_earlier_runs(self, count: int) -> None:
        """How many runs the project already has (the stats line says where they are instead of "No run yet")."""
        if count != self.earlier_runs:
            self.earlier_runs = count
            self.statusChanged.emit()

    def plan(self, total_steps: int) -> None:
        """Before any run: how long the next one will be (the empty loss plot spans it)."""
        if self.state == SessionState.IDLE and total_steps != self.total_steps:
            self.total_steps = total_steps
            self.statusChanged.emit()

    def set_notice(self, notice: Notice | None) -> None:
        self.notice = notice
        self.noticeChanged.emit()

    # ------------------------------------------------------------------ session events

    @property
    def stopping_for_s(self) -> float:
        """Seconds since Stop was asked for (0 unless stopping)."""
        return self.session.stopping_for_s

    @property
    def silent_for_s(self) -> float:
        """Seconds since the trainer last said anything."""
        return self.session.silent_for_s

    def _on_state(self, state: str) -> None:
        self.state = SessionState(state)
        if self.state == SessionState.STOPPING:
            self._stopping_timer.start()
        else:
            self._stopping_timer.stop()
        if self.state not in (SessionState.TRAINING, SessionState.PAUSED, SessionState.STOPPING):
            self.activity = None
        self.statusChanged.emit()

    def _on_activity(self, event: Activity) -> None:
        self.activity = event  # shown with the next batch's status refresh

    def _on_started(self, event: Started) -> None:
        if self.state != SessionState.STOPPING:
            self.activity = None  # set-up is over
        self.run_dir, self.mode, self.has_started = Path(event.run_dir), event.mode, True
        self.step, self.total_steps = event.start_step, event.total_steps
        self.logAdded.emit(f"Training started on {event.device} (process {event.pid}) in {event.run_dir}")
        self.statusChanged.emit()

    def _on_progress(self, event: Progress) -> None:
        self.activity = None  # training steps again
        self.step, self.total_steps = event.step, event.total_steps
        self.it_per_s, self.eta_s = event.it_per_s, event.eta_s
        self.memory_bytes, self.memory_kind = event.memory_bytes, event.memory_kind
        self.curves.add(event.step, event.loss, event.heldout_loss, event.lr)
        self._curves_dirty = True

    def _on_weights(self, event: LayerWeights) -> None:
        self.layers = event
        self._weights_dirty = True

    def _on_sample(self, event: Sample) -> None:
        if self.state != SessionState.STOPPING:
            self.activity = None  # the samples are drawn
        self.samples = event
        self.sample_history.add(event)
        self.samplesChanged.emit(event)

    def _on_checkpoint(self, event: CheckpointSaved) -> None:
        if self.state != SessionState.STOPPING:
            self.activity = None
        self.logAdded.emit(f"Checkpoint saved at step {event.step:,}: {event.path}")

    def _on_log(self, event: Log) -> None:
        self.logAdded.emit(f"[{event.level}] {event.message}")

    def _flush(self, *, now: bool = False) -> None:
        """Once per drained batch: the status repaints; the plot and heatmaps when their interval allows."""
        if self._curves_dirty or self._weights_dirty:
            wait_ms = self.VIEW_INTERVAL_MS - (time.monotonic() - self._last_view_update) * 1000
            if now or wait_ms <= 0:
                self._update_views()
            elif not self._view_timer.isActive():
                self._view_timer.start(math.ceil(wait_ms))
        self.statusChanged.emit()

    def _update_views(self) -> None:
        self._view_timer.stop()
        self._last_view_update = time.monotonic()
        if self._curves_dirty:
            self._curves_dirty = False
            self.curvesChanged.emit()
        if self._weights_dirty:
            self._weights_dirty = False
            self.weightsChanged.emit(self.layers)

    def _on_failed(self, event: Failed) -> None:
        self._flush(now=True)
        field_name, sep, _ = event.message.partition(": ")
        named = field_name if event.kind == "input" and sep and " " not in field_name and "." in field_name else ""
        level = "warning" if event.kind == "killed" else "error"  # the person chose it: not an error
        self.set_notice(Notice(level, FAILURE_TITLES.get(event.kind, "Training failed"), event.message,
                               details=event.traceback, run_dir=str(self.run_dir or ""), field=named))
        self.logAdded.emit(f"[error] {event.message}")

    def _on_out_of_memory(self, event: OutOfMemory) -> None:
        self._flush(now=True)
        saved = (f"The state after step {event.checkpoint_step:,} is saved." if event.checkpoint
                 else "Nothing was saved yet: the run starts again from step 0.")
        if event.plan_changes:
            plan = describe_changes(event.plan_changes)
            offer = (f"A smaller plan: {plan}." if event.plan_fits else
                     f"The smallest plan ({plan}) may still not fit.")
        else:
            offer = "No smaller plan: lower the resolution, the rank or the batch, or train on a bigger GPU."
        peak = f" (peak {gb(event.peak_bytes)} of {gb(event.limit_bytes)})" \
            if event.peak_bytes and event.limit_bytes else ""
        self.set_notice(Notice("error", f"Out of memory at step {event.step:,}", f"{saved} {offer}",
                               details=f"{event.message}{peak}\n\n{event.plan_text}", run_dir=event.run_dir,
                               plan=dict(event.plan_changes)))
        self.logAdded.emit(f"[error] Out of memory at step {event.step:,}: {event.message}")
        self.statusChanged.emit()

    def continue_with_plan(self) -> None:
        """The notice's "Continue with a smaller plan": the window applies it to the run's config and resumes."""
        notice = self.notice
        if notice is not None and notice.plan and notice.run_dir:
            self.continueWithPlan.emit(Path(notice.run_dir), dict(notice.plan))

    def _on_finished(self, event: Finished) -> None:
        self._flush(now=True)
        self.step, self.stopped = event.step, event.stopped
        title = (f"Stopped at step {event.step:,}" if event.stopped else f"Finished: {event.step:,} steps")
        if event.outputs:
            text = "Saved " + ", ".join(Path(path).name for path in event.outputs) + " in the run folder."
        else:
            text = "Stopped without saving." if event.stopped else "Done."
        text = " ".join([text, *event.warnings])  # e.g. the final samples failed after everything was saved
        self.set_notice(Notice("warning" if event.warnings else "info", title, text, run_dir=event.run_dir))
        self.statusChanged.emit()

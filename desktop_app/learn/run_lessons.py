"""Lessons 2 and 3, training and fine-tuning by freezing: real runs of the toy presets in the trainer process.

Each lesson owns a :class:`LessonRunner`: a :class:`~desktop_app.session.TrainingSession` (the same bridge the
Train page uses, so torch stays in a child process) and a :class:`~desktop_app.preview.run_model.RunModel` that
the app's own loss plot and weights view draw from.  A lesson's runs go to ``DATA_DIR/lessons/`` (not the
project's run history) and run one after another.  Their results are read from the run folders once each
finishes: held-out losses from ``metrics.jsonl``, weights from the exported safetensors.  GUI thread only.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

from PySide6.QtCore import QObject, Signal
from PySide6.QtWidgets import (
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QPushButton,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
    QWidget,
)

from desktop_app import paths
from desktop_app.learn.i18n import marked, tr
from desktop_app.learn.toy_math import LAYERS, ToyFileError, ToyWeights, read_safetensors
from desktop_app.preview.loss_plot import LossPlot
from desktop_app.preview.run_model import RunModel
from desktop_app.preview.weights_view import WeightsView
from desktop_app.session import TrainingSession
from trainer.config import Config, load_config
from trainer.protocol import Failed, Finished, Progress
from trainer.runfolder import RunFolder, unique_run_dir

ALL_LAYERS = '["input_layer", "hidden_layer", "output_layer"]'


def lesson_runs_dir() -> Path:
    return paths.data_dir() / "lessons"


@dataclass
class LessonRun:
    """One run of a lesson's experiment and, once it finished, what it showed."""

    label: str  # a marked string
    config: Config
    run_dir: Path | None = None
    heldout: list[float] = field(default_factory=list)
    error: str = ""

    @property
    def output_file(self) -> Path:
        assert self.run_dir is not None
        return self.run_dir / "output" / f"{self.config.output.run_name}.safetensors"


class LessonRunner(QObject):
    """Runs a lesson's configs one after another in the trainer process; ``allDone`` after the last."""

    runFinished = Signal(int)  # index of the run that just ended (finished or failed)
    allDone = Signal()

    def __init__(self, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.session = TrainingSession(self)
        self.run_model = RunModel(self.session, self)
        self.runs: list[LessonRun] = []
        self.current = -1
        self.session.finished.connect(self._on_finished)
        self.session.failed.connect(self._on_failed)

    def is_busy(self) -> bool:
        return self.session.is_active()

    def start(self, runs: list[LessonRun]) -> None:
        if self.session.is_active():
            return
        self.runs, self.current = runs, -1
        self._next()

    def _next(self) -> None:
        self.current += 1
        if self.current >= len(self.runs):
            self.allDone.emit()
            return
        run = self.runs[self.current]
        run.run_dir = unique_run_dir(lesson_runs_dir(), run.config.output.run_name)
        self.run_model.begin(run.run_dir, run.config.training.steps, run.config.mode)
        if not self.session.start(run.config, run.run_dir):
            run.error = tr("The trainer could not start.")
            self.runFinished.emit(self.current)
            self.allDone.emit()

    def _on_finished(self, event: Finished) -> None:
        run = self.runs[self.current]
        assert run.run_dir is not None
        run.heldout = [row["heldout_loss"] for row in RunFolder(run.run_dir).read_metrics() if "heldout_loss" in row]
        self.runFinished.emit(self.current)
        self._next()

    def _on_failed(self, event: Failed) -> None:
        self.runs[self.current].error = event.message
        self.runFinished.emit(self.current)
        self.allDone.emit()

    def shutdown(self) -> None:
        """A lesson's run is disposable: stopped without a save when the window closes."""
        self.session.shutdown(kill_after_s=5)


class StatusLabel(QLabel):
    """A one-line status whose text is a marked string with values: it follows a language switch."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("lessonStatus")
        self._source, self._values = "", {}

    def say(self, source: str, **values: object) -> None:
        self._source, self._values = source, values
        self.retranslate()

    def retranslate(self) -> None:
        values = {key: tr(value) if key == "run" else value for key, value in self._values.items()}
        self.setText(tr(self._source).format(**values) if self._source else "")


def run_column(owner: QWidget, runner: LessonRunner, start_button: QPushButton, status: QLabel,
               *notes: QWidget) -> tuple[LossPlot, WeightsView]:
    """A run lesson's column on ``owner``: the start button and its status, ``notes`` under them, then the loss
    curves above the weights, each at the column's full width (side by side, the three layers' heatmaps did not
    fit).  The learning-rate strip is left out: no lesson is about it."""
    loss_plot = LossPlot(runner.run_model)
    weights_view = WeightsView(runner.run_model)
    loss_plot.lr_widget.hide()
    top = QHBoxLayout()
    top.addWidget(start_button)
    top.addWidget(status, 1)
    layout = QVBoxLayout(owner)
    layout.setContentsMargins(0, 0, 0, 0)
    layout.addLayout(top)
    for note in notes:
        layout.addWidget(note)
    layout.addWidget(loss_plot, 1)
    layout.addWidget(weights_view, 1)
    return loss_plot, weights_view


def preset_config(name: str, *overrides: str) -> Config:
    return load_config(paths.preset_path(name), list(overrides))


class TrainingLesson(QWidget):
    """Lesson 2: the toy preset as shipped, with the loss plot, the weights view and what to watch."""

    OVERRIDES: tuple[str, ...] = ()  # the preset as shipped (tests shorten it)

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.runner = LessonRunner(self)
        self.start_button = QPushButton()
        self.start_button.setObjectName("lessonStart")
        self.start_button.clicked.connect(self.start)
        self.status = StatusLabel()
        self.watch = QLabel()
        self.watch.setObjectName("lessonWatch")
        self.watch.setWordWrap(True)
        self.watch.setProperty("role", "note")
        self.loss_plot, self.weights_view = run_column(self, self.runner, self.start_button, self.status, self.watch)
        self.runner.session.progress.connect(self._on_progress)
        self.runner.allDone.connect(self._on_done)
        self.runner.session.stateChanged.connect(lambda _state: self.start_button.setEnabled(
            not self.runner.is_busy()))
        self._watch_source = marked("Press Start training: the trainer process trains the guide's network on the toy "
                                    "task for 3,000 steps (about half a minute).")
        self.retranslate()

    def start(self) -> None:
        self.runner.start([LessonRun(marked("Toy run"), preset_config("toy", *self.OVERRIDES))])
        self._set_watch(marked("The first steps: the loss drops steeply while the weights find their rough "
                               "direction. Watch the weights view: colours grow where the network learned "
                               "something."))

    def _set_watch(self, source: str) -> None:
        self._watch_source = source
        self.watch.setText(tr(source))

    def _on_progress(self, progress: Progress) -> None:
        if math.isnan(progress.loss):  # step 0: only the held-out loss is measured yet
            return
        self.status.say(marked("Step {step} of {total}: training loss {loss}"), step=progress.step,
                        total=progress.total_steps, loss=f"{progress.loss:.3f}")
        if progress.step > progress.total_steps // 3 and len(self.runner.run_model.curves.heldout):
            self._set_watch(marked("Now the curves flatten: each step teaches less. The held-out loss (dots) is "
                                   "measured on data the network never trains on: as long as it falls with the "
                                   "training loss, the network is learning the task, not memorising its data."))

    def _on_done(self) -> None:
        run = self.runner.runs[-1]
        if run.error:
            self.status.say(marked("The run failed: {message}"), message=run.error)
            return
        self.status.say(marked("Done: held-out loss {first} → {last}"), first=f"{run.heldout[0]:.3f}",
                        last=f"{run.heldout[-1]:.3f}")
        self._set_watch(marked("Done. The held-out loss fell with the training loss: the network learned the "
                               "task itself. The network that lessons 3, 4 and 6 start from is exactly this "
                               "run's result."))

    def retranslate(self) -> None:
        self.status.retranslate()
        self.start_button.setText(tr("Start training"))
        self.watch.setText(tr(self._watch_source))
        self.loss_plot.retranslate()
        self.weights_view.retranslate()


@dataclass(frozen=True)
class FreezingResult:
    """Lesson 3's claim, measured: the runs' last held-out losses and whether the frozen layers kept every bit."""

    scratch_loss: float  # every layer, from random weights
    everything_loss: float  # every layer, from the pretrained network
    fine_tuned_loss: float  # the output layer alone, the rest frozen
    frozen_unchanged: bool
    trainable: int
    total: int


def frozen_layers_unchanged(pretrained: Path, fine_tuned: Path, frozen: tuple[str, ...]) -> bool:
    """Whether every weight and bias of the ``frozen`` layers is bit for bit the same in both files."""
    before, after = read_safetensors(pretrained), read_safetensors(fine_tuned)
    return all(before[f"{layer}.{kind}"].tobytes() == after[f"{layer}.{kind}"].tobytes()
               for layer in frozen for kind in ("weight", "bias"))


class FreezingLesson(QWidget):
    """Lesson 3: the pretrained network fine-tuned three ways on the shifted task, for the same steps."""

    STEPS = 300
    STEP_DELAY_MS = 5  # 1.5 s of watching per run; tests set 0
    FROZEN = ("input_layer", "hidden_layer")

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.runner = LessonRunner(self)
        self.pretrained = paths.resources_dir() / "models" / "toy-pretrained.safetensors"
        self.network = ToyWeights.load(self.pretrained)
        self.result: FreezingResult | None = None
        self.start_button = QPushButton()
        self.start_button.setObjectName("lessonStart")
        self.start_button.clicked.connect(self.start)
        self.status = StatusLabel()
        self.table = QTableWidget(3, 4)
        self.table.setObjectName("freezingTable")
        self.table.verticalHeader().hide()
        self.table.horizontalHeader().setSectionResizeMode(QHeaderView.ResizeMode.Stretch)
        self.table.horizontalHeader().setSectionResizeMode(0, QHeaderView.ResizeMode.ResizeToContents)
        self.table.setEditTriggers(QTableWidget.EditTrigger.NoEditTriggers)
        self.table.verticalHeader().setDefaultSectionSize(26)
        self.table.setFixedHeight(self.table.horizontalHeader().sizeHint().height() + 3 * 26 + 4)
        self.verdict = QLabel()
        self.verdict.setObjectName("freezingVerdict")
        self.verdict.setWordWrap(True)
        self.verdict.setProperty("role", "note")
        self.verdict.hide()
        self.loss_plot, self.weights_view = run_column(self, self.runner, self.start_button, self.status, self.table,
                                                       self.verdict)
        self.runner.runFinished.connect(self._show_run)
        self.runner.allDone.connect(self._on_done)
        self.runner.session.progress.connect(self._on_progress)
        self.runner.session.stateChanged.connect(lambda _state: self.start_button.setEnabled(
            not self.runner.is_busy()))
        self.runs = self._plan()
        self.retranslate()

    def _plan(self) -> list[LessonRun]:
        common = (f"training.steps={self.STEPS}", f"toy.step_delay_ms={self.STEP_DELAY_MS}")
        # The frozen run last, so the views end on it: its frozen layers drawn as such beside its curve.
        return [
            LessonRun(marked("From scratch, every layer trains"),
                      preset_config("toy-frozen", *common, f"frozen.trainable={ALL_LAYERS}", 'model.path=""',
                                    "output.run_name=toy-from-scratch")),
            LessonRun(marked("Pretrained, every layer trains"),
                      preset_config("toy-frozen", *common, f"frozen.trainable={ALL_LAYERS}",
                                    "output.run_name=toy-all-layers")),
            LessonRun(marked("Pretrained, only the output layer trains"), preset_config("toy-frozen", *common)),
        ]

    def start(self) -> None:
        self.runs = self._plan()
        self.result = None
        self.verdict.hide()
        self.retranslate()
        self.runner.start(self.runs)

    def _on_progress(self, progress: Progress) -> None:
        run = self.runs[self.runner.current]
        self.status.say(marked("{run}: step {step} of {total}"), run=run.label, step=progress.step,
                        total=progress.total_steps)

    def _show_run(self, index: int) -> None:
        run = self.runs[index]
        if run.heldout:
            self.table.setItem(index, 3, QTableWidgetItem(f"{run.heldout[0]:.3f} → {run.heldout[-1]:.3f}"))

    def _on_done(self) -> None:
        failed = [run for run in self.runs if run.error or not run.heldout]
        if failed:
            self.status.say(marked("The run failed: {message}"), message=failed[0].error)
            return
        try:
            unchanged = frozen_layers_unchanged(self.pretrained, self.runs[2].output_file, self.FROZEN)
        except ToyFileError as exc:
            self.status.say("{message}", message=str(exc))
            return
        scratch, everything, fine_tuned = (run.heldout[-1] for run in self.runs)
        self.result = FreezingResult(scratch, everything, fine_tuned, unchanged,
                                     self.network.parameter_count(("output_layer",)),
                                     self.network.parameter_count(LAYERS))
        self.status.say(marked("Done: three runs of {steps} steps each."), steps=self.STEPS)
        self.retranslate()

    def retranslate(self) -> None:
        self.status.retranslate()
        self.start_button.setText(tr("Run the three experiments"))
        self.loss_plot.retranslate()
        self.weights_view.retranslate()
        self.table.setHorizontalHeaderLabels([tr("Run"), tr("Trainable / total"), tr("Frozen layers"),
                                              tr("Held-out loss")])
        total = self.network.parameter_count(LAYERS)
        counts = (total, total, self.network.parameter_count(("output_layer",)))
        frozen = (tr("none"), tr("none"), tr("input, hidden"))
        for row, run in enumerate(self.runs):
            self.table.setItem(row, 0, QTableWidgetItem(tr(run.label)))
            self.table.setItem(row, 1, QTableWidgetItem(f"{counts[row]} / {total}"))
            self.table.setItem(row, 2, QTableWidgetItem(frozen[row]))
            self._show_run(row)
        if self.result is not None:
            unchanged = tr("bit for bit unchanged") if self.result.frozen_unchanged else tr("CHANGED")
            self.verdict.setText(tr(
                "Only {trainable} of {total} numbers trained ({share}), yet the fine-tuned network ends at "
                "{frozen} held-out loss, against {scratch} from scratch in the same steps. The frozen layers: "
                "{unchanged}.").format(trainable=self.result.trainable, total=self.result.total,
                                       share=f"{self.result.trainable / self.result.total:.1%}",
                                       frozen=f"{self.result.fine_tuned_loss:.3f}",
                                       scratch=f"{self.result.scratch_loss:.3f}", unchanged=unchanged))
            self.verdict.show()

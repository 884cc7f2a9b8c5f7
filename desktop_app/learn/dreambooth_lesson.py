"""Lesson 5, DreamBooth: the shapes demo's own data side by side — the pictures that teach the rare word
("a sks shape") and the class pictures that prior preservation keeps showing the model ("a shape") — and the
demo itself, with or without prior preservation, its samples before and after read by the shapes judge.

The run is the demo preset (400 DreamBooth-LoRA steps on the shapes model) in a :class:`LessonRunner`:
several minutes on a CPU, far longer than the other lessons, so the lesson says so on its button.  The
judge (:mod:`trainer.shapes.judge`, numpy and Pillow) reads each sample in the GUI process.  What the run
shows is measured in tests/shapes/test_learning.py (the slow test of the demo preset).  GUI thread only.
"""

from __future__ import annotations

from pathlib import Path

from PIL import Image, UnidentifiedImageError
from PySide6.QtCore import Qt
from PySide6.QtGui import QPixmap
from PySide6.QtWidgets import QCheckBox, QGridLayout, QGroupBox, QHBoxLayout, QLabel, QPushButton, QVBoxLayout, QWidget

from desktop_app import paths
from desktop_app.learn.i18n import marked, tr
from desktop_app.learn.run_lessons import LessonRun, LessonRunner, StatusLabel, preset_config
from desktop_app.learn.widgets import TrLabel
from trainer.config import Config
from trainer.protocol import Progress, Sample
from trainer.shapes.judge import EMBLEM, read_image

THUMB = 72
SAMPLE_THUMB = 60  # eight samples and the row's label fit the experiment column


def caption(image: Path) -> str:
    text = image.with_suffix(".txt")
    return text.read_text(encoding="utf-8").strip() if text.is_file() else ""


class PictureRow(QGroupBox):
    """A titled row of a folder's pictures, each with its caption under it."""

    def __init__(self, title: str, folder: Path, limit: int, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.title_source = title
        grid = QGridLayout(self)
        for column, image in enumerate(sorted(folder.glob("*.png"))[:limit]):
            picture = QLabel()
            picture.setPixmap(QPixmap(str(image)).scaled(THUMB, THUMB, Qt.AspectRatioMode.KeepAspectRatio,
                                                         Qt.TransformationMode.FastTransformation))
            picture.setAlignment(Qt.AlignmentFlag.AlignCenter)
            words = QLabel(caption(image))
            words.setAlignment(Qt.AlignmentFlag.AlignCenter)
            words.setProperty("role", "subtle")
            grid.addWidget(picture, 0, column)
            grid.addWidget(words, 1, column)
        self.retranslate()

    def retranslate(self) -> None:
        self.setTitle(tr(self.title_source))


def judged(path: str) -> str:
    """What the shapes judge sees in a sample picture ("emblem", "circle", …; "unreadable" for a broken file)."""
    try:
        with Image.open(path) as image:
            return read_image(image.convert("RGB")).shape
    except (OSError, UnidentifiedImageError):
        return "unreadable"


class SampleRow(QWidget):
    """One sampling point of the demo run: each picture with what the judge read in it."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.grid = QGridLayout(self)
        self.grid.setContentsMargins(0, 0, 0, 0)
        self.readings: list[tuple[str, str]] = []  # (prompt, what the judge saw)

    def show_sample(self, sample: Sample) -> None:
        while self.grid.count():
            self.grid.takeAt(0).widget().deleteLater()
        self.readings = []
        for column, (path, prompt) in enumerate(zip(sample.paths, sample.prompts, strict=True)):
            picture = QLabel()
            picture.setPixmap(QPixmap(path).scaled(SAMPLE_THUMB, SAMPLE_THUMB, Qt.AspectRatioMode.KeepAspectRatio,
                                                   Qt.TransformationMode.FastTransformation))
            picture.setToolTip(prompt)
            reading = judged(path)
            self.readings.append((prompt, reading))
            words = QLabel(f"<b>{reading}</b>" if reading == EMBLEM else reading)
            words.setAlignment(Qt.AlignmentFlag.AlignCenter)
            words.setProperty("role", "subtle")
            self.grid.addWidget(picture, 0, column)
            self.grid.addWidget(words, 1, column)

    def emblems(self, prompt: str) -> tuple[int, int]:
        """(pictures the judge read as the emblem, pictures) for ``prompt``."""
        readings = [reading for asked, reading in self.readings if asked == prompt]
        return sum(reading == EMBLEM for reading in readings), len(readings)


class DemoRun(QGroupBox):
    """The demo preset, with or without prior preservation: its samples before and after, judged.  The last run of
    each kind stays on show, so a run with and a run without prior preservation can be compared ("a shape")."""

    PROMPTS = ("a sks shape", "a shape")
    SEEDS = (0, 1, 2, 3)
    OVERRIDES: tuple[str, ...] = ()  # the demo as shipped (tests shorten it)

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.runner = LessonRunner(self)
        self.prior = QCheckBox()
        self.prior.setChecked(True)
        self.start_button = QPushButton()
        self.start_button.setObjectName("lessonStart")
        self.start_button.clicked.connect(self.start)
        self.status = StatusLabel()
        # The base model's samples are the same for both kinds of run (same model, prompts and seeds).
        self.before, self.before_label = SampleRow(), QLabel()
        self.afters = {True: SampleRow(), False: SampleRow()}  # by prior preservation
        self.after_labels = {True: QLabel(), False: QLabel()}
        self.running_prior = True
        self.summary = QLabel()
        self.summary.setObjectName("demoSummary")
        self.summary.setWordWrap(True)
        top = QHBoxLayout()
        top.addWidget(self.start_button)
        top.addWidget(self.prior)
        top.addWidget(self.status, 1)
        rows = QGridLayout()
        rows.addWidget(self.before_label, 0, 0)
        rows.addWidget(self.before, 0, 1)
        for row, prior in enumerate((True, False), start=1):
            self.after_labels[prior].setWordWrap(True)
            self.after_labels[prior].setMaximumWidth(130)
            rows.addWidget(self.after_labels[prior], row, 0)
            rows.addWidget(self.afters[prior], row, 1)
        rows.setColumnStretch(1, 1)
        layout = QVBoxLayout(self)
        layout.addLayout(top)
        layout.addLayout(rows)
        layout.addWidget(self.summary)
        self.runner.session.sample.connect(self.show_sample)
        self.runner.session.progress.connect(self._on_progress)
        self.runner.allDone.connect(self._on_done)
        self.runner.session.stateChanged.connect(lambda _state: self._enable())
        self.retranslate()

    def _enable(self) -> None:
        idle = not self.runner.is_busy()
        self.start_button.setEnabled(idle)
        self.prior.setEnabled(idle)

    def config(self) -> Config:
        """The demo preset, sampled only before and after, with prior preservation as the checkbox says."""
        prompts = ", ".join(f'"{prompt}"' for prompt in self.PROMPTS)
        return preset_config(
            "demo", f"dreambooth.prior_preservation={str(self.prior.isChecked()).lower()}",
            f"sampling.prompts=[{prompts}]", f"sampling.seeds={list(self.SEEDS)}", "sampling.every_n_steps=0",
            "sampling.at_start=true", "output.checkpoint_every=0", *self.OVERRIDES)

    def start(self) -> None:
        self.running_prior = self.prior.isChecked()
        self.runner.start([LessonRun(marked("DreamBooth demo"), self.config())])

    def show_sample(self, sample: Sample) -> None:
        (self.before if sample.step == 0 else self.afters[self.running_prior]).show_sample(sample)

    def _on_progress(self, progress: Progress) -> None:
        self.status.say(marked("Step {step} of {total}"), step=progress.step, total=progress.total_steps)

    def _on_done(self) -> None:
        run = self.runner.runs[-1]
        if run.error:
            self.status.say(marked("The run failed: {message}"), message=run.error)
            return
        self.status.say(marked("Done."))
        self._summarise()

    def _summarise(self) -> None:
        lines = []
        before, before_total = self.before.emblems(self.PROMPTS[0])
        for prior, name in ((True, tr("With prior preservation")), (False, tr("Without prior preservation"))):
            after = self.afters[prior]
            if not after.readings:
                continue
            rare, rare_total = after.emblems(self.PROMPTS[0])
            kept, kept_total = after.emblems(self.PROMPTS[1])
            lines.append(f"<b>{name}</b>: " + tr(
                "The judge finds the emblem in {rare} of {rare_total} pictures of \"a sks shape\" ({before} of "
                "{before_total} before), and in {kept} of {kept_total} of \"a shape\".").format(
                rare=rare, rare_total=rare_total, before=before, before_total=before_total, kept=kept,
                kept_total=kept_total))
        self.summary.setText("<br>".join(lines))

    def retranslate(self) -> None:
        self.setTitle(tr("The demo: teach the rare word (400 steps, several minutes on a CPU)"))
        self.start_button.setText(tr("Train the demo"))
        self.prior.setText(tr("With prior preservation"))
        self.before_label.setText(tr("Before"))
        self.after_labels[True].setText(tr("After, with prior preservation"))
        self.after_labels[False].setText(tr("After, without it"))
        self.status.retranslate()
        self._summarise()


class DreamBoothLesson(QWidget):
    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        demo = paths.resources_dir() / "demo"
        self.instance = PictureRow(marked("Instance pictures: the new thing, with the rare word"),
                                   demo / "dataset", 6)
        self.classes = PictureRow(marked("Class pictures: what \"a shape\" meant before (prior preservation)"),
                                  demo / "class_images", 8)
        self.outcome = TrLabel(marked(
            "After the demo's 400 steps the shapes judge finds the emblem in about 8 of 12 pictures of "
            "\"a sks shape\" (0 before), while \"a shape\" still draws ordinary circles and squares. That is "
            "prior preservation's work: every step also trains on the class pictures with \"a shape\", so "
            "learning the new word does not overwrite what the class word meant."), role="note")
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(self.instance)
        layout.addWidget(self.classes)
        layout.addWidget(self.outcome)
        self.demo = DemoRun()
        self.runner = self.demo.runner  # the page stops it when the window closes
        layout.addWidget(self.demo)
        layout.addStretch(1)

    def retranslate(self) -> None:
        for widget in (self.instance, self.classes, self.outcome, self.demo):
            widget.retranslate()

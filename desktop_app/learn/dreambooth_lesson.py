"""Lesson 5, DreamBooth: the shapes demo's own data side by side — the pictures that teach the rare word
("a sks shape") and the class pictures that prior preservation keeps showing the model ("a shape") — and the
demo itself, with or without prior preservation, its samples before and after read by the shapes judge.

The run is the demo preset as shipped (400 DreamBooth-LoRA steps of one picture, plus one class picture, on the
shapes model) in a :class:`LessonRunner`: well under a minute on a CPU.  The judge (:mod:`trainer.shapes.judge`,
numpy and Pillow) reads each sample in the GUI process, and the lesson measures how far "a shape" moved from the
base model's pictures (same seeds): little with prior preservation, far without.  What the runs show is tested in
tests/gui/test_learn_runs.py.  GUI thread only.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError
from PySide6.QtCore import Qt, QTimer
from PySide6.QtGui import QPixmap
from PySide6.QtWidgets import (
    QCheckBox,
    QFrame,
    QGridLayout,
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QPushButton,
    QScrollArea,
    QVBoxLayout,
    QWidget,
)

from desktop_app import paths
from desktop_app.learn.i18n import marked, tr
from desktop_app.learn.run_lessons import LessonRun, LessonRunner, StatusLabel, preset_config
from desktop_app.learn.widgets import TrLabel
from trainer.config import Config
from trainer.protocol import Progress, Sample
from trainer.shapes.judge import EMBLEM, read_image

THUMB = 64  # the pictures' own size
NO_EVALUATION = 1_000_000  # held-out loss at the first and the last step only: the lesson draws no curve
SAMPLE_THUMB = 64  # the samples' own size: six per prompt, two prompts a row each, fit the experiment column


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


def pixels(path: str) -> np.ndarray | None:
    try:
        with Image.open(path) as image:
            return np.asarray(image.convert("RGB"), dtype=np.float32)
    except (OSError, UnidentifiedImageError):
        return None


class SampleRow(QWidget):
    """One sampling point of the demo run: a line of pictures per prompt, each with what the judge read in it."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.grid = QGridLayout(self)
        self.grid.setContentsMargins(0, 0, 0, 0)
        self.grid.setVerticalSpacing(2)
        self.readings: list[tuple[str, str]] = []  # (prompt, what the judge saw)
        self.pictures: dict[tuple[str, int], str] = {}  # (prompt, seed) → the sample's file

    def show_sample(self, sample: Sample) -> None:
        while self.grid.count():
            self.grid.takeAt(0).widget().deleteLater()
        self.readings, self.pictures = [], {}
        lines = list(dict.fromkeys(sample.prompts))  # one line per prompt, in the run's order
        columns: dict[str, int] = {}
        for line, prompt in enumerate(lines):
            words = QLabel(f"“{prompt}”")
            words.setProperty("role", "subtle")
            self.grid.addWidget(words, 2 * line, 0, Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
        for path, prompt, seed in zip(sample.paths, sample.prompts, sample.seeds, strict=True):
            line, column = lines.index(prompt), columns.get(prompt, 0) + 1
            columns[prompt] = column
            picture = QLabel()
            picture.setPixmap(QPixmap(path).scaled(SAMPLE_THUMB, SAMPLE_THUMB, Qt.AspectRatioMode.KeepAspectRatio,
                                                   Qt.TransformationMode.FastTransformation))
            picture.setToolTip(f"{prompt} (seed {seed})")
            reading = judged(path)
            self.readings.append((prompt, reading))
            self.pictures[(prompt, seed)] = path
            words = QLabel(f"<b>{reading}</b>" if reading == EMBLEM else reading)
            words.setAlignment(Qt.AlignmentFlag.AlignCenter)
            words.setProperty("role", "subtle")
            self.grid.addWidget(picture, 2 * line, column, Qt.AlignmentFlag.AlignCenter)
            self.grid.addWidget(words, 2 * line + 1, column)

    def emblems(self, prompt: str) -> tuple[int, int]:
        """(pictures the judge read as the emblem, pictures) for ``prompt``."""
        readings = [reading for asked, reading in self.readings if asked == prompt]
        return sum(reading == EMBLEM for reading in readings), len(readings)

    def change_from(self, before: SampleRow, prompt: str) -> float | None:
        """How far ``prompt``'s pictures moved from ``before``'s, seed by seed: the mean absolute difference of
        their pixels, as a share of the full range (0: the same pictures, 1: black became white).  Same model,
        prompt and seed before training: what changed is what training did to that prompt."""
        changes = []
        for (asked, seed), path in self.pictures.items():
            earlier = before.pictures.get((asked, seed))
            if asked != prompt or earlier is None:
                continue
            now, then = pixels(path), pixels(earlier)
            if now is not None and then is not None and now.shape == then.shape:
                changes.append(float(np.abs(now - then).mean()) / 255.0)
        return sum(changes) / len(changes) if changes else None


class DemoRun(QGroupBox):
    """The demo preset, with or without prior preservation: its samples before and after, judged.  The last run of
    each kind stays on show, so a run with and a run without prior preservation can be compared ("a shape")."""

    PROMPTS = ("a sks shape", "a shape")
    SEEDS = (0, 1, 2, 3, 4, 5)

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
        layout = QVBoxLayout(self)
        layout.addLayout(top)
        # Each sampling point under its own heading (a column of headings beside the pictures did not fit).
        for label, row in ((self.before_label, self.before), (self.after_labels[True], self.afters[True]),
                           (self.after_labels[False], self.afters[False])):
            label.setProperty("role", "sectionTitle")
            layout.addWidget(label)
            layout.addWidget(row)
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
        """The demo preset as shipped, sampled only before and after (six seeds per prompt), with prior preservation as
        the checkbox says."""
        prompts = ", ".join(f'"{prompt}"' for prompt in self.PROMPTS)
        return preset_config(
            "demo", f"dreambooth.prior_preservation={str(self.prior.isChecked()).lower()}",
            f"sampling.prompts=[{prompts}]", f"sampling.seeds={list(self.SEEDS)}", "sampling.every_n_steps=0",
            "sampling.at_start=true", "output.checkpoint_every=0", f"training.eval_every={NO_EVALUATION}")

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

    def class_change(self, prior: bool) -> float | None:
        """How far "a shape" moved from the base model's pictures in the last run with (or without) prior
        preservation: the lesson's measure of forgetting."""
        return self.afters[prior].change_from(self.before, self.PROMPTS[1])

    def _summarise(self) -> None:
        lines = []
        before, before_total = self.before.emblems(self.PROMPTS[0])
        for prior, name in ((True, tr("With prior preservation")), (False, tr("Without prior preservation"))):
            after = self.afters[prior]
            if not after.readings:
                continue
            rare, rare_total = after.emblems(self.PROMPTS[0])
            kept, kept_total = after.emblems(self.PROMPTS[1])
            change = self.class_change(prior)
            lines.append(f"<b>{name}</b>: " + tr(
                "The judge finds the emblem in {rare} of {rare_total} pictures of \"a sks shape\" ({before} of "
                "{before_total} before), and in {kept} of {kept_total} of \"a shape\".").format(
                rare=rare, rare_total=rare_total, before=before, before_total=before_total, kept=kept,
                kept_total=kept_total) + (" " + tr(
                "The pictures of \"a shape\" changed by {change} % from before.").format(
                change=round(100 * change)) if change is not None else ""))
        self.summary.setText("<br>".join(lines))

    def retranslate(self) -> None:
        self.setTitle(tr("The demo: teach the rare word (400 steps, under a minute on a CPU)"))
        self.start_button.setText(tr("Train the demo"))
        self.prior.setText(tr("With prior preservation"))
        self.before_label.setText(tr("Before"))
        self.after_labels[True].setText(tr("After, with prior preservation"))
        self.after_labels[False].setText(tr("After, without it"))
        self.status.retranslate()
        self._summarise()


class DreamBoothLesson(QWidget):
    """The lesson's pictures, its outcome and the demo run, in a scroll area: the demo's three rows of samples
    (two prompts each) do not fit under the pictures in an 800-pixel window."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        demo = paths.resources_dir() / "demo"
        self.instance = PictureRow(marked("Instance pictures: the new thing, with the rare word"),
                                   demo / "dataset", 6)
        self.classes = PictureRow(marked("Class pictures: what \"a shape\" meant before (prior preservation)"),
                                  demo / "class_images", 6)  # six of twelve: eight did not fit the column
        self.outcome = TrLabel(marked(
            "After the demo's 400 steps the shapes judge finds the emblem in about 8 of 12 pictures of "
            "\"a sks shape\" (0 before), while \"a shape\" still draws ordinary circles and squares. That is "
            "prior preservation's work: every step also trains on the class pictures with \"a shape\", so "
            "learning the new word does not overwrite what the class word meant. Train it once without prior "
            "preservation too: then \"a shape\" turns into the emblem as well."), role="note")
        self.demo = DemoRun()
        self.runner = self.demo.runner  # the page stops it when the window closes
        content = QWidget()
        layout = QVBoxLayout(content)
        layout.setContentsMargins(0, 0, 4, 0)
        layout.addWidget(self.instance)
        layout.addWidget(self.classes)
        layout.addWidget(self.outcome)
        layout.addWidget(self.demo)
        layout.addStretch(1)
        self.scroll = QScrollArea()
        self.scroll.setWidgetResizable(True)
        self.scroll.setFrameShape(QFrame.Shape.NoFrame)
        self.scroll.setWidget(content)
        outer = QVBoxLayout(self)
        outer.setContentsMargins(0, 0, 0, 0)
        outer.addWidget(self.scroll)
        # A run's first pictures and its verdict come into view as they arrive.
        self.runner.session.sample.connect(lambda _sample: self.show_demo())
        self.runner.allDone.connect(self.show_demo)

    def show_demo(self) -> None:
        """Scroll the demo's samples and its summary into view (the pictures above stay a scroll away), once the
        rows just filled are laid out: in the event loop's next turn."""
        QTimer.singleShot(0, self.scroll, lambda: self.scroll.ensureWidgetVisible(self.demo.summary, 0, 0))

    def retranslate(self) -> None:
        for widget in (self.instance, self.classes, self.outcome, self.demo):
            widget.retranslate()

"""Lesson 5, DreamBooth: the shapes demo's own data side by side — the pictures that teach the rare word
("a sks shape") and the class pictures that prior preservation keeps showing the model ("a shape").

The training itself is the demo preset on the Train page ("Do this on your own model"): 400 steps take a
few minutes on a CPU, longer than a lesson's experiment should, so the lesson shows what goes in and says
what comes out (measured by the shapes judge: tests/shapes/test_learning.py).  GUI thread only.
"""

from __future__ import annotations

from pathlib import Path

from PySide6.QtCore import Qt
from PySide6.QtGui import QPixmap
from PySide6.QtWidgets import QGridLayout, QGroupBox, QLabel, QVBoxLayout, QWidget

from desktop_app import paths
from desktop_app.learn.i18n import marked, tr
from desktop_app.learn.widgets import TrLabel

THUMB = 72


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
        layout.addStretch(1)

    def retranslate(self) -> None:
        for widget in (self.instance, self.classes, self.outcome):
            widget.retranslate()

"""Two images dropped on the grid together: one before/after pair, or two images?

Two image files that do not already pair by name (``cat.png`` + ``cat_control.png`` import as a pair
without asking) may be a before/after pair or simply two pictures, so the page asks.  The dialog shows
them as control → target, guessed from their names (before/after, input/output, …) or else their age (the
edit is usually made after the picture it starts from), with *Swap* to turn them round.  Imported as a pair,
the target keeps its name and the control is copied as ``NAME_control.EXT`` beside it
(``trainer.dataset.importing``); the dropped files are only read.

GUI thread only; thumbnails from the page's ``ThumbnailLoader``.
"""

from __future__ import annotations

import re
from pathlib import Path

from PySide6.QtCore import Qt
from PySide6.QtGui import QImage, QPixmap
from PySide6.QtWidgets import QDialog, QHBoxLayout, QLabel, QPushButton, QVBoxLayout, QWidget

from desktop_app.dataset.thumbnails import THUMB_SIZE, ThumbnailLoader

AS_PAIR, AS_TWO_IMAGES = 1, 2  # the dialog's results besides Rejected (0)
_BEFORE = frozenset({"before", "input", "source", "src", "original", "orig", "raw", "control", "start"})
_AFTER = frozenset({"after", "output", "result", "target", "edit", "edited", "final", "end"})


def _side(path: Path) -> str | None:
    """"before" or "after" when the file's name says which it is (``photo_before.jpg``, ``output-3.png``)."""
    words = set(re.split(r"[^a-z0-9]+", path.stem.casefold()))
    before, after = bool(words & _BEFORE), bool(words & _AFTER)
    return "before" if before and not after else "after" if after and not before else None


def control_and_target(first: Path, second: Path) -> tuple[Path, Path]:
    """Which of two dropped images is the control (before) and which the target (after): by their names when
    one says so, else the older file is the control."""
    for control, target in ((first, second), (second, first)):
        if _side(control) == "before" or _side(target) == "after":
            return control, target
    try:
        older_first = first.stat().st_mtime <= second.stat().st_mtime
    except OSError:
        older_first = True
    return (first, second) if older_first else (second, first)


class PairDialog(QDialog):
    def __init__(self, first: Path, second: Path, loader: ThumbnailLoader, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("pairDialog")
        self.setWindowTitle("Two images dropped")
        self.control, self.target = control_and_target(first, second)
        question = QLabel("<b>Import them as one before/after pair?</b><br>An edit model learns to turn the control "
                          "image (before) into the target (after), following the target's caption.")
        question.setWordWrap(True)
        self.control_picture, self.target_picture = QLabel(), QLabel()
        self.control_name, self.target_name = QLabel(), QLabel()
        pictures = QHBoxLayout()
        for title, picture, name in (("Control (before)", self.control_picture, self.control_name),
                                     ("Target (after)", self.target_picture, self.target_name)):
            column = QVBoxLayout()
            column.addWidget(QLabel(f"<b>{title}</b>"), alignment=Qt.AlignmentFlag.AlignHCenter)
            picture.setFixedSize(THUMB_SIZE + 8, THUMB_SIZE + 8)
            picture.setAlignment(Qt.AlignmentFlag.AlignCenter)
            picture.setStyleSheet("background: #f5f7fa; border: 1px solid #d9e2ec; border-radius: 6px;")
            column.addWidget(picture, alignment=Qt.AlignmentFlag.AlignHCenter)
            name.setProperty("role", "subtle")
            column.addWidget(name, alignment=Qt.AlignmentFlag.AlignHCenter)
            pictures.addLayout(column)
            if picture is self.control_picture:
                arrow = QLabel("→")
                arrow.setStyleSheet("color: #7b8794; font-size: 18pt;")
                pictures.addWidget(arrow)
        self.swap_button = QPushButton("Swap")
        self.swap_button.setObjectName("swapPair")
        self.swap_button.clicked.connect(self.swap)
        self.pair_button = QPushButton("Import as a pair")
        self.pair_button.setObjectName("importPair")
        self.pair_button.setDefault(True)
        self.pair_button.clicked.connect(lambda: self.done(AS_PAIR))
        two = QPushButton("Import as two images")
        two.setObjectName("importTwo")
        two.clicked.connect(lambda: self.done(AS_TWO_IMAGES))
        cancel = QPushButton("Cancel")
        cancel.clicked.connect(self.reject)
        buttons = QHBoxLayout()
        buttons.addWidget(self.swap_button)
        buttons.addStretch(1)
        buttons.addWidget(cancel)
        buttons.addWidget(two)
        buttons.addWidget(self.pair_button)
        layout = QVBoxLayout(self)
        layout.addWidget(question)
        layout.addLayout(pictures)
        layout.addLayout(buttons)
        self._thumbnails: dict[str, QImage] = {}
        loader.ready.connect(self._thumbnail_ready)
        for path in (self.control, self.target):
            loader.request(str(path))
        self._show()

    def swap(self) -> None:
        self.control, self.target = self.target, self.control
        self._show()

    def _show(self) -> None:
        for path, picture, name in ((self.control, self.control_picture, self.control_name),
                                    (self.target, self.target_picture, self.target_name)):
            image = self._thumbnails.get(str(path))
            if image is None:
                picture.setText("…")
            else:
                picture.setPixmap(QPixmap.fromImage(image))
            name.setText(path.name)

    def _thumbnail_ready(self, path: str, image: QImage) -> None:
        if path in (str(self.control), str(self.target)):
            self._thumbnails[path] = image
            self._show()

"""The preview grid: one row per model (its label, then its images), one column per (prompt, seed)."""

from __future__ import annotations

from typing import Any

from PySide6.QtCore import Qt
from PySide6.QtGui import QPixmap
from PySide6.QtWidgets import QGridLayout, QLabel, QScrollArea, QVBoxLayout, QWidget

THUMBNAIL = 140  # three rows fit a 800 px tall window without scrolling


class PreviewGrid(QScrollArea):
    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("mergePreviewGrid")
        self.setWidgetResizable(True)
        self.images: list[QLabel] = []
        self.clear()

    # Each page (the hint, or a grid) is a new widget with everything on it as its children:
    # setWidget deletes the page it replaces, so nothing on a page may outlive it (a hint label kept
    # across pages was deleted with the first preview, and the next clear() raised on it).

    def clear(self) -> None:
        self.images = []
        holder = QWidget()
        layout = QVBoxLayout(holder)
        hint = QLabel("Run an operation, then press Preview: the same prompts and seeds drawn by the "
                      "inputs and by the result, side by side.")
        hint.setObjectName("mergePreviewHint")
        hint.setWordWrap(True)
        hint.setAlignment(Qt.AlignmentFlag.AlignCenter)
        hint.setProperty("role", "hint")
        layout.addWidget(hint, 1)
        self.setWidget(holder)

    def show_result(self, result: dict[str, Any]) -> None:
        """``result`` as returned by the ``merge-preview`` task."""
        holder = QWidget()
        grid = QGridLayout(holder)
        grid.setHorizontalSpacing(8)
        grid.setVerticalSpacing(8)
        self.images = []
        for column, title in enumerate(result.get("columns", []), start=1):
            header = QLabel(title)
            header.setWordWrap(True)
            header.setMaximumWidth(THUMBNAIL)
            header.setProperty("role", "subtle")
            grid.addWidget(header, 0, column, Qt.AlignmentFlag.AlignBottom)
        for row, entry in enumerate(result.get("rows", []), start=1):
            label = QLabel(entry["label"])
            label.setWordWrap(True)
            label.setMaximumWidth(120)
            label.setStyleSheet("font-weight: 600;")
            grid.addWidget(label, row, 0, Qt.AlignmentFlag.AlignVCenter)
            for column, path in enumerate(entry["images"], start=1):
                image = QLabel()
                image.setObjectName("mergePreviewImage")
                image.setToolTip(path)
                pixmap = QPixmap(path)
                image.setPixmap(pixmap.scaled(THUMBNAIL, THUMBNAIL, Qt.AspectRatioMode.KeepAspectRatio,
                                              Qt.TransformationMode.SmoothTransformation))
                image.setFixedSize(THUMBNAIL, THUMBNAIL)
                image.setAlignment(Qt.AlignmentFlag.AlignCenter)
                image.setStyleSheet("border: 1px solid #d9e2ec; background: #f5f7fa;")
                grid.addWidget(image, row, column)
                self.images.append(image)
        grid.setColumnStretch(grid.columnCount(), 1)
        grid.setRowStretch(grid.rowCount(), 1)
        self.setWidget(holder)

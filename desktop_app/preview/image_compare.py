"""Two samples side by side, large: the same prompt and seed at two steps (by default step 0 and the
step clicked), so "what did training change" is one look.  Both steps and the prompt can be changed.

Threads: GUI thread; full-size images come from the grid's :class:`ThumbnailLoader` pool.
"""

from __future__ import annotations

from PySide6.QtCore import Qt
from PySide6.QtGui import QImage, QPixmap
from PySide6.QtWidgets import (
    QComboBox,
    QDialog,
    QDialogButtonBox,
    QGridLayout,
    QHBoxLayout,
    QLabel,
    QSizePolicy,
    QVBoxLayout,
    QWidget,
)

from desktop_app.preview.sample_history import SampleHistory
from desktop_app.preview.thumbnails import ThumbnailLoader

VIEW = 384  # px per image in the dialog


class CompareDialog(QDialog):
    def __init__(self, history: SampleHistory, loader: ThumbnailLoader, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("compareDialog")
        self.setWindowTitle("Compare samples")
        self.history, self.loader = history, loader
        self.column_combo = QComboBox()
        self.column_combo.setObjectName("compareColumn")
        self.left_combo, self.right_combo = QComboBox(), QComboBox()
        self.left_combo.setObjectName("compareLeftStep")
        self.right_combo.setObjectName("compareRightStep")
        self.left_image, self.right_image = self._view(), self._view()
        for combo in (self.column_combo, self.left_combo, self.right_combo):
            combo.activated.connect(self._refresh)

        top = QHBoxLayout()
        top.addWidget(QLabel("Prompt and seed"))
        top.addWidget(self.column_combo, 1)
        grid = QGridLayout()
        grid.addWidget(self.left_combo, 0, 0)
        grid.addWidget(self.right_combo, 0, 1)
        grid.addWidget(self.left_image, 1, 0)
        grid.addWidget(self.right_image, 1, 1)
        buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Close)
        buttons.rejected.connect(self.reject)
        layout = QVBoxLayout(self)
        layout.addLayout(top)
        layout.addLayout(grid, 1)
        layout.addWidget(buttons)
        loader.loaded.connect(self._on_loaded)
        history.added.connect(lambda _sample: self._fill_steps())
        history.cleared.connect(self._fill_steps)

    def _view(self) -> QLabel:
        label = QLabel()
        label.setMinimumSize(VIEW, VIEW)
        label.setAlignment(Qt.AlignmentFlag.AlignCenter)
        label.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Expanding)
        label.setStyleSheet("background: #f1f3f5;")
        return label

    def _fill_steps(self) -> None:
        columns = self.history.columns()
        current = self.column_combo.currentIndex()
        self.column_combo.clear()
        for prompt, seed in columns:
            self.column_combo.addItem(f"{prompt} · seed {seed}")
        self.column_combo.setCurrentIndex(max(0, min(current, len(columns) - 1)))
        for combo in (self.left_combo, self.right_combo):
            chosen = combo.currentData()
            combo.clear()
            for step in self.history.steps():
                combo.addItem("Base model (step 0)" if step == 0 else f"Step {step:,}", step)
            if chosen is not None and combo.findData(chosen) >= 0:
                combo.setCurrentIndex(combo.findData(chosen))

    def show_pair(self, column: int, left_step: int, right_step: int) -> None:
        self._fill_steps()
        self.column_combo.setCurrentIndex(column)
        self.left_combo.setCurrentIndex(max(0, self.left_combo.findData(left_step)))
        self.right_combo.setCurrentIndex(max(0, self.right_combo.findData(right_step)))
        self._refresh()

    def shown_steps(self) -> tuple[int | None, int | None]:
        return self.left_combo.currentData(), self.right_combo.currentData()

    def shown_paths(self) -> tuple[str | None, str | None]:
        columns = self.history.columns()
        if not columns:
            return None, None
        column = columns[max(0, self.column_combo.currentIndex())]
        left, right = self.shown_steps()
        return (self.history.path_for(left, column) if left is not None else None,
                self.history.path_for(right, column) if right is not None else None)

    def _refresh(self, *_: object) -> None:
        for view, path in zip((self.left_image, self.right_image), self.shown_paths(), strict=True):
            view.setProperty("path", path or "")
            view.clear()
            view.setText("…" if path else "(not drawn at this step)")
            if path:
                self.loader.request(path, VIEW)

    def _on_loaded(self, path: str, size: int, image: QImage) -> None:
        if size != VIEW:
            return
        for view in (self.left_image, self.right_image):
            if view.property("path") == path:
                if image.isNull():
                    view.setText("(unreadable)")
                else:
                    view.setPixmap(QPixmap.fromImage(image))

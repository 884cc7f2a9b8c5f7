"""The sample grid: one row per sampling step, one column per prompt × seed; it grows while a run goes.

Step 0 (the base model) is the first row, so every later row reads as "what training changed".
Click a tile to enlarge it beside the same prompt and seed at step 0 (:class:`CompareDialog`, where
any two steps can be compared).  The newest row is scrolled into view as it arrives.

Threads: GUI thread only; the pixels come from :class:`~desktop_app.thumbnails.ThumbnailLoader`
(decoded and scaled in its pool), so a grid of hundreds of tiles never stalls the window.
"""

from __future__ import annotations

from PySide6.QtCore import Qt, QTimer, Signal
from PySide6.QtGui import QImage, QMouseEvent, QPixmap
from PySide6.QtWidgets import QFrame, QGridLayout, QHBoxLayout, QLabel, QScrollArea, QVBoxLayout, QWidget

from desktop_app.image_compare import CompareDialog
from desktop_app.sample_history import SampleHistory
from desktop_app.thumbnails import ThumbnailLoader
from trainer.protocol import Sample

TILE = 136  # px: four prompt×seed columns fit beside the form at 1280 px
ROW_LABEL_WIDTH = 84
SPACING = 6
PLACEHOLDER = "Sample images appear here while a Stable Diffusion model trains: one row per sampling step."


class Tile(QLabel):
    clicked = Signal()

    def __init__(self, path: str, tooltip: str) -> None:
        super().__init__("…")
        self.path = path
        self.setObjectName("sampleTile")
        self.setFixedSize(TILE, TILE)
        self.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self.setToolTip(tooltip)
        self.setCursor(Qt.CursorShape.PointingHandCursor)
        self.setStyleSheet("QLabel#sampleTile { background: #f1f3f5; border: 1px solid #dee2e6; }")

    def show_image(self, image: QImage) -> None:
        if image.isNull():
            self.setText("(unreadable)")
        else:
            self.setPixmap(QPixmap.fromImage(image))

    def mouseReleaseEvent(self, event: QMouseEvent) -> None:
        if event.button() == Qt.MouseButton.LeftButton:
            self.clicked.emit()
        super().mouseReleaseEvent(event)


class SampleGrid(QWidget):
    def __init__(self, history: SampleHistory, parent: QWidget | None = None, *, follow_newest: bool = True) -> None:
        """``follow_newest``: scroll each new row into view (live runs); off for a finished run's history."""
        super().__init__(parent)
        self.setObjectName("sampleGrid")
        self.history = history
        self.follow_newest = follow_newest
        self.loader = ThumbnailLoader(self)
        self.loader.loaded.connect(self._on_loaded)
        self.tiles: dict[tuple[int, int], Tile] = {}  # (step, column) → tile
        self.columns: list[tuple[str, int]] = []
        self.rows: list[int] = []
        self.dialog: CompareDialog | None = None

        self.header = QLabel(PLACEHOLDER)
        self.header.setObjectName("samplesHeader")
        self.header.setWordWrap(True)
        self.header.setProperty("role", "hint")
        # Column headers (prompt, seed) stay in view above the scrolling rows; tiles have fixed widths,
        # so a plain row of fixed-width labels lines up with the grid's columns.
        self.column_bar = QWidget()
        self.column_bar.setObjectName("sampleColumns")
        self.column_layout = QHBoxLayout(self.column_bar)
        self.column_layout.setContentsMargins(0, 0, 0, 0)
        self.column_layout.setSpacing(SPACING)
        self.canvas = QWidget()
        self.grid = QGridLayout(self.canvas)
        self.grid.setContentsMargins(0, 0, 0, 0)
        self.grid.setSpacing(SPACING)
        self.grid.setAlignment(Qt.AlignmentFlag.AlignLeft | Qt.AlignmentFlag.AlignTop)
        self.scroll = QScrollArea()
        self.scroll.setWidgetResizable(True)
        self.scroll.setFrameShape(QFrame.Shape.NoFrame)
        self.scroll.setWidget(self.canvas)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(4, 4, 4, 4)
        layout.addWidget(self.header)
        layout.addWidget(self.column_bar)
        layout.addWidget(self.scroll, 1)
        history.added.connect(self._on_added)
        history.cleared.connect(self._rebuild)
        self._rebuild()

    def row_count(self) -> int:
        return len(self.rows)

    def tile_count(self) -> int:
        return len(self.tiles)

    def shutdown(self) -> None:
        self.loader.shutdown()

    # ------------------------------------------------------------------ building

    def _rebuild(self) -> None:
        while self.grid.count():
            _discard(self.grid.takeAt(0).widget())
        while self.column_layout.count():
            _discard(self.column_layout.takeAt(0).widget())
        self.tiles.clear()
        self.rows = []
        self.columns = self.history.columns()
        self.column_layout.addSpacing(ROW_LABEL_WIDTH)
        for prompt, seed in self.columns:
            label = QLabel(f"<b>{prompt}</b><br>seed {seed}")
            label.setObjectName("sampleColumnHeader")
            label.setWordWrap(True)
            label.setFixedWidth(TILE)
            label.setAlignment(Qt.AlignmentFlag.AlignCenter)
            label.setToolTip(prompt)
            self.column_layout.addWidget(label)
        self.column_layout.addStretch(1)
        self.column_bar.setVisible(bool(self.columns))
        for sample in self.history.samples():
            self._add_row(sample)
        self._update_header()

    def _on_added(self, sample: Sample) -> None:
        new_columns = [c for c in zip(sample.prompts, sample.seeds, strict=True) if c not in self.columns]
        if new_columns or sample.step in self.rows:
            self._rebuild()  # a new prompt, or a step drawn again: lay the grid out anew
        else:
            self._add_row(sample)
            self._update_header()
        if self.follow_newest:
            QTimer.singleShot(0, self._scroll_to_newest)

    def _add_row(self, sample: Sample) -> None:
        steps = sorted([*self.rows, sample.step])
        row = steps.index(sample.step)
        if row < len(self.rows):  # an earlier step arrives late (rare): relayout keeps the order simple
            self.rows = steps
            self._relayout()
            return
        self.rows = steps
        self._place_row(sample, row)

    def _place_row(self, sample: Sample, row: int) -> None:
        label = QLabel("base model\n(step 0)" if sample.step == 0 else f"step\n{sample.step:,}")
        label.setObjectName("sampleRowHeader")
        label.setAlignment(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
        label.setFixedWidth(ROW_LABEL_WIDTH - SPACING)
        label.setProperty("role", "subtle")
        self.grid.addWidget(label, row, 0)
        for path, prompt, seed in zip(sample.paths, sample.prompts, sample.seeds, strict=True):
            column = self.columns.index((prompt, seed))
            tile = Tile(path, f"{prompt} · seed {seed} · step {sample.step:,}\nClick to enlarge and compare")
            tile.clicked.connect(lambda step=sample.step, column=column: self.open_compare(step, column))
            self.tiles[(sample.step, column)] = tile
            self.grid.addWidget(tile, row, column + 1)
            self.loader.request(path, TILE)

    def _relayout(self) -> None:
        self._rebuild()

    def _update_header(self) -> None:
        if not self.rows:
            self.header.setText(PLACEHOLDER)
            return
        last = self.rows[-1]
        self.header.setText(f"{len(self.rows)} sampling point{'s' if len(self.rows) > 1 else ''}, newest at "
                            f"step {last:,}. Click an image to enlarge it and compare it with step 0.")

    def _scroll_to_newest(self) -> None:
        bar = self.scroll.verticalScrollBar()
        bar.setValue(bar.maximum())

    def _on_loaded(self, path: str, size: int, image: QImage) -> None:
        if size != TILE:
            return
        for tile in self.tiles.values():
            if tile.path == path:
                tile.show_image(image)

    # ------------------------------------------------------------------ comparing

    def open_compare(self, step: int, column: int) -> CompareDialog:
        if self.dialog is None:
            self.dialog = CompareDialog(self.history, self.loader, self)
        self.dialog.show_pair(column, self.rows[0] if self.rows else 0, step)
        self.dialog.show()
        self.dialog.raise_()
        return self.dialog


def _discard(widget: QWidget | None) -> None:
    """Hide at once (deleteLater alone leaves it painted until the event loop gets round to it)."""
    if widget is not None:
        widget.hide()
        widget.deleteLater()

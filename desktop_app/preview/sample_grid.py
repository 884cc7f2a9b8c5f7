"""The sample grid: one row per sampling step, one column per prompt × seed; it grows while a run goes.

Step 0 (the base model) is the first row, so every later row reads as "what training changed".
Tiles scale with the space (every column fits the width down to ``MIN_TILE``; past that the grid
scrolls sideways), and the view keeps two rows in sight when it can.  Click a tile, or a column's
header, to enlarge it beside the same prompt and seed at step 0 (:class:`CompareDialog`, where any two
steps can be compared).  The newest row is scrolled into view as it arrives.

Threads: GUI thread only; the pixels come from :class:`~desktop_app.preview.thumbnails.ThumbnailLoader`
(decoded and scaled in its pool), so a grid of hundreds of tiles never stalls the window.
"""

from __future__ import annotations

from PySide6.QtCore import QEvent, QObject, Qt, QTimer, Signal
from PySide6.QtGui import QImage, QMouseEvent, QPixmap
from PySide6.QtWidgets import QFrame, QGridLayout, QHBoxLayout, QLabel, QScrollArea, QVBoxLayout, QWidget

from desktop_app.preview.image_compare import CompareDialog
from desktop_app.preview.sample_history import SampleHistory
from desktop_app.preview.thumbnails import ThumbnailLoader
from trainer.protocol import Sample

TILE = 136  # px: the tile size a new grid starts with, before it knows its width
MIN_TILE, MAX_TILE = 72, 256  # px: tiles scale between these to fit the columns into the width
DECODE = MAX_TILE  # images are decoded once at the largest tile size and scaled down in the tile
ROW_LABEL_WIDTH = 84
SPACING = 6
PLACEHOLDER = "Sample images appear here while a diffusion model trains: one row per sampling step."


class Tile(QLabel):
    clicked = Signal()

    def __init__(self, path: str, tooltip: str, size: int = TILE) -> None:
        super().__init__("…")
        self.path = path
        self.image: QImage | None = None
        self.setObjectName("sampleTile")
        self.setFixedSize(size, size)
        self.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self.setToolTip(tooltip)
        self.setCursor(Qt.CursorShape.PointingHandCursor)
        self.setStyleSheet("QLabel#sampleTile { background: #f1f3f5; border: 1px solid #dee2e6; }")

    def show_image(self, image: QImage) -> None:
        if image.isNull():
            self.setText("(unreadable)")
        else:
            self.image = image
            self._draw()

    def set_size(self, size: int) -> None:
        if size != self.width():
            self.setFixedSize(size, size)
            self._draw()

    def _draw(self) -> None:
        if self.image is not None:
            inner = self.width() - 2  # inside the 1 px border
            self.setPixmap(QPixmap.fromImage(self.image.scaled(
                inner, inner, Qt.AspectRatioMode.KeepAspectRatio, Qt.TransformationMode.SmoothTransformation)))

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
        self.tile_size = TILE
        self.headers: list[QLabel] = []
        self.columns: list[tuple[str, int]] = []
        self.rows: list[int] = []
        self.dialog: CompareDialog | None = None

        self.header = QLabel(PLACEHOLDER)
        self.header.setObjectName("samplesHeader")
        self.header.setWordWrap(True)
        self.header.setProperty("role", "hint")
        # Column headers (prompt, seed) stay in view above the scrolling rows; tiles have fixed widths,
        # so a plain row of fixed-width labels lines up with the grid's columns.  The row sits in its
        # own bar-less scroll area that follows the grid's horizontal scrolling: with more columns
        # than fit, the headers scroll with the tiles instead of being squeezed out of line.
        self.column_bar = QWidget()
        self.column_bar.setObjectName("sampleColumns")
        self.column_layout = QHBoxLayout(self.column_bar)
        self.column_layout.setContentsMargins(0, 0, 0, 0)
        self.column_layout.setSpacing(SPACING)
        self.column_scroll = QScrollArea()
        self.column_scroll.setWidgetResizable(True)
        self.column_scroll.setFrameShape(QFrame.Shape.NoFrame)
        self.column_scroll.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        self.column_scroll.setVerticalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        self.column_scroll.setWidget(self.column_bar)
        # Same viewport width as the grid's (a gap where its vertical bar is) and same content width:
        # then both scroll ranges are equal and the headers stay over their columns at any offset.
        self.column_gap = QWidget()
        self.column_gap.setFixedWidth(0)
        self.column_row = QWidget()
        row_layout = QHBoxLayout(self.column_row)
        row_layout.setContentsMargins(0, 0, 0, 0)
        row_layout.setSpacing(0)
        row_layout.addWidget(self.column_scroll, 1)
        row_layout.addWidget(self.column_gap)
        self.canvas = QWidget()
        self.grid = QGridLayout(self.canvas)
        self.grid.setContentsMargins(0, 0, 0, 0)
        self.grid.setSpacing(SPACING)
        self.grid.setAlignment(Qt.AlignmentFlag.AlignLeft | Qt.AlignmentFlag.AlignTop)
        self.scroll = QScrollArea()
        self.scroll.setWidgetResizable(True)
        self.scroll.setFrameShape(QFrame.Shape.NoFrame)
        self.scroll.setWidget(self.canvas)
        self.scroll.horizontalScrollBar().valueChanged.connect(self.column_scroll.horizontalScrollBar().setValue)
        self.canvas.installEventFilter(self)
        self.scroll.viewport().installEventFilter(self)
        self.scroll.verticalScrollBar().installEventFilter(self)
        # A new row grows the canvas only once Qt has laid it out (and a horizontal bar may appear
        # after that, shrinking the view): stay at the bottom through every range change until the
        # person scrolls.
        self._stick_to_newest = False
        self.scroll.verticalScrollBar().rangeChanged.connect(self._on_range_changed)
        self.scroll.verticalScrollBar().actionTriggered.connect(self._on_user_scroll)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(4, 4, 4, 4)
        layout.addWidget(self.header)
        layout.addWidget(self.column_row)
        layout.addWidget(self.scroll, 1)
        history.added.connect(self._on_added)
        history.cleared.connect(self._rebuild)
        self._rebuild()

    def eventFilter(self, watched: QObject, event: QEvent) -> bool:
        if watched is self.canvas and event.type() == QEvent.Type.Resize:
            self.column_bar.setMinimumWidth(self.canvas.width())
        elif watched is self.scroll.viewport() and event.type() == QEvent.Type.Resize:
            self._fit_tiles()
        elif watched is self.scroll.verticalScrollBar() and event.type() in (QEvent.Type.Show, QEvent.Type.Hide):
            bar = self.scroll.verticalScrollBar()
            self.column_gap.setFixedWidth(bar.sizeHint().width() if bar.isVisibleTo(self.scroll) else 0)
        return super().eventFilter(watched, event)

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
        self.headers = []
        self.tile_size = self._fitting_size()
        self.column_layout.addSpacing(ROW_LABEL_WIDTH)
        for column, (prompt, seed) in enumerate(self.columns):
            label = QLabel(f"<b>{prompt}</b><br>seed {seed}")
            label.setObjectName("sampleColumnHeader")
            label.setWordWrap(True)
            label.setFixedWidth(self.tile_size)
            label.setAlignment(Qt.AlignmentFlag.AlignCenter)
            label.setToolTip(f"{prompt}\nClick to compare this prompt and seed step by step")
            label.setCursor(Qt.CursorShape.PointingHandCursor)
            label.mouseReleaseEvent = lambda _event, column=column: self._compare_column(column)  # type: ignore
            self.headers.append(label)
            self.column_layout.addWidget(label)
        self.column_layout.addStretch(1)
        self.column_row.setVisible(bool(self.columns))
        self.column_scroll.setFixedHeight(self.column_bar.sizeHint().height())
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
            self._stick_to_newest = True
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
            tile = Tile(path, f"{prompt} · seed {seed} · step {sample.step:,}\nClick to enlarge and compare",
                        self.tile_size)
            tile.clicked.connect(lambda step=sample.step, column=column: self.open_compare(step, column))
            self.tiles[(sample.step, column)] = tile
            self.grid.addWidget(tile, row, column + 1)
            self.loader.request(path, DECODE)

    def _relayout(self) -> None:
        self._rebuild()

    def _fitting_size(self) -> int:
        """The tile size that fits every column into the view's width, between MIN_TILE and MAX_TILE,
        and no taller than leaves two rows in sight."""
        columns = max(1, len(self.columns))
        bar = self.scroll.verticalScrollBar().sizeHint().width()
        width = self.scroll.viewport().width() + (0 if self.scroll.verticalScrollBar().isVisible() else -bar)
        across = (width - ROW_LABEL_WIDTH - SPACING * columns) // columns
        down = (self.scroll.viewport().height() - SPACING) // 2
        return int(max(MIN_TILE, min(MAX_TILE, across, max(down, MIN_TILE))))

    def _fit_tiles(self) -> None:
        size = self._fitting_size()
        if size == self.tile_size:
            return
        self.tile_size = size
        for label in self.headers:
            label.setFixedWidth(size)
        for tile in self.tiles.values():
            tile.set_size(size)
        self.column_scroll.setFixedHeight(self.column_bar.sizeHint().height())

    def _compare_column(self, column: int) -> None:
        if self.rows:
            self.open_compare(self.rows[-1], column)

    def _update_header(self) -> None:
        if not self.rows:
            self.header.setText(PLACEHOLDER)
            return
        last = self.rows[-1]
        self.header.setText(f"{len(self.rows)} sampling point{'s' if len(self.rows) > 1 else ''}, newest at "
                            f"step {last:,}. Click an image or a column's title to compare it step by step.")

    def _scroll_to_newest(self) -> None:
        bar = self.scroll.verticalScrollBar()
        bar.setValue(bar.maximum())

    def _on_range_changed(self, _minimum: int, maximum: int) -> None:
        if self._stick_to_newest:
            self.scroll.verticalScrollBar().setValue(maximum)

    def _on_user_scroll(self, _action: int) -> None:
        self._stick_to_newest = False

    def _on_loaded(self, path: str, size: int, image: QImage) -> None:
        if size != DECODE:
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

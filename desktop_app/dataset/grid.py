"""The thumbnail grid: a list model over ``DatasetModel``, a filter, a painted tile, and the view.

``ThumbnailListModel`` asks the ``ThumbnailLoader`` for a thumbnail the first time a view wants
to paint a row (lazy: only what is on screen is decoded) and announces it when it arrives.
Its ``problems_only`` filter keeps only images with errors or warnings.

Event-loop budget (the issue's 50 ms at 1,000 images on 2 cores): thumbnails that arrive are
announced together, at most every ``ARRIVALS_MS`` (one ``dataChanged`` and one repaint for a
batch, not one per image); each stays a ``QImage`` until a paint needs it (``QPixmap`` made on
the GUI thread, only for what is shown); at most ``KEEP_THUMBNAILS`` are held, least recently
painted dropped first (a dropped one comes back from the disk cache), so memory stays bounded
however large the folder; the tile delegate reads a row in one Python call, not four
``QModelIndex.data`` round trips through Qt.  ``ThumbnailGrid`` is a
``QListView`` in icon mode (uniform tiles, batched layout: smooth with thousands of rows) that
also accepts files and folders dropped from the file manager.

A concept of before/after pairs (``trainer.dataset.pairs``) gets wider tiles: the first control image,
an arrow, the target, and the instruction caption under the name.  Control thumbnails are requested,
cached and dropped like the targets' own (the loader and the disk cache know only paths).

GUI thread only.
"""

from __future__ import annotations

from collections import OrderedDict
from pathlib import Path
from typing import Any, NamedTuple

from PySide6.QtCore import (
    QAbstractItemModel,
    QAbstractListModel,
    QModelIndex,
    QPersistentModelIndex,
    QRect,
    QSize,
    Qt,
    QTimer,
    Signal,
)
from PySide6.QtGui import QColor, QDragEnterEvent, QDropEvent, QImage, QPainter, QPen, QPixmap, QResizeEvent
from PySide6.QtWidgets import QAbstractItemView, QListView, QStyle, QStyledItemDelegate, QStyleOptionViewItem

from desktop_app.dataset.model import DatasetModel
from desktop_app.dataset.thumbnails import THUMB_SIZE, ThumbnailLoader
from trainer.dataset import Severity

PathRole = Qt.ItemDataRole.UserRole + 1
SeverityRole = Qt.ItemDataRole.UserRole + 2
EditedRole = Qt.ItemDataRole.UserRole + 3
MaskedRole = Qt.ItemDataRole.UserRole + 4
TILE = QSize(THUMB_SIZE + 20, THUMB_SIZE + 40)
PAIR_SIDE = 96  # a pair's two pictures, a little smaller than a lone one's: two pairs abreast in the grid
PAIR_TILE = QSize(2 * PAIR_SIDE + 40, PAIR_SIDE + 58)  # control → target, the name, the caption
BADGE = {Severity.ERROR: QColor("#d92d20"), Severity.WARNING: QColor("#f79009"), Severity.INFO: QColor("#2e90fa")}
Index = QModelIndex | QPersistentModelIndex
ARRIVALS_MS = 30  # thumbnails that arrive within this are shown together
KEEP_THUMBNAILS = 2000  # ~100 MB of 128 px tiles; more rows than that re-read the disk cache when scrolled back


class Tile(NamedTuple):
    """What the delegate paints for one row."""

    name: str
    pixmap: QPixmap | None
    severity: Severity | None
    edited: bool
    masked: bool = False  # a loss mask lies beside the image
    paired: bool = False  # the concept holds pairs: the tile shows a control slot and the caption
    control: QPixmap | None = None  # the first control image's thumbnail
    controls: int = 0  # how many control images the image has
    caption: str = ""


class ThumbnailListModel(QAbstractListModel):
    """The grid's rows: every image of the dataset, or (``problems_only``) those with errors or warnings.

    The filter lives here rather than in a ``QSortFilterProxyModel``: a proxy calls a Python
    ``filterAcceptsRow`` once per image on every reset, each call waiting for the GIL while the
    health check runs, which blocked the event loop for a third of a second at 1,000 images.
    """

    def __init__(self, dataset: DatasetModel, loader: ThumbnailLoader) -> None:
        super().__init__()
        self.dataset = dataset
        self.loader = loader
        self.problems_only = False
        self.rows: list[int] = []  # view row → dataset row
        self._view_rows: dict[int, int] = {}
        self._pixmaps: OrderedDict[str, QPixmap | QImage] = OrderedDict()  # QImage until first painted; LRU
        self._broken: set[str] = set()
        self._control_rows: dict[str, int] = {}  # a control image's path → its target's dataset row
        self.paired = False  # wide tiles: the concept holds before/after pairs
        self._arrived: set[str] = set()
        self._arrivals = QTimer(self)
        self._arrivals.setSingleShot(True)
        self._arrivals.setInterval(ARRIVALS_MS)
        self._arrivals.timeout.connect(self._show_arrivals)
        dataset.reset.connect(self._reset)
        dataset.reportChanged.connect(self._report_changed)
        dataset.captionsChanged.connect(lambda rows: [self._row_changed(row) for row in rows])
        dataset.cropChanged.connect(self._row_changed)
        dataset.maskChanged.connect(self._row_changed)
        dataset.controlsChanged.connect(self._controls_changed)
        loader.ready.connect(self._thumbnail_ready)
        loader.failed.connect(self._thumbnail_failed)

    def rowCount(self, parent: Index = QModelIndex()) -> int:  # noqa: B008 — Qt's signature
        return 0 if parent.isValid() else len(self.rows)

    def data(self, index: Index, role: int = Qt.ItemDataRole.DisplayRole) -> Any:
        if not index.isValid() or index.row() >= len(self.rows):
            return None
        entry = self.dataset.entries[self.rows[index.row()]]
        key = str(entry.path)
        if role == Qt.ItemDataRole.DisplayRole:
            return entry.path.name
        if role == Qt.ItemDataRole.DecorationRole:
            return self._pixmap(key)
        if role == Qt.ItemDataRole.ToolTipRole:
            lines = [entry.path.name, entry.caption or "(no caption: the template is used)"]
            lines += [f"Loss mask: {entry.mask.name}"] if entry.mask is not None else []
            lines += [f"Control image: {control.name}" for control in entry.controls]
            lines += [f"• {finding.message}" for finding in entry.findings]
            return "\n".join(lines)
        if role == PathRole:
            return entry.path
        if role == SeverityRole:
            return entry.worst
        if role == EditedRole:
            return entry.edited is not None or entry.crop is not None
        if role == MaskedRole:
            return entry.mask is not None
        return None

    def tile(self, view_row: int) -> Tile | None:
        """Everything a tile shows, in one call (the delegate's fast path)."""
        if not 0 <= view_row < len(self.rows):
            return None
        entry = self.dataset.entries[self.rows[view_row]]
        edited = entry.edited is not None or entry.crop is not None
        if not self.paired:
            return Tile(entry.path.name, self._pixmap(str(entry.path)), entry.worst, edited, entry.mask is not None)
        control = self._pixmap(str(entry.controls[0])) if entry.controls else None
        return Tile(entry.path.name, self._pixmap(str(entry.path)), entry.worst, edited, entry.mask is not None,
                    True, control, len(entry.controls), entry.caption)

    def tile_size(self) -> QSize:
        return PAIR_TILE if self.paired else TILE

    def _pixmap(self, key: str) -> QPixmap | None:
        held = self._pixmaps.get(key)
        if held is None:
            if key not in self._broken:
                self.loader.request(key)  # lazy: asked for when a view paints this row
            return None
        self._pixmaps.move_to_end(key)
        if isinstance(held, QImage):
            held = self._pixmaps[key] = QPixmap.fromImage(held)
        return held

    # ---------------------------------------------------------------- rows

    def dataset_row(self, view_row: int) -> int:
        return self.rows[view_row]

    def view_index(self, dataset_row: int) -> QModelIndex:
        """The index showing ``dataset_row``; invalid while the filter hides it."""
        view_row = self._view_rows.get(dataset_row)
        return self.index(view_row) if view_row is not None else QModelIndex()

    def set_problems_only(self, on: bool) -> None:
        self.problems_only = on
        self._reset()

    def _shown_rows(self) -> list[int]:
        if not self.problems_only:
            return list(range(len(self.dataset.entries)))
        return [row for row, entry in enumerate(self.dataset.entries)
                if entry.worst in (Severity.ERROR, Severity.WARNING)]

    def _reset(self) -> None:
        self.beginResetModel()
        self.loader.forget_pending()
        self.rows = self._shown_rows()
        self._view_rows = {row: view_row for view_row, row in enumerate(self.rows)}
        self.paired = self.dataset.paired
        self._control_rows = {str(control): row for row, entry in enumerate(self.dataset.entries)
                              for control in entry.controls}
        live = {str(entry.path) for entry in self.dataset.entries} | self._control_rows.keys()
        self._pixmaps = OrderedDict((key, pixmap) for key, pixmap in self._pixmaps.items() if key in live)
        self._broken &= live
        self.endResetModel()

    def _report_changed(self) -> None:
        if self.problems_only:
            self._reset()
        elif self.rows:
            self.dataChanged.emit(self.index(0), self.index(len(self.rows) - 1))

    def _row_changed(self, row: int) -> None:
        index = self.view_index(row)
        if index.isValid():
            self.dataChanged.emit(index, index)

    def _controls_changed(self, row: int) -> None:
        for control in self.dataset.entries[row].controls:
            self._control_rows[str(control)] = row
            self._pixmaps.pop(str(control), None)  # a slot filled again may keep its file name
            self._broken.discard(str(control))
        if self.paired != self.dataset.paired:
            self._reset()  # the first pair: every tile widens
        else:
            self._row_changed(row)

    def _thumbnail_ready(self, path: str, image: QImage) -> None:
        self._pixmaps[path] = image
        self._pixmaps.move_to_end(path)
        while len(self._pixmaps) > KEEP_THUMBNAILS:
            self._pixmaps.popitem(last=False)
        self._arrived.add(path)
        if not self._arrivals.isActive():
            self._arrivals.start()

    def _show_arrivals(self) -> None:
        """One ``dataChanged`` over the rows whose thumbnails arrived since the last one."""
        rows = [self._control_rows.get(path, self.dataset.row_of(Path(path))) for path in self._arrived]
        view_rows = [self._view_rows.get(row) for row in rows if row is not None]
        self._arrived.clear()
        shown = [row for row in view_rows if row is not None]
        if shown:
            self.dataChanged.emit(self.index(min(shown)), self.index(max(shown)),
                                  [Qt.ItemDataRole.DecorationRole])

    def _thumbnail_failed(self, path: str, _reason: str) -> None:
        self._broken.add(path)

    def loaded_count(self) -> int:
        return len(self._pixmaps)


# Made once: a QColor parsed from a string in every paint of every tile adds up while scrolling.
_EDGE, _SELECTED_EDGE = QColor("#e4e7eb"), QColor("#2e90fa")
_FILL, _SELECTED_FILL, _PLACEHOLDER = QColor("#ffffff"), QColor("#e8f1fd"), QColor("#f0f4f8")
_TEXT, _WHITE, _EDITED = QColor("#323f4b"), QColor("white"), QColor("#7c5cff")
_BADGE_RIM, _MASK_DARK = QColor(0, 0, 0, 140), QColor("#323f4b")
_ARROW, _SUBTLE, _EDGE_DARK = QColor("#7b8794"), QColor("#616e7c"), QColor("#9aa5b1")


class TileDelegate(QStyledItemDelegate):
    """A tile: the thumbnail centred in a square, the file name under it, a dot for the worst finding, a violet
    dot for the user's edits, a half-dark disc for a loss mask.  In a concept of pairs: the control image's
    square, an arrow and the target's square, the name and the caption under them."""

    def sizeHint(self, _option: QStyleOptionViewItem, index: Index) -> QSize:
        model = index.model()
        return model.tile_size() if isinstance(model, ThumbnailListModel) else TILE

    def paint(self, painter: QPainter, option: QStyleOptionViewItem, index: Index) -> None:
        model = index.model()
        tile = model.tile(index.row()) if isinstance(model, ThumbnailListModel) else None
        if tile is None:  # another model (never in the app): read it through the roles
            tile = Tile(str(index.data()), index.data(Qt.ItemDataRole.DecorationRole), index.data(SeverityRole),
                        bool(index.data(EditedRole)), bool(index.data(MaskedRole)))
        painter.save()
        rect: QRect = option.rect.adjusted(4, 4, -4, -4)
        selected = bool(option.state & QStyle.StateFlag.State_Selected)
        painter.setRenderHint(QPainter.RenderHint.Antialiasing)
        painter.setPen(_SELECTED_EDGE if selected else _EDGE)
        painter.setBrush(_SELECTED_FILL if selected else _FILL)
        painter.drawRoundedRect(rect, 6, 6)
        if tile.paired:
            left = rect.left() + (rect.width() - 2 * PAIR_SIDE - 20) // 2
            control_square = QRect(left, rect.top() + 4, PAIR_SIDE, PAIR_SIDE)
            square = QRect(control_square.right() + 21, rect.top() + 4, PAIR_SIDE, PAIR_SIDE)
            self._control(painter, control_square, tile)
            painter.setPen(_ARROW)
            arrow = QRect(control_square.right() + 1, square.top(), 20, PAIR_SIDE)
            painter.drawText(arrow, Qt.AlignmentFlag.AlignCenter, "→")
        else:
            square = QRect(rect.left() + (rect.width() - THUMB_SIZE) // 2, rect.top() + 4, THUMB_SIZE, THUMB_SIZE)
        _draw_thumbnail(painter, square, tile.pixmap)
        lines = rect.bottom() - square.bottom() - 6
        name_rect = QRect(rect.left() + 6, square.bottom() + 4, rect.width() - 12, lines // 2 if tile.paired else lines)
        metrics = painter.fontMetrics()
        painter.setPen(_TEXT)
        painter.drawText(name_rect, Qt.AlignmentFlag.AlignHCenter | Qt.AlignmentFlag.AlignVCenter,
                         metrics.elidedText(tile.name, Qt.TextElideMode.ElideMiddle, name_rect.width()))
        if tile.paired:
            caption_rect = name_rect.translated(0, name_rect.height())
            painter.setPen(_SUBTLE)
            painter.drawText(caption_rect, Qt.AlignmentFlag.AlignHCenter | Qt.AlignmentFlag.AlignVCenter,
                             metrics.elidedText(tile.caption or "(no caption)", Qt.TextElideMode.ElideRight,
                                                caption_rect.width()))
        if tile.severity in BADGE:
            # A white ring with a dark rim around the coloured dot: visible on red, white and black pictures alike.
            painter.setPen(_BADGE_RIM)
            painter.setBrush(_WHITE)
            painter.drawEllipse(QRect(square.right() - 17, square.top() + 1, 17, 17))
            painter.setPen(Qt.PenStyle.NoPen)
            painter.setBrush(BADGE[tile.severity])
            painter.drawEllipse(QRect(square.right() - 14, square.top() + 4, 11, 11))
        if tile.edited:
            painter.setPen(Qt.PenStyle.NoPen)
            painter.setBrush(_EDITED)
            painter.drawEllipse(QRect(square.left() + 2, square.top() + 2, 10, 10))
        if tile.masked:  # white = trained, dark = ignored: the mask's own two colours
            disc = QRect(square.left() + 2, square.bottom() - 13, 12, 12)
            painter.setPen(_BADGE_RIM)
            painter.setBrush(_WHITE)
            painter.drawEllipse(disc)
            painter.setPen(Qt.PenStyle.NoPen)
            painter.setBrush(_MASK_DARK)
            painter.drawPie(disc.adjusted(1, 1, -1, -1), 90 * 16, 180 * 16)
        painter.restore()

    @staticmethod
    def _control(painter: QPainter, square: QRect, tile: Tile) -> None:
        """The control's square: its thumbnail (+N for more references), or a dashed empty slot."""
        if not tile.controls:
            painter.setPen(QPen(_EDGE_DARK, 1, Qt.PenStyle.DashLine))
            painter.setBrush(Qt.BrushStyle.NoBrush)
            painter.drawRoundedRect(square.adjusted(8, 8, -8, -8), 4, 4)
            painter.setPen(_SUBTLE)
            painter.drawText(square, Qt.AlignmentFlag.AlignCenter, "no control")
            return
        _draw_thumbnail(painter, square, tile.control)
        if tile.controls > 1:
            more = QRect(square.right() - 27, square.bottom() - 17, 26, 16)
            painter.setPen(Qt.PenStyle.NoPen)
            painter.setBrush(_BADGE_RIM)
            painter.drawRoundedRect(more, 8, 8)
            painter.setPen(_WHITE)
            painter.drawText(more, Qt.AlignmentFlag.AlignCenter, f"+{tile.controls - 1}")


def _draw_thumbnail(painter: QPainter, square: QRect, pixmap: QPixmap | None) -> None:
    if isinstance(pixmap, QPixmap) and not pixmap.isNull():
        size = pixmap.size().scaled(square.size(), Qt.AspectRatioMode.KeepAspectRatio)
        target = QRect(0, 0, size.width(), size.height())
        target.moveCenter(square.center())
        painter.drawPixmap(target, pixmap)
    else:
        painter.fillRect(square.adjusted(8, 8, -8, -8), _PLACEHOLDER)


class ThumbnailGrid(QListView):
    """Icon-mode list of tiles; multi-select; emits ``pathsDropped`` for files dropped on it."""

    pathsDropped = Signal(list)

    def __init__(self) -> None:
        super().__init__()
        self.setObjectName("datasetGrid")
        self.setViewMode(QListView.ViewMode.IconMode)
        self.setResizeMode(QListView.ResizeMode.Adjust)
        self.setMovement(QListView.Movement.Static)
        self.setUniformItemSizes(True)
        self.setLayoutMode(QListView.LayoutMode.Batched)
        self.setBatchSize(200)
        self.setGridSize(TILE + QSize(6, 6))
        self.setSpacing(0)
        self.setSelectionMode(QAbstractItemView.SelectionMode.ExtendedSelection)
        self.setVerticalScrollMode(QAbstractItemView.ScrollMode.ScrollPerPixel)
        self.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        self.setItemDelegate(TileDelegate(self))
        self.setAcceptDrops(True)
        self.setDragDropMode(QAbstractItemView.DragDropMode.DropOnly)
        self.setStyleSheet("QListView#datasetGrid { background: #f5f7fa; border: 1px solid #d9e2ec; }")

    def setModel(self, model: QAbstractItemModel | None) -> None:  # type: ignore[override]
        super().setModel(model)
        if isinstance(model, ThumbnailListModel):
            model.modelReset.connect(self._spread)  # a concept of pairs has wider tiles

    def resizeEvent(self, event: QResizeEvent) -> None:
        self._spread()
        super().resizeEvent(event)

    def _spread(self) -> None:
        """Spread the columns over the whole width instead of leaving a ragged gap on the right.
        Leave room for the vertical scroll bar even before it shows, or the last column would overflow."""
        model = self.model()
        tile = model.tile_size() if isinstance(model, ThumbnailListModel) else TILE
        width = self.width() - 2 * self.frameWidth() - self.verticalScrollBar().sizeHint().width()
        columns = max(1, width // (tile.width() + 6))
        grid = QSize(max(tile.width() + 6, (width - 1) // columns), tile.height() + 6)  # a full row would wrap
        if grid != self.gridSize():
            self.setGridSize(grid)

    def dragEnterEvent(self, event: QDragEnterEvent) -> None:
        if event.mimeData().hasUrls():
            event.acceptProposedAction()

    def dragMoveEvent(self, event: QDragEnterEvent) -> None:  # type: ignore[override]
        if event.mimeData().hasUrls():
            event.acceptProposedAction()

    def dropEvent(self, event: QDropEvent) -> None:
        paths = [Path(url.toLocalFile()) for url in event.mimeData().urls() if url.isLocalFile()]
        if paths:
            event.acceptProposedAction()
            self.pathsDropped.emit(paths)

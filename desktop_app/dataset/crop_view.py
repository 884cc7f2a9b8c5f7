"""The crop view: the selected image large, its training crop, and a rectangle the user drags;
and the image's loss mask, painted on the same picture.

Without a crop record the image is centre-cropped to its bucket (dashed outline: exactly what
training sees).  Dragging outside the rectangle draws a new one; dragging inside moves it.  On
release the box (in the oriented image's pixels) goes to ``DatasetModel.set_crop``; the bucket
of the crop's aspect ratio is then centre-cropped in turn, and the dashed outline shows that too.
"Reset" removes the crop record.

With the *Paint* or *Erase* tool a drag paints the loss mask instead (``mask_layer``: white trains,
black is ignored, shown as a tint over what training ignores); each stroke, *Undo* and *Clear mask*
goes to ``DatasetModel.set_mask``, which writes ``NAME.mask.png``.  Nothing here writes files.

GUI thread; the large preview and the mask are decoded in a worker process (``jobs.thumbnail``,
``jobs.mask_image``).
"""

from __future__ import annotations

from functools import partial
from pathlib import Path

from PIL import Image
from PySide6.QtCore import QPointF, QRectF, Qt, Signal
from PySide6.QtGui import QColor, QImage, QMouseEvent, QPainter, QPaintEvent, QPen, QPixmap
from PySide6.QtWidgets import (
    QButtonGroup,
    QHBoxLayout,
    QLabel,
    QPushButton,
    QSizePolicy,
    QSpinBox,
    QVBoxLayout,
    QWidget,
)

from desktop_app.dataset.jobs import mask_image, thumbnail
from desktop_app.dataset.mask_layer import MaskLayer
from desktop_app.dataset.model import DatasetModel, Entry
from desktop_app.dataset.thumbnails import PRIORITY, rgb_qimage
from trainer.dataset import assign_bucket, make_buckets, resize_and_crop

PREVIEW_SIZE = 768
MIN_SIDE = 16  # image pixels: smaller drags are taken as clicks
OVERLAY_OPACITY = 0.55
TOOLS = (("crop", "Crop", "Drag to draw the crop; drag inside it to move it."),
         ("paint", "Paint mask", "Paint what training should learn (white in the mask)."),
         ("erase", "Erase mask", "Rub out what training should ignore (black in the mask)."))


def training_box(box: tuple[int, int, int, int], buckets: list[tuple[int, int]]) -> tuple[float, ...]:
    """The part of ``box`` training keeps after bucketing (centre crop of the covering resize)."""
    left, top, right, bottom = box
    width, height = right - left, bottom - top
    bucket = assign_bucket(width, height, buckets)
    (rw, rh), (cl, ct, cr, cb) = resize_and_crop(width, height, bucket)
    sx, sy = width / rw, height / rh
    return (left + cl * sx, top + ct * sy, left + cr * sx, top + cb * sy)


class CropCanvas(QWidget):
    boxChanged = Signal(object)  # (left, top, right, bottom) in image pixels, on release
    maskPainted = Signal()  # a mask stroke ended

    def __init__(self) -> None:
        super().__init__()
        self.setObjectName("cropCanvas")
        self.setMinimumSize(240, 200)
        self.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Expanding)
        self.setMouseTracking(False)
        self.pixmap: QPixmap | None = None
        self.image_size: tuple[int, int] | None = None
        self.box: tuple[int, int, int, int] | None = None  # the user's crop (None: whole image)
        self.buckets = make_buckets(512)
        self._drag: tuple[str, QPointF, tuple[int, int, int, int] | None] | None = None
        self.tool = "crop"
        self.brush = 40  # the brush's diameter on the screen, in pixels
        self.layer = MaskLayer()
        self.mask_ready = False  # the image's mask (or its absence) is known: painting may start
        self._hover: QPointF | None = None

    def set_tool(self, tool: str) -> None:
        self.tool = tool
        self.setMouseTracking(tool != "crop")  # the brush outline follows the pointer
        self.setCursor(Qt.CursorShape.CrossCursor if tool != "crop" else Qt.CursorShape.ArrowCursor)
        self.update()

    def set_image(self, pixmap: QPixmap | None, size: tuple[int, int] | None, box: tuple[int, int, int, int] | None
                  ) -> None:
        self.pixmap, self.image_size, self.box = pixmap, size, box
        self.update()

    def _frame(self) -> QRectF:
        """Where the image is drawn (fitted, centred)."""
        if self.image_size is None:
            return QRectF()
        w, h = self.image_size
        scale = min((self.width() - 8) / w, (self.height() - 8) / h)
        return QRectF((self.width() - w * scale) / 2, (self.height() - h * scale) / 2, w * scale, h * scale)

    def _to_widget(self, box: tuple[float, ...]) -> QRectF:
        frame, (w, _h) = self._frame(), self.image_size or (1, 1)
        scale = frame.width() / w
        return QRectF(frame.left() + box[0] * scale, frame.top() + box[1] * scale,
                      (box[2] - box[0]) * scale, (box[3] - box[1]) * scale)

    def _to_image(self, point: QPointF) -> QPointF:
        frame, (w, h) = self._frame(), self.image_size or (1, 1)
        scale = frame.width() / w
        x = min(max((point.x() - frame.left()) / scale, 0), w)
        return QPointF(x, min(max((point.y() - frame.top()) / scale, 0), h))

    def paintEvent(self, _event: QPaintEvent) -> None:
        painter = QPainter(self)
        painter.fillRect(self.rect(), QColor("#1f2933"))
        if self.pixmap is None or self.image_size is None:
            painter.setPen(QColor("#9aa5b1"))
            painter.drawText(self.rect(), Qt.AlignmentFlag.AlignCenter, "Select an image to crop it.")
            return
        frame = self._frame()
        painter.drawPixmap(frame.toRect(), self.pixmap)
        if self.layer.overlay is not None:
            painter.setOpacity(OVERLAY_OPACITY)
            painter.setRenderHint(QPainter.RenderHint.SmoothPixmapTransform)
            painter.drawImage(frame, self.layer.overlay)
            painter.setOpacity(1.0)
        w, h = self.image_size
        box = self.box or (0, 0, w, h)
        crop = self._to_widget(box)
        shade = QColor(0, 0, 0, 140)
        for part in (QRectF(frame.left(), frame.top(), frame.width(), crop.top() - frame.top()),
                     QRectF(frame.left(), crop.bottom(), frame.width(), frame.bottom() - crop.bottom()),
                     QRectF(frame.left(), crop.top(), crop.left() - frame.left(), crop.height()),
                     QRectF(crop.right(), crop.top(), frame.right() - crop.right(), crop.height())):
            painter.fillRect(part, shade)
        painter.setPen(QPen(QColor("#ffffff"), 2))
        painter.drawRect(crop)
        painter.setPen(QPen(QColor("#fdb022"), 1.5, Qt.PenStyle.DashLine))
        painter.drawRect(self._to_widget(training_box(box, self.buckets)))
        if self.tool != "crop" and self._hover is not None and self.underMouse():
            painter.setRenderHint(QPainter.RenderHint.Antialiasing)
            painter.setPen(QPen(QColor("#ffffff"), 1.5))
            painter.drawEllipse(self._hover, self.brush / 2, self.brush / 2)

    def _image_brush(self) -> float:
        """The brush's diameter in image pixels (it is set on the screen)."""
        frame, (w, _h) = self._frame(), self.image_size or (1, 1)
        return self.brush * w / max(frame.width(), 1.0)

    def mousePressEvent(self, event: QMouseEvent) -> None:
        if self.image_size is None or event.button() != Qt.MouseButton.LeftButton:
            return
        if self.tool != "crop":
            if self.mask_ready:
                self._drag = ("mask", event.position(), None)
                self.layer.begin(self._to_image(event.position()), self.tool == "paint", self._image_brush(),
                                 self.image_size)
                self.update()
            return
        w, h = self.image_size
        box = self.box or (0, 0, w, h)
        inside = self._to_widget(box).contains(event.position()) and self.box is not None
        self._drag = ("move" if inside else "draw", self._to_image(event.position()), box)

    def mouseMoveEvent(self, event: QMouseEvent) -> None:
        self._hover = event.position()
        if self.tool != "crop" and self._drag is None:
            self.update()  # the brush outline
        # Buttons are not checked: the drag state is enough (and QTest's moves carry no buttons).
        if self._drag is None or self.image_size is None:
            return
        kind, start, original = self._drag
        if kind == "mask":
            self.layer.extend(self._to_image(event.position()))
            self.update()
            return
        here = self._to_image(event.position())
        w, h = self.image_size
        if kind == "draw":
            left, right = sorted((round(start.x()), round(here.x())))
            top, bottom = sorted((round(start.y()), round(here.y())))
            if right - left >= MIN_SIDE and bottom - top >= MIN_SIDE:
                self.box = (left, top, right, bottom)
        elif original is not None:
            bw, bh = original[2] - original[0], original[3] - original[1]
            left = min(max(round(original[0] + here.x() - start.x()), 0), w - bw)
            top = min(max(round(original[1] + here.y() - start.y()), 0), h - bh)
            self.box = (left, top, left + bw, top + bh)
        self.update()

    def mouseReleaseEvent(self, event: QMouseEvent) -> None:
        if self._drag is not None:
            self.mouseMoveEvent(event)
            kind, self._drag = self._drag[0], None
            if kind == "mask":
                self.layer.end()
                self.maskPainted.emit()
            elif self.box is not None:
                self.boxChanged.emit(self.box)

    def leaveEvent(self, _event: object) -> None:
        self._hover = None
        self.update()


class CropView(QWidget):
    def __init__(self, dataset: DatasetModel, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("cropView")
        self.dataset = dataset
        self.row: int | None = None
        self.canvas = CropCanvas()
        self.info = QLabel()
        self.info.setObjectName("cropInfo")
        self.info.setProperty("role", "subtle")
        self.info.setWordWrap(True)
        self.reset = QPushButton("Reset to centre crop")
        self.reset.setObjectName("resetCrop")
        self.reset.clicked.connect(self._reset)
        self.tools = QButtonGroup(self)
        tools = QHBoxLayout()
        for key, title, tip in TOOLS:
            button = QPushButton(title)
            button.setObjectName(f"{key}Tool")
            button.setCheckable(True)
            button.setToolTip(tip)
            button.setChecked(key == "crop")
            self.tools.addButton(button)
            tools.addWidget(button)
            button.toggled.connect(lambda on, key=key: self._tool(key) if on else None)
        self.brush = QSpinBox()
        self.brush.setObjectName("brushSize")
        self.brush.setRange(4, 300)
        self.brush.setValue(self.canvas.brush)
        self.brush.setSuffix(" px")
        self.brush.setToolTip("Brush diameter on the screen")
        self.brush.valueChanged.connect(self._brush_changed)
        self.undo = QPushButton("Undo")
        self.undo.setObjectName("undoMask")
        self.undo.setToolTip("Take back the last stroke or clear of this image's mask")
        self.undo.clicked.connect(self._undo)
        self.clear = QPushButton("Clear mask")
        self.clear.setObjectName("clearMask")
        self.clear.setToolTip("Delete the mask: the whole image trains")
        self.clear.clicked.connect(self._clear)
        brush_label = QLabel("Brush")
        brush_label.setProperty("role", "subtle")
        tools.addSpacing(12)
        tools.addWidget(brush_label)
        tools.addWidget(self.brush)
        tools.addStretch(1)
        tools.addWidget(self.undo)
        tools.addWidget(self.clear)
        tools.addWidget(self.reset)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(8, 8, 8, 8)
        layout.addLayout(tools)
        layout.addWidget(self.canvas, 1)
        layout.addWidget(self.info)
        self.canvas.buckets = dataset.settings.buckets()
        self.canvas.boxChanged.connect(self._box_changed)
        self.canvas.maskPainted.connect(self._save_mask)
        self._mask_problem = ""
        self._mask_of: Path | None = None  # the image whose mask the layer holds
        dataset.cropChanged.connect(lambda row: self._describe() if row == self.row else None)
        dataset.sizesChanged.connect(lambda: self.show_row(self.row))
        dataset.reset.connect(self.settings_changed)
        self.show_row(None)

    def settings_changed(self) -> None:
        """The resolution or bucket settings changed: redraw the training crop."""
        self.canvas.buckets = self.dataset.settings.buckets()
        self.canvas.update()
        self._describe()

    def show_row(self, row: int | None) -> None:
        self.row = row
        entry = self._entry()
        if entry is None or entry.size is None:
            self.canvas.set_image(None, None, None)
            self._mask_of = None
            self._describe()
            return
        path = entry.path
        self.dataset.processes.run(partial(thumbnail, Path(path), None, PREVIEW_SIZE),
                                   lambda image: self._loaded(row, rgb_qimage(image)), lambda _error: None,
                                   priority=PRIORITY)
        self._load_mask(entry)
        self._describe()

    def _load_mask(self, entry: Entry) -> None:
        """The image's mask, read in a worker process; painting waits for it (it would paint over a stale one).
        Shown again (sizes announced while a folder loads), the layer stays: it is newer than the file, whose
        writes may still be queued."""
        if entry.path == self._mask_of:
            return
        self._mask_of = entry.path
        self.canvas.layer.set_mask(None)
        self.canvas.mask_ready, self._mask_problem = entry.mask is None, ""
        if entry.mask is not None and entry.size is not None:
            work, path = partial(mask_image, entry.mask, entry.size), entry.path
            # Read once its last strokes are written (painted, then another image and back at once).
            self.dataset.after_writes(lambda: self.dataset.processes.run(
                work, lambda image: self._mask_loaded(path, image), lambda error: self._mask_failed(path, error),
                priority=PRIORITY))

    def _mask_loaded(self, path: Path, image: Image.Image) -> None:
        if path != self._mask_of:  # another image is shown by now
            return
        width, height = image.size
        self.canvas.layer.set_mask(QImage(image.tobytes(), width, height, width,
                                          QImage.Format.Format_Grayscale8).copy())
        self.canvas.mask_ready = True
        self.canvas.update()
        self._describe()

    def _mask_failed(self, path: Path, error: BaseException) -> None:
        if path != self._mask_of:
            return
        self.canvas.mask_ready = True  # painting makes a new mask in its place
        self._mask_problem = getattr(error, "reason", str(error))
        self._describe()

    def _tool(self, key: str) -> None:
        self.canvas.set_tool(key)
        self._describe()

    def _brush_changed(self, value: int) -> None:
        self.canvas.brush = value
        self.canvas.update()

    def _save_mask(self) -> None:
        if self.row is not None:
            self._mask_problem = ""
            self.dataset.set_mask(self.row, self.canvas.layer.snapshot())
            self._describe()

    def _undo(self) -> None:
        self.canvas.layer.undo()
        self.canvas.update()
        self._save_mask()

    def _clear(self) -> None:
        self.canvas.layer.clear()
        self.canvas.update()
        self._save_mask()

    def _loaded(self, row: int | None, image: QImage) -> None:
        if row != self.row or row is None or row >= len(self.dataset.entries):
            return
        entry = self.dataset.entries[row]
        self.canvas.set_image(QPixmap.fromImage(image), entry.size, entry.crop.box if entry.crop else None)
        self._describe()

    def _box_changed(self, box: tuple[int, int, int, int]) -> None:
        if self.row is not None:
            self.dataset.set_crop(self.row, box)

    def _reset(self) -> None:
        if self.row is not None:
            self.dataset.set_crop(self.row, None)
            entry = self.dataset.entries[self.row]
            self.canvas.set_image(self.canvas.pixmap, entry.size, None)

    def _entry(self) -> Entry | None:
        return self.dataset.entry(self.row)

    def _describe(self) -> None:
        entry = self._entry()
        editable = entry is not None and self.dataset.editable
        self.reset.setEnabled(editable and entry is not None and entry.crop is not None)
        self.undo.setEnabled(editable and self.canvas.layer.can_undo)
        self.clear.setEnabled(editable and entry is not None and entry.mask is not None)
        self.canvas.setEnabled(editable)
        if entry is None or entry.size is None:
            self.info.setText("Drag on the image to choose what training sees." if entry is None else "Reading…")
            return
        w, h = entry.size
        box = entry.crop.box if entry.crop else (0, 0, w, h)
        bw, bh = box[2] - box[0], box[3] - box[1]
        bucket = assign_bucket(bw, bh, self.canvas.buckets)
        what = f"Crop {bw}×{bh}" if entry.crop else f"Whole image {w}×{h}"
        tip = next(tip for key, _title, tip in TOOLS if key == self.canvas.tool)
        if self._mask_problem:
            mask = f"Its mask cannot be used: {self._mask_problem} Painting replaces it."
        elif entry.mask is not None and not self.dataset.settings.masked_loss:
            mask = f"Mask {entry.mask.name}: not used while Masked loss is off (Train page, Dataset group)."
        elif entry.mask is not None:
            mask = f"Mask {entry.mask.name}: training ignores the tinted parts."
        else:
            mask = "No mask: all of it trains."
        pair = (f" The same crop cuts its control image{'s' if len(entry.controls) > 1 else ''}, so the pair stays "
                "aligned." if entry.controls else "")
        self.info.setText(f"{what} → bucket {bucket[0]}×{bucket[1]}; dashed: what training sees.{pair}<br>{mask} {tip}")

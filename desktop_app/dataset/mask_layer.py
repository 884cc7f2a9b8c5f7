"""The loss mask being painted on the crop view: the mask itself, its overlay, and the strokes' undo.

The mask is a grayscale ``QImage`` at the image's own size (as trained: EXIF rotation applied), white
where training looks and black where it does not — the file ``NAME.mask.png`` that
``trainer.dataset.masks`` reads.  Beside it the layer keeps the *overlay* that the canvas draws over the
picture: a tint whose opacity grows as the mask darkens, so what training ignores looks covered.  A
stroke paints both with the same round pen, so the overlay never has to be rebuilt from the mask while
the person paints (that would be a full-size conversion per mouse move).

An image without a mask trains everywhere.  So the first stroke on it starts a mask that says what the
stroke does not: *Paint* (paint what to train) starts from all black, *Erase* (rub out what to ignore)
from all white.  Undo goes back one stroke or clear at a time (the whole mask is kept per step: a few
full-size grayscale images, at most ``UNDO_STEPS``).

GUI thread only (but :func:`png_bytes`); no files (the crop view hands a copy of the mask to
``DatasetModel.set_mask``, which encodes and writes it on its writer thread).
"""

from __future__ import annotations

from PySide6.QtCore import QBuffer, QByteArray, QIODevice, QPointF, Qt
from PySide6.QtGui import QColor, QImage, QPainter, QPen

TINT = QColor(214, 40, 90)  # the colour over what training ignores
UNDO_STEPS = 12


class MaskLayer:
    """The mask of one image (or none) and its overlay; strokes in image pixels."""

    def __init__(self) -> None:
        self.mask: QImage | None = None
        self.overlay: QImage | None = None
        self._undo: list[QImage | None] = []
        self._last: QPointF | None = None
        self._train = True
        self._width = 1.0

    def set_mask(self, mask: QImage | None) -> None:
        """A new image's mask (or none): the undo history belongs to the previous one and goes."""
        self._undo.clear()
        self._show(mask)

    def _show(self, mask: QImage | None) -> None:
        self.mask = None if mask is None else mask.convertToFormat(QImage.Format.Format_Grayscale8)
        self.overlay = None if self.mask is None else _overlay_of(self.mask)

    @property
    def can_undo(self) -> bool:
        return bool(self._undo)

    def begin(self, point: QPointF, train: bool, width: float, size: tuple[int, int]) -> None:
        """Start a stroke at ``point``: ``train`` paints white (Paint) or black (Erase), ``width`` image pixels."""
        self._remember()
        if self.mask is None:
            fresh = QImage(size[0], size[1], QImage.Format.Format_Grayscale8)
            fresh.fill(QColor("black") if train else QColor("white"))
            self._show(fresh)
        self._train, self._width, self._last = train, max(width, 1.0), point
        self._segment(point, point)

    def extend(self, point: QPointF) -> None:
        if self._last is not None:
            self._segment(self._last, point)
            self._last = point

    def end(self) -> None:
        self._last = None

    def clear(self) -> None:
        """No mask: the whole image trains (undoable)."""
        if self.mask is not None:
            self._remember()
            self._show(None)

    def undo(self) -> None:
        if self._undo:
            self._show(self._undo.pop())

    def snapshot(self) -> QImage | None:
        """A copy of the mask to save (later strokes do not reach it), or None when there is no mask."""
        return None if self.mask is None else self.mask.copy()

    def _remember(self) -> None:
        self._undo.append(None if self.mask is None else self.mask.copy())
        del self._undo[:-UNDO_STEPS]

    def _segment(self, start: QPointF, end: QPointF) -> None:
        assert self.mask is not None and self.overlay is not None
        for target, colour in ((self.mask, QColor("white") if self._train else QColor("black")),
                               (self.overlay, QColor(0, 0, 0, 0) if self._train else TINT)):
            painter = QPainter(target)
            painter.setRenderHint(QPainter.RenderHint.Antialiasing)
            painter.setCompositionMode(QPainter.CompositionMode.CompositionMode_Source)
            painter.setPen(QPen(colour, self._width, Qt.PenStyle.SolidLine, Qt.PenCapStyle.RoundCap))
            painter.drawLine(start, end)
            painter.end()


def png_bytes(mask: QImage) -> bytes:
    """The mask as an 8-bit grayscale PNG.  Any thread (the model's writer encodes there: a 12-megapixel mask
    takes ~0.1 s), on an image no other thread changes."""
    data = QByteArray()
    buffer = QBuffer(data)
    buffer.open(QIODevice.OpenModeFlag.WriteOnly)
    mask.save(buffer, "PNG")
    buffer.close()
    return bytes(data.data())


def _overlay_of(mask: QImage) -> QImage:
    """The tint, as opaque as the mask is dark."""
    overlay = QImage(mask.size(), QImage.Format.Format_ARGB32)
    overlay.fill(TINT)
    darkness = mask.copy()
    darkness.invertPixels()
    overlay.setAlphaChannel(darkness)
    return overlay

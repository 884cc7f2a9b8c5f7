"""Small pieces the lessons share: a labelled slider over a float range, a heat strip of values, a
retranslatable label, and the colour scale (blue negative, white zero, red positive, as in the Train page's
weights view).  GUI thread only."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
from PySide6.QtCore import QRectF, Qt, Signal
from PySide6.QtGui import QColor, QPainter, QPaintEvent, QPen
from PySide6.QtWidgets import QHBoxLayout, QLabel, QSlider, QWidget

from desktop_app.learn.i18n import tr

NEGATIVE = np.array([33, 102, 172])
POSITIVE = np.array([178, 24, 43])
WHITE = np.array([247, 247, 247])


def diverging(value: float, scale: float) -> QColor:
    """Blue for negative, red for positive, white for zero; saturated at ±scale."""
    t = float(np.clip(value / scale, -1.0, 1.0)) if scale > 0 else 0.0
    rgb = WHITE + (POSITIVE - WHITE) * t if t >= 0 else WHITE + (NEGATIVE - WHITE) * -t
    return QColor(*[int(c) for c in rgb])


class FloatSlider(QWidget):
    """A caption, a horizontal slider over [low, high] in steps of ``step``, and the value it shows (with
    ``decimals`` digits after the point: 0 for a count such as a rank)."""

    valueChanged = Signal(float)

    def __init__(self, caption: str, low: float, high: float, step: float, value: float, decimals: int = 2,
                 parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.caption_source = caption
        self.low, self.step, self.decimals = low, step, decimals
        self.caption = QLabel()
        self.caption.setMinimumWidth(150)
        self.slider = QSlider(Qt.Orientation.Horizontal)
        self.slider.setRange(0, round((high - low) / step))
        self.number = QLabel()
        self.number.setMinimumWidth(56)
        self.number.setAlignment(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
        layout = QHBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(self.caption)
        layout.addWidget(self.slider, 1)
        layout.addWidget(self.number)
        self.slider.valueChanged.connect(self._on_slider)
        self.set_value(value)
        self.retranslate()

    def value(self) -> float:
        return self.low + self.slider.value() * self.step

    def set_value(self, value: float) -> None:
        """Move to the nearest step to ``value`` (signals as if the person moved it)."""
        self.slider.setValue(round((value - self.low) / self.step))
        self._show()

    def _on_slider(self, _position: int) -> None:
        self._show()
        self.valueChanged.emit(self.value())

    def _show(self) -> None:
        self.number.setText(f"{self.value():.{self.decimals}f}")

    def retranslate(self) -> None:
        self.caption.setText(tr(self.caption_source))


class HeatStrip(QWidget):
    """One layer's values as a column of coloured cells, with a title above; ``marked`` cells get a dark frame."""

    def __init__(self, title: str, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.title_source = title
        self.values = np.zeros(1)
        self.scale = 1.0
        self.marked: set[int] = set()
        self.setMinimumSize(70, 160)

    def show_values(self, values: np.ndarray, scale: float, marked: set[int] | None = None) -> None:
        self.values, self.scale, self.marked = np.asarray(values, dtype=float), scale, marked or set()
        self.update()

    def paintEvent(self, event: QPaintEvent) -> None:
        painter = QPainter(self)
        painter.setRenderHint(QPainter.RenderHint.Antialiasing)
        title_height = 34
        painter.setPen(QColor("#1f2933"))
        painter.drawText(QRectF(0, 0, self.width(), title_height),
                         Qt.AlignmentFlag.AlignCenter | Qt.TextFlag.TextWordWrap, tr(self.title_source))
        count = len(self.values)
        cell = min(22.0, (self.height() - title_height - 6) / max(count, 1))
        width = min(34.0, self.width() - 8.0)
        left = (self.width() - width) / 2
        top = title_height + (self.height() - title_height - cell * count) / 2
        painter.setPen(QPen(QColor("#d9e2ec"), 0.5))
        for index, value in enumerate(self.values):
            painter.setBrush(diverging(float(value), self.scale))
            painter.drawRect(QRectF(left, top + index * cell, width, cell))
        painter.setBrush(Qt.BrushStyle.NoBrush)
        painter.setPen(QPen(QColor("#111111"), 2))
        for index in self.marked:
            painter.drawRect(QRectF(left - 1, top + index * cell - 1, width + 2, cell + 2))
        painter.end()


class TrLabel(QLabel):
    """A label whose text is a marked string, optionally formatted: it follows a language switch."""

    def __init__(self, source: str, role: str | None = None, fill: Callable[[], dict] | None = None,
                 parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.source, self.fill = source, fill
        self.setWordWrap(True)
        if role:
            self.setProperty("role", role)
        self.retranslate()

    def retranslate(self) -> None:
        text = tr(self.source)
        self.setText(text.format(**self.fill()) if self.fill else text)


class MatrixHeat(QWidget):
    """A matrix as a square heatmap (blue negative, red positive, on a fixed ±scale) with a caption under it."""

    def __init__(self, caption: str, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.caption_source = caption
        self.matrix = np.zeros((1, 1))
        self.scale = 1.0
        self.setMinimumSize(120, 140)

    def show_matrix(self, matrix: np.ndarray, scale: float) -> None:
        self.matrix, self.scale = np.asarray(matrix, dtype=float), scale
        self.update()

    def paintEvent(self, event: QPaintEvent) -> None:
        painter = QPainter(self)
        side = min(self.width(), self.height() - 22)
        left = (self.width() - side) / 2
        rows, cols = self.matrix.shape
        cell_w, cell_h = side / cols, side / rows
        painter.setPen(Qt.PenStyle.NoPen)
        for (row, col), value in np.ndenumerate(self.matrix):
            painter.setBrush(diverging(float(value), self.scale))
            painter.drawRect(QRectF(left + col * cell_w, row * cell_h, cell_w + 0.5, cell_h + 0.5))
        painter.setPen(QColor("#52606d"))
        painter.drawText(QRectF(0, side + 2, self.width(), 20), Qt.AlignmentFlag.AlignCenter, tr(self.caption_source))
        painter.end()

    def retranslate(self) -> None:
        self.update()

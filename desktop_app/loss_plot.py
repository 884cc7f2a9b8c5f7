"""The loss plot: training loss and held-out loss against step, on a log scale, updating live."""

from __future__ import annotations

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import Qt
from PySide6.QtWidgets import QLabel, QStackedLayout, QWidget

from desktop_app.run_model import RunModel, Series

TRAIN_COLOR = "#1f77b4"
HELDOUT_COLOR = "#e8590c"


class LogLossAxis(pg.AxisItem):
    """Labels only 1, 2 and 5 × 10ⁿ on the log axis (no crowding), unless that would leave fewer than two labels."""

    def logTickStrings(self, values: list[float], scale: float, spacing: float) -> list[str]:
        strings = super().logTickStrings(values, scale, spacing)
        labelled = []
        for value, text in zip(values, strings, strict=False):
            mantissa = round(10 ** (float(value) % 1), 2)
            labelled.append(text if mantissa in (1.0, 2.0, 5.0, 10.0) else "")
        return labelled if sum(1 for text in labelled if text) >= 2 else strings


def positive(series: Series) -> tuple[np.ndarray, np.ndarray]:
    """Only points a log axis can show (a loss of exactly 0 would break the log scale)."""
    keep = series.y > 0
    return series.x[keep], series.y[keep]


class LossPlot(QWidget):
    def __init__(self, model: RunModel, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("lossPlot")
        self.model = model
        self.plot_widget = pg.PlotWidget(background="w", axisItems={"left": LogLossAxis("left")})
        plot = self.plot_widget.getPlotItem()
        plot.setLogMode(x=False, y=True)
        plot.showGrid(x=True, y=True, alpha=0.15)
        plot.setLabel("bottom", "step")
        plot.setLabel("left", "loss (log scale)")
        plot.setDownsampling(auto=True, mode="peak")
        plot.setClipToView(True)
        plot.setMenuEnabled(False)
        for axis in ("left", "bottom"):
            plot.getAxis(axis).setTextPen("#444")
            plot.getAxis(axis).setPen("#999")
        legend = plot.addLegend(offset=(-10, 10), labelTextColor="#333", brush=pg.mkBrush(255, 255, 255, 220))
        self.train_curve = plot.plot([], [], pen=pg.mkPen(TRAIN_COLOR, width=1.5), name="training loss")
        self.heldout_curve = plot.plot(
            [], [], pen=pg.mkPen(HELDOUT_COLOR, width=2), symbol="o", symbolSize=5,
            symbolBrush=HELDOUT_COLOR, symbolPen=None, name="held-out loss")
        self.legend = legend

        self.empty_hint = QLabel("The loss curve appears here once training starts.")
        self.empty_hint.setObjectName("lossPlotHint")
        self.empty_hint.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self.empty_hint.setAttribute(Qt.WidgetAttribute.WA_TransparentForMouseEvents)
        self.empty_hint.setProperty("role", "hint")
        stack = QStackedLayout(self)
        stack.setStackingMode(QStackedLayout.StackingMode.StackAll)
        stack.addWidget(self.empty_hint)
        stack.addWidget(self.plot_widget)
        self.empty_hint.raise_()

        model.curvesChanged.connect(self.refresh)
        model.statusChanged.connect(self._on_status)
        self.refresh()

    def _on_status(self) -> None:
        if not len(self.model.curves.train):
            self.refresh()

    def refresh(self) -> None:
        curves = self.model.curves
        self.train_curve.setData(*positive(curves.train))
        self.heldout_curve.setData(*positive(curves.heldout))
        empty = not len(curves.train)
        self.empty_hint.setVisible(empty)
        self.legend.setVisible(not empty)
        plot = self.plot_widget.getPlotItem()
        if empty:  # an empty plot still reads as one: the run's steps across, decades of loss up
            plot.setXRange(0, max(self.model.total_steps, 1), padding=0.02)
            plot.setYRange(-3, 1, padding=0)  # log10 units: 0.001 … 10
        else:
            plot.enableAutoRange()

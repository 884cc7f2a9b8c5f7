"""The curves: training loss (raw, faint, and smoothed), held-out loss on a log scale, and below them
the learning rate on the same step axis; updating live.  GUI thread only."""

from __future__ import annotations

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import QEvent, Qt
from PySide6.QtWidgets import QLabel, QStackedLayout, QVBoxLayout, QWidget

from desktop_app.learn.i18n import tr
from desktop_app.preview.run_model import RunModel, Series

TRAIN_COLOR = "#1f77b4"
RAW_COLOR = (31, 119, 180, 70)
HELDOUT_COLOR = "#e8590c"
LR_COLOR = "#2f9e44"
SMOOTHING_WINDOW = 0.05  # share of the curve's points the smoothing spans
SMOOTHING_MIN = 5  # … but never fewer points than this (a short run's curve is noisy too)


def smoothed(y: np.ndarray) -> np.ndarray:
    """A trailing moving average over ~5 % of the points, at least 5 (vectorised: cheap on every repaint)."""
    window = min(len(y), max(SMOOTHING_MIN, int(SMOOTHING_WINDOW * len(y))))
    if window <= 1:
        return y
    sums = np.cumsum(y)
    out = np.empty_like(y)
    out[:window] = sums[:window] / np.arange(1, window + 1)
    out[window:] = (sums[window:] - sums[:-window]) / window
    return out


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


def _css(colour: object) -> str:
    """A pyqtgraph colour (name, hex or RGB(A) tuple) as a CSS colour for the legend's rich text; a
    translucent one as it looks over the plot's white background."""
    c = pg.mkColor(colour)
    a = c.alphaF()
    return "#{:02x}{:02x}{:02x}".format(*(round(v * a + 255 * (1 - a)) for v in (c.red(), c.green(), c.blue())))


class LossPlot(QWidget):
    def __init__(self, model: RunModel, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("lossPlot")
        self.model = model
        self.plot_widget = pg.PlotWidget(background="w", axisItems={"left": LogLossAxis("left")})
        plot = self.plot_widget.getPlotItem()
        plot.setLogMode(x=False, y=True)
        plot.showGrid(x=True, y=True, alpha=0.15)
        plot.getAxis("left").enableAutoSIPrefix(False)  # losses below 1 would read "2·10² (×0.001)"
        plot.setDownsampling(auto=True, mode="peak")
        plot.setClipToView(True)
        plot.setMenuEnabled(False)
        for axis in ("left", "bottom"):
            plot.getAxis(axis).setTextPen("#444")
            plot.getAxis(axis).setPen("#999")
        self.raw_curve = plot.plot([], [], pen=pg.mkPen(RAW_COLOR, width=1))
        self.train_curve = plot.plot([], [], pen=pg.mkPen(TRAIN_COLOR, width=2))
        self.heldout_curve = plot.plot([], [], pen=pg.mkPen(HELDOUT_COLOR, width=2), symbol="o", symbolSize=5,
                                       symbolBrush=HELDOUT_COLOR, symbolPen=None)
        # The legend is a strip above the plot, not a box inside it: a box in a corner hid the newest
        # fifth of the curves, which is the part a person watches.
        self.legend = QLabel()
        self.legend.setObjectName("lossLegend")
        self.legend.setContentsMargins(8, 2, 8, 2)

        self.lr_widget = pg.PlotWidget(background="w")
        self.lr_widget.setObjectName("lrPlot")
        self.lr_widget.setMaximumHeight(110)
        lr_plot = self.lr_widget.getPlotItem()
        lr_plot.setMenuEnabled(False)
        lr_plot.showGrid(x=True, y=True, alpha=0.15)
        lr_plot.getAxis("left").enableAutoSIPrefix(False)
        lr_plot.getAxis("left").setWidth(plot.getAxis("left").width())
        for axis in ("left", "bottom"):
            lr_plot.getAxis(axis).setTextPen("#444")
            lr_plot.getAxis(axis).setPen("#999")
        lr_plot.setXLink(plot)
        self.lr_curve = lr_plot.plot([], [], pen=pg.mkPen(LR_COLOR, width=1.5))
        plot.getAxis("left").setWidth(56)
        lr_plot.getAxis("left").setWidth(56)

        self.empty_hint = QLabel()
        self.empty_hint.setObjectName("lossPlotHint")
        self.empty_hint.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self.empty_hint.setAttribute(Qt.WidgetAttribute.WA_TransparentForMouseEvents)
        self.empty_hint.setProperty("role", "hint")
        loss_box = QWidget()
        stack = QStackedLayout(loss_box)
        stack.setStackingMode(QStackedLayout.StackingMode.StackAll)
        stack.addWidget(self.empty_hint)
        stack.addWidget(self.plot_widget)
        self.empty_hint.raise_()
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.setSpacing(0)
        layout.addWidget(self.legend)
        layout.addWidget(loss_box, 1)
        layout.addWidget(self.lr_widget)

        model.curvesChanged.connect(self.refresh)
        model.statusChanged.connect(self._on_status)
        self.retranslate()
        self.refresh()

    def retranslate(self) -> None:
        """The axis names, legend and hint in the interface's language (the Learn page can switch it)."""
        plot = self.plot_widget.getPlotItem()
        plot.setLabel("bottom", tr("step"))
        plot.setLabel("left", tr("loss (log scale)"))
        self.lr_widget.getPlotItem().setLabel("left", tr("LR"))
        self.legend.setText("   ".join(
            f'<span style="color:{colour}; font-weight:700">{glyph}</span> {name}'
            for colour, glyph, name in ((_css(RAW_COLOR), "━", tr("training loss (raw)")),
                                        (_css(TRAIN_COLOR), "━", tr("training loss (smoothed)")),
                                        (_css(HELDOUT_COLOR), "●", tr("held-out loss")))))
        self.empty_hint.setText(tr("The loss curve appears here once training starts."))

    def changeEvent(self, event: QEvent) -> None:
        if event.type() == QEvent.Type.LanguageChange:
            self.retranslate()
        super().changeEvent(event)

    def _on_status(self) -> None:
        if not len(self.model.curves.train):
            self.refresh()

    def refresh(self) -> None:
        curves = self.model.curves
        x, y = positive(curves.train)
        self.raw_curve.setData(x, y)
        self.train_curve.setData(x, np.exp(smoothed(np.log(y))) if len(y) else y)  # smooth in log space
        self.lr_curve.setData(curves.lr.x, curves.lr.y)
        # From 0 up: autorange would centre a constant learning rate in ±0.5 and it would read as 0.
        rates = curves.lr.y[np.isfinite(curves.lr.y)]
        if rates.size and rates.max() > 0:
            self.lr_widget.getPlotItem().setYRange(0, float(rates.max()), padding=0.08)
        self.heldout_curve.setData(*positive(curves.heldout))
        empty = not len(curves.train)
        self.empty_hint.setVisible(empty)
        plot = self.plot_widget.getPlotItem()
        if empty:  # an empty plot still reads as one: the run's steps across, decades of loss up
            plot.setXRange(0, max(self.model.total_steps, 1), padding=0.02)
            plot.setYRange(-3, 1, padding=0)  # log10 units: 0.001 … 10
        else:
            # x from 0 to the newest point, set outright: autorange with clip-to-view can keep a previous,
            # shorter run's range when a long run's curves arrive at once (the Runs page).
            last = max(float(x[-1]) if len(x) else 0.0,
                       float(curves.heldout.x[-1]) if len(curves.heldout.x) else 0.0, 1.0)
            plot.enableAutoRange(axis="y")
            plot.setXRange(0, last, padding=0.02)

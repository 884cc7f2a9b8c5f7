"""The Live preview: how the run is going, while it goes.

Top to bottom: the notice banner (how the last run ended), the loss plot, and below it what the
model looks like now — the toy network's weights and biases, or (for Stable Diffusion modes) the
latest sample images (the growing grid comes with the live-preview issue).  A second tab holds the run's log.
"""

from __future__ import annotations

from PySide6.QtCore import Qt
from PySide6.QtWidgets import QLabel, QPlainTextEdit, QSplitter, QStackedWidget, QTabWidget, QVBoxLayout, QWidget

from desktop_app.loss_plot import LossPlot
from desktop_app.notice_banner import NoticeBanner
from desktop_app.run_model import RunModel
from desktop_app.samples_view import SamplesView
from desktop_app.weights_view import WeightsView

LOG_LINES_KEPT = 5000


class PreviewPanel(QWidget):
    def __init__(self, model: RunModel, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("previewPanel")
        self.model = model
        title = QLabel("Live preview")
        title.setProperty("role", "panelTitle")
        self.banner = NoticeBanner(model)
        self.loss_plot = LossPlot(model)
        self.weights_view = WeightsView(model)
        self.samples_view = SamplesView(model)
        self.lower = QStackedWidget()
        self.lower.addWidget(self.weights_view)
        self.lower.addWidget(self.samples_view)

        split = QSplitter(Qt.Orientation.Vertical)
        split.setChildrenCollapsible(False)
        split.addWidget(self.loss_plot)
        split.addWidget(self.lower)
        split.setStretchFactor(0, 1)
        split.setStretchFactor(1, 1)
        split.setSizes([1000, 1000])  # half each, whatever the window's size

        self.log_view = QPlainTextEdit()
        self.log_view.setObjectName("logView")
        self.log_view.setReadOnly(True)
        self.log_view.setMaximumBlockCount(LOG_LINES_KEPT)
        self.log_view.setPlaceholderText("The trainer's messages appear here.")
        self.tabs = QTabWidget()
        self.tabs.setDocumentMode(True)
        self.tabs.addTab(split, "Training")
        self.tabs.addTab(self.log_view, "Log")

        layout = QVBoxLayout(self)
        layout.setContentsMargins(4, 8, 8, 8)
        layout.setSpacing(6)
        layout.addWidget(title)
        layout.addWidget(self.banner)
        layout.addWidget(self.tabs, 1)

        model.logAdded.connect(self.log_view.appendPlainText)

    def show_mode(self, mode: str, architecture: str) -> None:
        """Weights for the toy network, samples for Stable Diffusion."""
        self.lower.setCurrentWidget(self.weights_view if architecture == "toy" else self.samples_view)

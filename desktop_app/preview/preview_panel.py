"""The Live preview: how the run is going, while it goes.

Top to bottom: the notice banner (how the last run ended), a line of numbers (step, it/s, time left,
memory), the curves (loss raw and smoothed, held-out loss, learning rate), and below them what the
model looks like now — the toy network's weights and biases, or (for Stable Diffusion modes) the
sample grid, one row per sampling step.  A second tab holds the run's log.  GUI thread only.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from PySide6.QtCore import Qt
from PySide6.QtWidgets import QLabel, QPlainTextEdit, QSplitter, QStackedWidget, QTabWidget, QVBoxLayout, QWidget

from desktop_app.lazy_page import LazyPage
from desktop_app.preview.notice_banner import NoticeBanner
from desktop_app.preview.run_model import RunModel
from desktop_app.preview.sample_grid import SampleGrid
from desktop_app.session import SessionState
from desktop_app.status_bar import activity_text, format_bytes, format_duration, format_speed
from trainer.families import is_toy

if TYPE_CHECKING:
    from desktop_app.preview.loss_plot import LossPlot
    from desktop_app.preview.weights_view import WeightsView

LOG_LINES_KEPT = 5000


class PreviewPanel(QWidget):
    def __init__(self, model: RunModel, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("previewPanel")
        self.model = model
        title = QLabel("Live preview")
        title.setProperty("role", "panelTitle")
        self.banner = NoticeBanner(model)
        # The curves and the heatmaps are pyqtgraph's (with numpy, about a third of the window's imports): they
        # come right after the window's first frame, each catching up with the model as it is built.
        self.loss_frame = LazyPage(self._make_loss_plot, after_first_paint=True)
        self.weights_frame = LazyPage(self._make_weights_view, after_first_paint=True)
        self.sample_grid = SampleGrid(model.sample_history)
        self.stats = QLabel()
        self.stats.setObjectName("runStats")
        self.stats.setProperty("role", "subtle")
        self.lower = QStackedWidget()
        self.lower.addWidget(self.weights_frame)
        self.lower.addWidget(self.sample_grid)

        split = QSplitter(Qt.Orientation.Vertical)
        split.setChildrenCollapsible(False)
        split.addWidget(self.loss_frame)
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
        layout.addWidget(self.stats)
        layout.addWidget(self.tabs, 1)

        model.logAdded.connect(self.log_view.appendPlainText)
        model.statusChanged.connect(self._show_stats)
        self._show_stats()

    def _make_loss_plot(self) -> QWidget:
        from desktop_app.preview.loss_plot import LossPlot

        return LossPlot(self.model)

    def _make_weights_view(self) -> QWidget:
        from desktop_app.preview.weights_view import WeightsView

        return WeightsView(self.model)

    @property
    def loss_plot(self) -> LossPlot:
        """The curves, built now if the window has not painted yet."""
        return self.loss_frame.page()  # type: ignore[return-value]

    @property
    def weights_view(self) -> WeightsView:
        """The toy network's heatmaps, built now if the window has not painted yet."""
        return self.weights_frame.page()  # type: ignore[return-value]

    def _show_stats(self) -> None:
        """Step, speed, time left and memory of the run, above the curves where the eye already is."""
        model = self.model
        if not model.has_started:
            doing = activity_text(model)
            self.stats.setText(f"Starting: {doing}…" if model.state == SessionState.STARTING and doing else
                               "Starting the trainer…" if model.state == SessionState.STARTING else
                               "The run did not start." if model.state == SessionState.FAILED else
                               "No run yet: press Start, or queue runs on the Runs page." if not model.earlier_runs else
                               f"No run in this window yet; the project's {model.earlier_runs:,} earlier "
                               f"run{'s are' if model.earlier_runs > 1 else ' is'} on the Runs page. Press Start "
                               "for a new one.")
            return
        parts = [f"Step {model.step:,} of {model.total_steps:,}"]
        doing = activity_text(model)
        if model.state == SessionState.STOPPING:
            parts.append(f"Stopping: {doing}")  # the save can take minutes: say what it is at
        elif model.state in (SessionState.TRAINING, SessionState.PAUSED) and model.it_per_s > 0:
            parts += [format_speed(model.it_per_s), f"{format_duration(model.eta_s)} left"]
        if doing and model.state != SessionState.STOPPING:
            parts.append(doing)
        if model.memory_bytes:
            parts.append(f"{'GPU' if model.memory_kind == 'cuda' else 'RAM'} {format_bytes(model.memory_bytes)}")
        if model.state == SessionState.PAUSED:
            parts.append("paused")
        self.stats.setText("  ·  ".join(parts))
    def show_mode(self, mode: str, architecture: str) -> None:
        """Weights for the toy network, samples for Stable Diffusion."""
        self.lower.setCurrentWidget(self.weights_frame if is_toy(architecture) else self.sample_grid)

"""The Runs page: the queue, and the project's past runs with their curves, samples, settings and outputs.

Left: the queue (waiting runs, editable while one trains) above the history (every run folder of
the project, newest first, with how it ended).  Right: the chosen run — its curves, sample grid,
settings, output files and log — and what can be done with it: open its output folder, start a new
run from its settings, or resume it when it was stopped or interrupted.

Threads: GUI thread.  The list reads only small things per run (see :mod:`desktop_app.runs.run_history`);
a run's metrics, settings and log are read when it is chosen; its sample images through the grid's
thread pool.  The list refreshes when the page is shown and whenever a run ends.
"""

from __future__ import annotations

import re
from pathlib import Path

from PySide6.QtCore import QObject, Qt, QUrl, Signal
from PySide6.QtGui import QDesktopServices, QShowEvent
from PySide6.QtWidgets import (
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QListWidget,
    QPlainTextEdit,
    QPushButton,
    QSplitter,
    QTabWidget,
    QTreeWidget,
    QTreeWidgetItem,
    QVBoxLayout,
    QWidget,
)

from desktop_app.preview.loss_plot import LossPlot
from desktop_app.preview.run_model import Curves
from desktop_app.preview.sample_grid import SampleGrid
from desktop_app.preview.sample_history import SampleHistory, read_sample_history
from desktop_app.runs.run_history import RunSummary, summarize
from desktop_app.session import SessionState, TrainingSession
from trainer.config import Config
from trainer.runfolder import RunFolder

STATUS_TEXT = {"finished": "✔ finished", "stopped": "■ stopped", "interrupted": "⚠ interrupted",
               "failed": "✖ failed", "broken": "✖ unreadable", "running": "● running",
               "out of memory": "⚠ out of memory"}



def output_purpose(relative: Path, config: Config | None) -> str:
    """Which tool each output file is for (the Outputs tab says it beside the name)."""
    if config is None or config.mode == "toy":
        return ""
    lora = config.mode == "lora" or (config.mode == "dreambooth" and not config.dreambooth.train_full_unet)
    if relative.parts[0] == "diffusers":
        if lora:
            return "LoRA for diffusers (pipe.load_lora_weights) and ComfyUI"
        return ("the diffusers model folder, for Pipeline.from_pretrained"
                if relative.as_posix() == "diffusers/model_index.json" else "")
    if relative.suffix == ".safetensors" and len(relative.parts) == 1:
        return ("LoRA, kohya format: Automatic1111, ComfyUI, kohya (continue with --network_weights)" if lora
                else "single-file checkpoint: Automatic1111, ComfyUI")
    return ""


def list_name(folder_name: str) -> str:
    """A run's name in the list: its folder name without the ``-YYYYmmdd-HHMMSS`` stamp (the Started column
    has the date), so the part that tells runs apart is what fits."""
    return re.sub(r"-\d{8}-\d{6}(-\d+)?$", "", folder_name) or folder_name


class CurvesSource(QObject):
    """What :class:`LossPlot` reads, for a finished run (the live plot reads the run model)."""

    curvesChanged = Signal()
    statusChanged = Signal()

    def __init__(self, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.curves, self.total_steps = Curves(), 0

    def show(self, curves: Curves, total_steps: int) -> None:
        self.curves, self.total_steps = curves, total_steps
        self.curvesChanged.emit()


class RunsPage(QWidget):
    useConfigRequested = Signal(object)  # Config
    resumeRequested = Signal(object)  # Path

    def __init__(self, runs: object, session: TrainingSession, queue_view: QWidget,
                 parent: QWidget | None = None) -> None:
        """``runs()`` lists the project's RunFolders (a callable, so a newly opened project is followed)."""
        super().__init__(parent)
        self.setObjectName("runsPage")
        self._runs, self.session = runs, session
        self.summaries: list[RunSummary] = []
        self.list = QTreeWidget()
        self.list.setObjectName("runList")
        self.list.setHeaderLabels(["Run", "Mode", "Steps", "Status", "Started"])
        self.list.setRootIsDecorated(False)
        self.list.setAlternatingRowColors(True)
        self.list.setTextElideMode(Qt.TextElideMode.ElideMiddle)
        header = self.list.header()
        header.setStretchLastSection(False)
        header.setSectionResizeMode(QHeaderView.ResizeMode.ResizeToContents)
        header.setSectionResizeMode(0, QHeaderView.ResizeMode.Stretch)
        self.list.currentItemChanged.connect(lambda *_: self._show_selected())
        history = QWidget()
        history_layout = QVBoxLayout(history)
        history_layout.setContentsMargins(0, 0, 0, 0)
        title = QLabel("History")
        title.setProperty("role", "panelTitle")
        history_layout.addWidget(title)
        history_layout.addWidget(self.list, 1)
        left = QSplitter(Qt.Orientation.Vertical)
        self.queue_view = queue_view
        left.addWidget(queue_view)
        left.addWidget(history)
        left.setSizes([260, 540])

        self.title = QLabel("Choose a run")
        self.title.setProperty("role", "panelTitle")
        self.details = QLabel()
        self.details.setProperty("role", "subtle")
        self.details.setWordWrap(True)
        self.open_button = QPushButton("Open output folder")
        self.use_button = QPushButton("New run from these settings")
        self.resume_button = QPushButton("Resume")
        for button, name in ((self.open_button, "openOutputButton"), (self.use_button, "useSettingsButton"),
                             (self.resume_button, "resumeRunButton")):
            button.setObjectName(name)
        self.open_button.clicked.connect(self.open_output_folder)
        self.use_button.clicked.connect(self._use_settings)
        self.resume_button.clicked.connect(self._resume)
        buttons = QHBoxLayout()
        for button in (self.open_button, self.use_button, self.resume_button):
            buttons.addWidget(button)
        buttons.addStretch(1)

        self.curves = CurvesSource(self)
        self.plot = LossPlot(self.curves)  # type: ignore[arg-type]  # duck-typed like RunModel
        self.samples = SampleHistory(self)
        self.sample_grid = SampleGrid(self.samples, follow_newest=False)
        self.settings_view = self._text_view("runSettings")
        self.outputs_view = QListWidget()
        self.outputs_view.setObjectName("runOutputs")
        self.log_view = self._text_view("runLog")
        self.tabs = QTabWidget()
        self.tabs.setDocumentMode(True)
        for widget, name in ((self.plot, "Curves"), (self.sample_grid, "Samples"), (self.settings_view, "Settings"),
                             (self.outputs_view, "Outputs"), (self.log_view, "Log")):
            self.tabs.addTab(widget, name)
        right = QWidget()
        right_layout = QVBoxLayout(right)
        right_layout.addWidget(self.title)
        right_layout.addWidget(self.details)
        right_layout.addLayout(buttons)
        right_layout.addWidget(self.tabs, 1)

        split = QSplitter(Qt.Orientation.Horizontal)
        split.addWidget(left)
        split.addWidget(right)
        split.setSizes([470, 810])
        split.setChildrenCollapsible(False)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(8, 8, 8, 8)
        layout.addWidget(split)
        session.stateChanged.connect(self._on_session_state)
        self._show_selected()

    def _text_view(self, name: str) -> QPlainTextEdit:
        view = QPlainTextEdit()
        view.setObjectName(name)
        view.setReadOnly(True)
        view.setLineWrapMode(QPlainTextEdit.LineWrapMode.NoWrap)
        return view

    # ------------------------------------------------------------------ the list

    def refresh(self) -> None:
        chosen = self.selected()
        self.summaries = [summarize(run.root) for run in reversed(self._runs())]
        self.list.clear()
        running = self.session.run_dir if self.session.is_active() else None
        for summary in self.summaries:
            status = "running" if running is not None and Path(running) == summary.root else summary.status
            steps = f"{summary.last_step:,} / {summary.total_steps:,}"
            item = QTreeWidgetItem([list_name(summary.name), summary.mode, steps, STATUS_TEXT.get(status, status),
                                    summary.started_text])
            item.setData(0, Qt.ItemDataRole.UserRole, str(summary.root))
            item.setToolTip(0, summary.name)
            item.setToolTip(3, summary.problem or status)
            self.list.addTopLevelItem(item)
            if chosen is not None and summary.root == chosen.root:
                self.list.setCurrentItem(item)
        if self.list.currentItem() is None and self.list.topLevelItemCount():
            self.list.setCurrentItem(self.list.topLevelItem(0))

    def selected(self) -> RunSummary | None:
        item = self.list.currentItem()
        if item is None:
            return None
        root = Path(item.data(0, Qt.ItemDataRole.UserRole))
        return next((s for s in self.summaries if s.root == root), None)

    def select_run(self, root: Path) -> None:
        for index in range(self.list.topLevelItemCount()):
            item = self.list.topLevelItem(index)
            if Path(item.data(0, Qt.ItemDataRole.UserRole)) == Path(root).resolve():
                self.list.setCurrentItem(item)

    # ------------------------------------------------------------------ the chosen run

    def _show_selected(self) -> None:
        summary = self.selected()
        busy = self.session.is_active()
        running = busy and summary is not None and self.session.run_dir == summary.root
        self.open_button.setEnabled(summary is not None)
        self.use_button.setEnabled(summary is not None and summary.config is not None)
        self.resume_button.setEnabled(summary is not None and summary.resumable and not busy)
        self.resume_button.setToolTip("Continue from the last checkpoint" if summary is not None and summary.resumable
                                      else "Only a stopped or interrupted run with a checkpoint can be resumed")
        if summary is None:
            self.title.setText("Choose a run" if self.list.topLevelItemCount() else "No runs yet")
            self.details.setText("Runs appear here once you start training.")
            return
        self.title.setText(summary.name)
        where = f"{summary.root}"
        state = "running now" if running else summary.status
        checkpoint = (f"; last checkpoint at step {summary.checkpoint_step:,}" if summary.checkpoint_step is not None
                      else "; no checkpoint")
        self.details.setText(f"{summary.mode} · {state} at step {summary.last_step:,} of {summary.total_steps:,}"
                             f"{checkpoint}. {summary.problem}\n{where}")
        run = RunFolder(summary.root)
        self.curves.show(Curves.from_metrics(run.read_metrics()), summary.total_steps)
        self.samples.load(read_sample_history(summary.root))
        self.settings_view.setPlainText(run.config_path.read_text(encoding="utf-8")
                                        if run.config_path.is_file() else "")
        self.outputs_view.clear()
        for path in summary.outputs:
            relative = path.relative_to(run.output_dir)
            purpose = output_purpose(relative, summary.config)
            self.outputs_view.addItem(f"{relative}  —  {purpose}" if purpose else str(relative))
        if not summary.outputs:
            self.outputs_view.addItem("(no outputs: the run did not finish or was stopped without saving)")
        self.log_view.setPlainText(_tail(run.log_path))

    def open_output_folder(self) -> None:
        summary = self.selected()
        if summary is not None:
            folder = RunFolder(summary.root).output_dir
            QDesktopServices.openUrl(QUrl.fromLocalFile(str(folder if folder.is_dir() else summary.root)))

    def _use_settings(self) -> None:
        summary = self.selected()
        if summary is not None and summary.config is not None:
            self.useConfigRequested.emit(summary.config)

    def _resume(self) -> None:
        summary = self.selected()
        if summary is not None and summary.resumable and not self.session.is_active():
            self.resumeRequested.emit(summary.root)

    def _on_session_state(self, state: str) -> None:
        if not self.isVisible():
            return  # showEvent refreshes; reading a long run's metrics here stalled the Train page at its end
        if state in (SessionState.STARTING, SessionState.FINISHED, SessionState.FAILED):
            self.refresh()
        else:
            self._show_selected()

    def showEvent(self, event: QShowEvent) -> None:
        self.refresh()
        super().showEvent(event)


def _tail(path: Path, limit: int = 200_000) -> str:
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return ""
    return text[-limit:]

"""The status bar: the run's state, step / total, speed, time left and memory, always in view."""

from __future__ import annotations

import math
from pathlib import Path

from PySide6.QtWidgets import QLabel, QStatusBar, QWidget

from desktop_app.run_model import RunModel
from desktop_app.session import SessionState

STATE_TEXT = {
    SessionState.IDLE: "Ready", SessionState.STARTING: "Starting…", SessionState.TRAINING: "Training",
    SessionState.PAUSED: "Paused", SessionState.STOPPING: "Stopping…", SessionState.FINISHED: "Finished",
    SessionState.FAILED: "Failed",
}
STATE_COLOR = {
    SessionState.IDLE: "#6b7280", SessionState.STARTING: "#d97706", SessionState.TRAINING: "#16a34a",
    SessionState.PAUSED: "#d97706", SessionState.STOPPING: "#d97706", SessionState.FINISHED: "#2563eb",
    SessionState.FAILED: "#dc2626",
}


def format_duration(seconds: float) -> str:
    if not math.isfinite(seconds) or seconds < 0:
        return "–"
    hours, rest = divmod(round(seconds), 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"


def format_speed(it_per_s: float) -> str:
    """Steps per second with the digits that matter: '205 it/s', '3.4 it/s', '0.27 it/s' (slow diffusion runs)."""
    digits = 0 if it_per_s >= 100 else 1 if it_per_s >= 1 else 2
    return f"{it_per_s:,.{digits}f} it/s"


def format_bytes(count: int) -> str:
    size = float(count)
    for unit in ("B", "KB", "MB", "GB"):
        if size < 1024 or unit == "GB":
            return f"{size:.0f} {unit}" if unit in ("B", "KB") else f"{size:.1f} {unit}"
        size /= 1024
    return f"{size:.1f} GB"


class RunStatusBar(QStatusBar):
    def __init__(self, model: RunModel, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("statusBar")
        self.model = model
        self.project_label = QLabel()
        self.project_label.setObjectName("statusProject")
        self.project_label.setContentsMargins(8, 0, 8, 0)
        self.addWidget(self.project_label)
        self.state_label = self._add("statusState")
        self.step_label = self._add("statusStep")
        self.speed_label = self._add("statusSpeed")
        self.eta_label = self._add("statusEta")
        self.memory_label = self._add("statusMemory")
        model.statusChanged.connect(self.refresh)
        self.refresh()

    def show_project(self, name: str, folder: Path) -> None:
        self.project_label.setText(f"Project: <b>{name}</b>")
        self.project_label.setToolTip(str(folder))

    def _add(self, name: str) -> QLabel:
        label = QLabel()
        label.setObjectName(name)
        label.setContentsMargins(8, 0, 8, 0)
        self.addPermanentWidget(label)
        return label

    def refresh(self) -> None:
        model = self.model
        color = STATE_COLOR[model.state]
        self.state_label.setText(f"<span style='color:{color}'>●</span> {STATE_TEXT[model.state]}")
        running = model.state in (SessionState.TRAINING, SessionState.PAUSED, SessionState.STOPPING)
        has_run = model.has_started and model.total_steps > 0
        self.step_label.setVisible(has_run)
        self.step_label.setText(f"Step {model.step:,} / {model.total_steps:,}")
        self.speed_label.setVisible(running and model.it_per_s > 0)
        self.speed_label.setText(format_speed(model.it_per_s))
        self.eta_label.setVisible(running and model.it_per_s > 0)
        self.eta_label.setText(f"ETA {format_duration(model.eta_s)}")
        self.memory_label.setVisible(running and model.memory_bytes > 0)
        kind = "GPU" if model.memory_kind == "cuda" else "RAM"
        self.memory_label.setText(f"{kind} {format_bytes(model.memory_bytes)}")

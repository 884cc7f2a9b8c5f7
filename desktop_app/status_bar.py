"""The status bar: the run's state, what the trainer is busy with (saving, sampling: with progress), step /
total, speed, time left and memory, always in view."""

from __future__ import annotations

import math
from pathlib import Path

from PySide6.QtWidgets import QLabel, QProgressBar, QStatusBar, QWidget

from desktop_app.preview.run_model import RunModel
from desktop_app.session import SessionState, describe_activity

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


QUIET_NOTE_S = 30.0  # while stopping, a silence this long is mentioned ("no word for 0:45")


def activity_text(model: RunModel) -> str:
    """What the trainer is doing besides training steps, for the status bar and the stats line:
    'drawing final samples 3/8', and while stopping also for how long ('saving checkpoint · 1:12'), or
    '' while it just trains."""
    if model.activity is not None:
        text = describe_activity(model.activity)
    elif model.state == SessionState.STOPPING:
        text = "finishing the current step"
    else:
        return ""
    if model.state == SessionState.STOPPING:
        text += f" · {format_duration(model.stopping_for_s)} since Stop"
        if model.silent_for_s >= QUIET_NOTE_S:
            text += f" · no word from the trainer for {format_duration(model.silent_for_s)}"
    return text


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
        model.session.notice.connect(lambda text: self.showMessage(text, 8000))  # "Resuming once … has finished"
        self.project_label = QLabel()
        self.project_label.setObjectName("statusProject")
        self.project_label.setContentsMargins(8, 0, 8, 0)
        self.addWidget(self.project_label)
        self.state_label = self._add("statusState")
        self.activity_label = self._add("statusActivity")
        self.activity_bar = QProgressBar()
        self.activity_bar.setObjectName("statusActivityBar")
        self.activity_bar.setTextVisible(False)
        self.activity_bar.setFixedSize(110, 12)
        self.addPermanentWidget(self.activity_bar)
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
        state = "Stopped" if model.state == SessionState.FINISHED and model.stopped else STATE_TEXT[model.state]
        self.state_label.setText(f"<span style='color:{color}'>●</span> {state}")
        doing = activity_text(model)
        self.activity_label.setVisible(bool(doing))
        self.activity_label.setText(doing[:1].upper() + doing[1:])
        counted = model.activity is not None and model.activity.total > 0
        self.activity_bar.setVisible(counted)
        if counted:
            self.activity_bar.setRange(0, model.activity.total)
            self.activity_bar.setValue(model.activity.done)
        running = model.state in (SessionState.TRAINING, SessionState.PAUSED, SessionState.STOPPING)
        has_run = model.has_started and model.total_steps > 0
        self.step_label.setVisible(has_run)
        self.step_label.setText(f"Step {model.step:,} / {model.total_steps:,}")
        stepping = model.state in (SessionState.TRAINING, SessionState.PAUSED)  # no speed or ETA while it stops
        self.speed_label.setVisible(stepping and model.it_per_s > 0)
        self.speed_label.setText(format_speed(model.it_per_s))
        self.eta_label.setVisible(stepping and model.it_per_s > 0)
        self.eta_label.setText(f"ETA {format_duration(model.eta_s)}")
        self.memory_label.setVisible(running and model.memory_bytes > 0)
        kind = "GPU" if model.memory_kind == "cuda" else "RAM"
        self.memory_label.setText(f"{kind} {format_bytes(model.memory_bytes)}")

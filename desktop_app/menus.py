"""The main window's menus: File (projects), Run (the same commands as the buttons, with shortcuts), Help."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from PySide6.QtCore import QUrl
from PySide6.QtGui import QAction, QDesktopServices, QKeySequence
from PySide6.QtWidgets import QFileDialog, QMessageBox

from desktop_app.paths import preset_path
from desktop_app.session import SessionState
from trainer import __version__
from trainer.config import ConfigError
from trainer.project import Project

if TYPE_CHECKING:
    from desktop_app.window_api import Window


def build_menus(window: Window) -> dict[str, QAction]:
    session, controls = window.session, window.controls
    actions: dict[str, QAction] = {}

    def add(menu_name: str, key: str, text: str, slot: object, shortcut: QKeySequence | str | None = None) -> None:
        action = QAction(text, window)
        if shortcut is not None:
            action.setShortcut(QKeySequence(shortcut))
        action.triggered.connect(slot)
        menus[menu_name].addAction(action)
        actions[key] = action

    bar = window.menuBar()
    menus = {name: bar.addMenu(title) for name, title in (("file", "&File"), ("run", "&Run"), ("help", "&Help"))}
    add("file", "open_project", "&Open or create project…", lambda: open_project(window), QKeySequence.StandardKey.Open)
    add("file", "show_project", "Show project folder", lambda: QDesktopServices.openUrl(
        QUrl.fromLocalFile(str(window.project.root))))
    menus["file"].addSeparator()
    add("file", "quit", "&Quit", window.close, QKeySequence.StandardKey.Quit)
    add("run", "start", "&Start", window.start_training, "Ctrl+Return")
    add("run", "pause", "&Pause", controls.pause_button.click, "Ctrl+P")
    add("run", "stop", "S&top (save)", lambda: session.stop(save=True), "Ctrl+.")
    add("run", "stop_now", "Stop now &without saving…", window.stop_control.stop_now)
    menus["run"].addSeparator()
    add("run", "sample_now", "Preview &now", session.sample_now)
    add("run", "save_now", "Save a &checkpoint now", session.save_now, "Ctrl+S")
    menus["run"].addSeparator()
    add("run", "resume_run", "&Resume a run…", lambda: choose_run_to_resume(window))
    add("help", "about", "&About Kamaal", lambda: QMessageBox.about(
        window, "About Kamaal", f"<b>Kamaal {__version__}</b><p>Offline, local fine-tuning of diffusion models: "
        "the toy network, frozen layers, LoRA and DreamBooth.</p>"))

    def update(*_: object) -> None:
        state, idle = session.state, not session.is_active()
        running = state in (SessionState.TRAINING, SessionState.PAUSED)
        actions["start"].setEnabled(idle and window.config_model.is_valid())
        actions["pause"].setEnabled(running)
        actions["pause"].setText("&Resume" if state == SessionState.PAUSED else "&Pause")
        actions["stop"].setEnabled(state in (SessionState.STARTING, SessionState.TRAINING, SessionState.PAUSED))
        actions["stop_now"].setEnabled(not idle)
        actions["sample_now"].setEnabled(running)
        actions["save_now"].setEnabled(running)
        actions["resume_run"].setEnabled(idle)
        actions["open_project"].setEnabled(idle)

    session.stateChanged.connect(update)
    window.config_model.errorsChanged.connect(update)
    update()
    return actions


def open_project(window: Window) -> None:
    start_in = str(window.project.root.parent)
    folder = QFileDialog.getExistingDirectory(window, "Open or create a project folder", start_in)
    if not folder:
        return
    try:
        if Project.is_project(folder):
            project = Project.open(folder)
        else:
            preset = window.controls.current_preset() or "toy"
            if not window.ask(window, "Create project?", f"{folder} holds no project yet. Create one there, "
                              f"starting from the “{preset}” preset?"):
                return
            project = Project.create(folder, preset_path(preset))
    except (ConfigError, OSError) as exc:
        QMessageBox.warning(window, "Cannot open the project", str(exc))
        return
    window.set_project(project)


def choose_run_to_resume(window: Window) -> None:
    folder = QFileDialog.getExistingDirectory(window, "Choose a run folder to resume", str(window.project.runs_dir))
    if folder:
        window.resume_run(Path(folder))

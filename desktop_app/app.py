"""Starting the GUI: the QApplication, the project to open, the main window (or a screenshot of it)."""

from __future__ import annotations

import os
import sys
from pathlib import Path

from desktop_app import paths


def run_app(*, project_dir: Path | None, demo: bool, preset: Path, screenshot: Path | None) -> int:
    if screenshot is not None:
        os.environ["QT_QPA_PLATFORM"] = "offscreen"  # render without showing anything on screen
    from PySide6.QtCore import QSettings
    from PySide6.QtWidgets import QApplication, QMessageBox

    from desktop_app.learn.i18n import install_saved_language
    from desktop_app.main_window import MainWindow
    from desktop_app.style import apply_style
    from trainer.config import ConfigError
    from trainer.project import Project

    app = QApplication.instance() or QApplication([sys.argv[0]])
    app.setApplicationName(paths.APP_NAME)
    apply_style(app)
    install_saved_language()  # the interface's language, as the Learn page last set it
    settings = QSettings(str(paths.settings_path()), QSettings.Format.IniFormat)

    folder = project_dir
    if folder is None and not demo:
        last = settings.value("lastProject")
        folder = Path(str(last)) if last and Project.is_project(Path(str(last))) else None
    note = None
    try:
        demo_dir = paths.demo_project_dir()
        if folder is None or Path(folder).expanduser().resolve() == demo_dir.resolve():
            project, note = Project.open_demo(demo_dir, preset)
        else:
            project = Project.open_or_create(folder, preset)
    except (ConfigError, OSError) as exc:
        message = f"Cannot open the project: {exc}"
        print(f"kamaal: {message}", file=sys.stderr)
        if screenshot is None:
            QMessageBox.critical(None, "Kamaal", message)
        return 2

    window = MainWindow(project, settings=None if screenshot else settings)
    if note:
        print(f"kamaal: {note}", file=sys.stderr)
        window.statusBar().showMessage(note, 30_000)
    if screenshot is not None:
        return save_screenshot(window, screenshot)
    window.show()
    code = app.exec()
    window.session.shutdown()  # normally a no-op: closing the window already stopped any run
    return code


def save_screenshot(window: object, target: Path, size: tuple[int, int] = (1280, 800)) -> int:
    from PySide6.QtWidgets import QApplication, QMainWindow

    assert isinstance(window, QMainWindow)
    window.resize(*size)
    window.show()
    for _ in range(3):  # let layouts and the plots settle
        QApplication.processEvents()
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    ok = window.grab().save(str(target))
    window.close()
    if not ok:
        print(f"kamaal: could not write {target}", file=sys.stderr)
        return 1
    print(f"kamaal: screenshot saved to {target}")
    return 0

"""Render docs/screenshots/train-architectures.png: the Train page of a Flux.2 klein LoRA project with the
architecture list open (the families under a header per generation, each with the smallest GPU its presets
are made for).

    QT_QPA_PLATFORM=offscreen .venv/bin/python docs/screenshots/make_architecture_screenshot.py [OUT_DIR]

The list is a window of its own, which a grab of the main window leaves out: it is painted onto the
window's picture where it opened.  Everything happens in a throwaway folder.
"""

from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))


def render(scratch: Path, out: Path) -> None:
    from PySide6.QtCore import QEventLoop, QPoint, QTimer
    from PySide6.QtGui import QPainter

    from desktop_app.main_window import MainWindow
    from trainer.project import Project

    project = Project.create(scratch / "my-klein-lora", REPO / "resources" / "presets" / "flux2klein-lora-12gb.toml")
    window = MainWindow(Project.open(project.root), ask=lambda *_args: True)
    window.resize(1280, 800)
    window.show()
    window.show_page(window.splitter)

    def spin(ms: int) -> None:
        loop = QEventLoop()
        QTimer.singleShot(ms, loop.quit)
        loop.exec()

    spin(300)
    combo = window.hyperparameters_panel.editor("model.architecture").combo
    combo.showPopup()
    spin(300)
    picture = window.grab()
    popup = combo.view().window()
    painter = QPainter(picture)
    painter.drawPixmap(window.mapFromGlobal(popup.mapToGlobal(QPoint(0, 0))), popup.grab())
    painter.end()
    picture.save(str(out))
    combo.hidePopup()
    window.close()
    print(f"wrote {out}")


def main() -> int:
    from PySide6.QtWidgets import QApplication

    from desktop_app.style import apply_style

    out_dir = Path(sys.argv[1]) if len(sys.argv) > 1 else Path(__file__).resolve().parent
    app = QApplication.instance() or QApplication(sys.argv[:1])
    apply_style(app)
    with tempfile.TemporaryDirectory() as scratch:
        os.environ["KAMAAL_DATA_DIR"] = str(Path(scratch) / "data")
        render(Path(scratch), out_dir / "train-architectures.png")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

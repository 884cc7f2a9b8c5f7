"""The main window's shell: the object names automation relies on, the page a project opens on, and
pages built the first time they are shown (so the window opens with only what its first page needs)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from PySide6.QtWidgets import QWidget

from desktop_app.lazy_page import LazyPage

REPO = Path(__file__).resolve().parents[2]

OBJECT_NAMES = ["datasetPanel", "hyperparametersPanel", "previewPanel", "startButton", "pauseButton", "stopButton"]


def open_every_page(window) -> None:
    """What a person does: show the window and click through the tabs."""
    window.show()
    for index in range(window.pages.count()):
        window.pages.setCurrentIndex(index)


def test_the_panels_and_buttons_have_their_object_names(make_window):
    window = make_window()
    assert window.objectName() == "mainWindow"
    open_every_page(window)
    found = {name: window.findChildren(QWidget, name) for name in OBJECT_NAMES}
    assert all(len(widgets) == 1 for widgets in found.values()), {n: len(w) for n, w in found.items()}
    assert found["datasetPanel"][0] is window.dataset_panel
    assert found["hyperparametersPanel"][0] is window.hyperparameters_panel
    assert found["previewPanel"][0] is window.preview_panel
    controls = window.controls
    assert [found[name][0] for name in ("startButton", "pauseButton", "stopButton")] == [
        controls.start_button, controls.pause_button, controls.stop_button]


@pytest.mark.parametrize(("preset", "page"), [("toy", "Train"), ("toy-frozen", "Train"),
                                              ("sd15-dreambooth", "Dataset")])
def test_a_project_opens_on_the_page_where_its_work_starts(make_window, preset, page):
    """A toy project has no images to curate, so it opens on the form and the live preview."""
    window = make_window(preset=preset)
    assert window.pages.tabText(window.pages.currentIndex()) == page


def test_pages_other_than_the_first_are_built_when_first_shown(make_window, qtbot):
    window = make_window(preset="toy")  # opens on the Train page
    qtbot.addWidget(window)
    frames = {window.pages.tabText(i): window.pages.widget(i) for i in range(window.pages.count())}
    lazy = {title: frame for title, frame in frames.items() if isinstance(frame, LazyPage)}
    assert set(lazy) == {"Dataset", "Runs", "Merge", "Learn"}
    window.show()
    assert not any(frame.is_built() for frame in lazy.values())
    window.pages.setCurrentWidget(lazy["Runs"])
    assert lazy["Runs"].is_built() and not lazy["Dataset"].is_built()
    assert lazy["Runs"].built_page() is window.extras.runs_page and window.extras.runs_page.isVisible()
    window.config_model.set_value("sampling.prompts", ["a red circle"])
    window.show_page(window.merge_panel)  # asked for by code: built, and its frame opened
    assert window.pages.currentWidget() is lazy["Merge"] and window.merge_panel.isVisible()
    assert window.merge_panel.prompts.toPlainText() == "a red circle"  # the project's prompts, as before
    window.config_model.set_value("sampling.prompts", ["a blue square"])
    assert window.merge_panel.prompts.toPlainText() == "a blue square"  # and it follows them once built


WINDOW_MODULES = r"""
import json, os, sys
from PySide6.QtWidgets import QApplication
app = QApplication([])
from desktop_app.main_window import MainWindow
from desktop_app.paths import preset_path
from trainer.project import Project
window = MainWindow(Project.open_or_create(os.path.join(os.environ["KAMAAL_DATA_DIR"], "p"), preset_path("toy")))
window.show()
app.processEvents()
print(json.dumps(sorted(sys.modules)))
window.close()
"""


def test_the_window_opens_without_the_modules_of_pages_not_shown(tmp_path):
    """The start-up time goal (README ▸ Performance): a toy project opens on the Train page, so neither the
    Dataset page's widgets and health check, nor the Runs or Merge pages, nor torch are imported."""
    env = {**os.environ, "QT_QPA_PLATFORM": "offscreen", "KAMAAL_DATA_DIR": str(tmp_path), "PYTHONPATH": str(REPO)}
    result = subprocess.run([sys.executable, "-c", WINDOW_MODULES], capture_output=True, text=True, env=env,
                            cwd=REPO, timeout=120, check=True)
    modules = set(json.loads(result.stdout.strip().splitlines()[-1]))
    assert "desktop_app.main_window" in modules
    for name in ("desktop_app.dataset.panel", "trainer.dataset.health", "desktop_app.runs.runs_page",
                 "desktop_app.merge.panel", "torch"):
        assert name not in modules, name

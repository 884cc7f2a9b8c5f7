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


def test_the_live_preview_plots_come_after_the_first_frame_and_show_what_arrived_before(make_window, qtbot):
    """pyqtgraph's curves and heatmaps are built right after the window's first frame (not before it): progress
    that reached the run model meanwhile is on the curves once they exist; code asking for them builds them."""
    from desktop_app.preview.loss_plot import positive
    from trainer.protocol import Progress

    window = make_window(preset="toy")
    qtbot.addWidget(window)
    preview = window.preview_panel
    assert not preview.loss_frame.is_built() and not preview.weights_frame.is_built()
    for step in (1, 2, 3):
        window.session.progress.emit(Progress(step=step, total_steps=10, loss=1.0 / step, lr=1e-3, it_per_s=5.0,
                                              eta_s=1.0, elapsed_s=0.1, memory_bytes=0, memory_kind="rss"))
    window.show()
    qtbot.waitUntil(lambda: preview.loss_frame.is_built() and preview.weights_frame.is_built(), timeout=3000)
    assert list(preview.loss_plot.raw_curve.getData()[0]) == [1, 2, 3]  # drawn from the model as built
    assert preview.loss_plot.isVisible() and preview.weights_view.isVisible()  # the toy run shows its heatmaps
    unshown = make_window(preset="toy")
    qtbot.addWidget(unshown)
    x, _ = positive(unshown.preview_panel.loss_plot.model.curves.train)
    assert unshown.preview_panel.loss_frame.is_built() and len(x) == 0  # asked for before any frame: built now


WINDOW_MODULES = r"""
import json, os, sys
from PySide6.QtCore import QEvent, QObject
from PySide6.QtWidgets import QApplication
app = QApplication([])
from desktop_app.main_window import MainWindow
from desktop_app.paths import preset_path
from trainer.project import Project
at_first_frame, presets_read = [], []
class FirstPaint(QObject):
    def eventFilter(self, watched, event):
        if event.type() == QEvent.Type.Paint and not at_first_frame:
            at_first_frame.append(sorted(sys.modules))
            presets_read.append(window.controls.presets_read())
        return False
window = MainWindow(Project.open_or_create(os.path.join(os.environ["KAMAAL_DATA_DIR"], "p"), preset_path("toy")))
watcher = FirstPaint()
window.installEventFilter(watcher)
window.show()
while not at_first_frame:
    app.processEvents()
for _ in range(3):
    app.processEvents()
presets_read.append(window.controls.presets_read())
print(json.dumps({"first_frame": at_first_frame[0], "shown": sorted(sys.modules), "presets_read": presets_read}))
window.close()
"""


def test_the_window_opens_without_the_modules_of_pages_not_shown(tmp_path):
    """The start-up time goal (README ▸ Performance): a toy project opens on the Train page, so neither the
    Dataset page's widgets and health check, nor the Runs or Merge pages, nor torch are imported; nor, until the
    first frame, pyqtgraph and numpy; and the preset files are read right after it, not before."""
    env = {**os.environ, "QT_QPA_PLATFORM": "offscreen", "KAMAAL_DATA_DIR": str(tmp_path), "PYTHONPATH": str(REPO)}
    result = subprocess.run([sys.executable, "-c", WINDOW_MODULES], capture_output=True, text=True, env=env,
                            cwd=REPO, timeout=120, check=True)
    found = json.loads(result.stdout.strip().splitlines()[-1])
    modules = set(found["shown"])
    assert "desktop_app.main_window" in modules
    for name in ("desktop_app.dataset.panel", "trainer.dataset.health", "desktop_app.runs.runs_page",
                 "desktop_app.merge.panel", "torch"):
        assert name not in modules, name
    # The live preview's plots come after the first frame, with pyqtgraph and numpy (a third of the imports).
    assert not {"pyqtgraph", "numpy"} & set(found["first_frame"]), found["first_frame"]
    assert found["presets_read"] == [False, True]

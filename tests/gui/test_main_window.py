"""The main window's shell: the object names automation relies on, and the page a project opens on."""

from __future__ import annotations

import pytest
from PySide6.QtWidgets import QWidget

OBJECT_NAMES = ["datasetPanel", "hyperparametersPanel", "previewPanel", "startButton", "pauseButton", "stopButton"]


def test_the_panels_and_buttons_have_their_object_names(make_window):
    window = make_window()
    assert window.objectName() == "mainWindow"
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

"""The Dataset page's concepts: add a folder as a concept, select, edit, remove (never from disk),
per-concept class images, and the project file that keeps them."""

from __future__ import annotations

import pytest

from desktop_app.config_model import ConfigModel
from desktop_app.dataset import DatasetPanel
from tests.gui.test_dataset_panel import FAKE_TASK, loaded, photos
from trainer.config import load_config


@pytest.fixture
def panel_with_subject(qtbot, make_project):
    panels: list[DatasetPanel] = []

    def make(overrides: list[str] | None = None) -> DatasetPanel:
        project = make_project(["dataset.path=datasets/subject", "dreambooth.num_class_images=2",
                                *(overrides or [])], "sd15-dreambooth")
        photos(project.root / "datasets" / "subject", 2)
        panel = DatasetPanel(ConfigModel(project.config), project.root)
        panel.class_images.task_name = FAKE_TASK
        panel.project = project  # type: ignore[attr-defined]
        qtbot.addWidget(panel)
        panel.resize(1280, 800)
        panels.append(panel)
        loaded(qtbot, panel, 2)
        return panel

    yield make
    for panel in panels:
        panel.shutdown()
        assert not panel.class_images.runner.is_busy()


def add_cats(qtbot, panel: DatasetPanel, tmp_path, count: int = 3) -> None:
    source = photos(tmp_path / "cats", count, seed=500)
    assert panel.add_concept(source)
    qtbot.waitUntil(lambda: panel.store.count() == 2 and len(panel.dataset.entries) == count, timeout=10_000)


def test_adding_a_concept_imports_its_folder_and_selects_it(qtbot, panel_with_subject, tmp_path):
    panel = panel_with_subject()
    add_cats(qtbot, panel, tmp_path)
    assert panel.store.current == 1 and panel.concept_tabs.tabs.currentIndex() == 1
    (concept,) = panel.model.value("concepts")
    assert concept["path"] == "datasets/cats" and concept["name"] == "cats"
    assert (panel.project.root / "datasets" / "cats" / "photo 00.jpg").is_file()
    assert len(list((tmp_path / "cats").iterdir())) == 6  # the originals: still there, nothing added
    assert panel.model.value("dataset.path") == "datasets/subject"  # the first concept is untouched
    assert panel.dataset.folder == panel.project.root / "datasets" / "cats" and panel.dataset.editable
    qtbot.waitUntil(lambda: panel.concept_tabs.tabs.tabText(1) == "cats  ·  3", timeout=10_000)
    qtbot.waitUntil(lambda: panel.concept_tabs.tabs.tabText(0) == "subject  ·  2", timeout=10_000)
    # A second concept from a folder of the same name gets a folder of its own.
    again = photos(tmp_path / "more" / "cats", 1, seed=900)
    assert panel.add_concept(again)
    qtbot.waitUntil(lambda: panel.store.count() == 3 and len(panel.dataset.entries) == 1, timeout=10_000)
    assert panel.model.value("concepts")[1]["path"] == "datasets/cats-2"


def test_the_bar_edits_the_selected_concept_and_selection_switches_the_grid(qtbot, panel_with_subject, tmp_path):
    panel = panel_with_subject()
    add_cats(qtbot, panel, tmp_path)
    bar = panel.concepts
    bar.token.setText("zwx")
    bar.token.editingFinished.emit()
    bar.repeats.setValue(4)
    bar.name.setText("my cat")
    bar.name.editingFinished.emit()
    concept = panel.model.value("concepts")[0]
    assert (concept["instance_token"], concept["repeats"], concept["name"]) == ("zwx", 4, "my cat")
    assert panel.model.value("dataset.instance_token") == "sks" and panel.model.value("dataset.repeats") == 1
    assert panel.concept_tabs.tabs.tabText(1).startswith("my cat")
    assert panel.dataset.settings.token == "zwx"  # the health check and previews use the concept's token
    assert panel.bulk.value.text() == "zwx"  # and "Add the instance token" adds this concept's
    assert bar.resolution.value() == 512  # 0 = the dataset's, shown as what it trains at
    panel.model.set_value("dataset.resolution", 640)
    assert bar.resolution.value() == 640 and panel.model.value("concepts")[0]["resolution"] == 0

    panel.concept_tabs.tabs.setCurrentIndex(0)
    loaded(qtbot, panel, 2)
    assert panel.dataset.folder == panel.project.root / "datasets" / "subject"
    assert bar.token.text() == "sks" and bar.repeats.value() == 1 and bar.name.text() == ""
    assert panel.bulk.value.text() == "sks"
    panel.concept_tabs.tabs.setCurrentIndex(1)
    loaded(qtbot, panel, 3)
    assert bar.token.text() == "zwx" and bar.repeats.value() == 4


def test_removing_a_concept_keeps_its_files(qtbot, panel_with_subject, tmp_path):
    panel = panel_with_subject()
    add_cats(qtbot, panel, tmp_path)
    asked: list[str] = []
    panel.ask_remove = lambda _parent, title: asked.append(title) or False
    panel.concept_tabs.remove.click()
    assert asked == ["cats"] and panel.store.count() == 2  # said no: nothing happens
    panel.ask_remove = lambda _parent, _title: True
    panel.concept_tabs.remove.click()
    assert panel.store.count() == 1 and panel.model.value("concepts") == []
    loaded(qtbot, panel, 2)
    assert panel.dataset.folder == panel.project.root / "datasets" / "subject"
    assert len(list((panel.project.root / "datasets" / "cats").glob("*.jpg"))) == 3  # still on disk


def test_removing_the_first_concept_promotes_the_next(qtbot, panel_with_subject, tmp_path):
    panel = panel_with_subject(["dreambooth.class_dir=datasets/class"])
    add_cats(qtbot, panel, tmp_path)
    panel.store.set_value("repeats", 3)
    panel.store.set_value("resolution", 768)
    panel.remove_concept(0)
    assert panel.store.count() == 1 and panel.model.value("concepts") == []
    assert panel.model.value("dataset.path") == "datasets/cats" and panel.model.value("dataset.name") == "cats"
    assert panel.model.value("dataset.repeats") == 3 and panel.model.value("dataset.resolution") == 768
    assert panel.model.value("dreambooth.class_dir") == ""  # the removed concept's class set went with it
    loaded(qtbot, panel, 3)
    assert (panel.project.root / "datasets" / "subject" / "photo 00.jpg").is_file()


def test_a_concepts_class_images_go_to_its_own_folder(qtbot, panel_with_subject, tmp_path):
    panel = panel_with_subject(["dreambooth.class_dir=datasets/class"])
    add_cats(qtbot, panel, tmp_path)
    box = panel.class_images
    qtbot.waitUntil(lambda: "no class set" in box.status.text(), timeout=10_000)
    panel.store.set_value("class_dir", "datasets/class-cats")
    assert panel.model.config is None and panel.concepts.class_prompt.property("invalid")  # needs a prompt
    panel.store.set_value("class_prompt", "a photo of a cat")
    panel.store.set_value("num_class_images", 2)
    assert panel.model.config is not None and not panel.concepts.class_prompt.property("invalid")
    qtbot.waitUntil(lambda: box.generate.text() == "Generate 2", timeout=10_000)
    with qtbot.waitSignal(box.runner.busyChanged, timeout=60_000, check_params_cb=lambda busy: not busy):
        box.generate.click()
    assert len(list((panel.project.root / "datasets" / "class-cats").glob("*.png"))) == 2
    assert not (panel.project.root / "datasets" / "class").exists()  # the first concept's set: untouched
    qtbot.waitUntil(lambda: "2 of 2" in box.status.text(), timeout=10_000)


def test_the_project_file_keeps_the_concepts(qtbot, make_window, make_project, tmp_path):
    project = make_project(["dataset.path=datasets/subject"], "sd15-dreambooth")
    photos(project.root / "datasets" / "subject", 2)
    window = make_window(project=project)
    panel = window.dataset_panel
    loaded(qtbot, panel, 2)
    add_cats(qtbot, panel, tmp_path, count=2)
    panel.store.set_value("repeats", 5)
    window.save_settings()
    saved = load_config(project.config_path)
    assert len(saved.concepts) == 1 and saved.concepts[0].repeats == 5
    assert saved.concepts[0].path == str(project.root / "datasets" / "cats")  # relative in the file
    assert 'path = "datasets/cats"' in project.config_path.read_text(encoding="utf-8")
    window.close()

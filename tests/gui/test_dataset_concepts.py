"""The Dataset page's concepts: add a folder as a concept, select, edit, remove (never from disk),
per-concept class images, and the project file that keeps them."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from PySide6.QtCore import Qt, QTimer
from PySide6.QtTest import QTest
from PySide6.QtWidgets import QApplication, QDialogButtonBox, QFileDialog, QLineEdit, QMessageBox, QWidget

from desktop_app.dataset import DatasetPanel
from tests.gui.dataset_helpers import loaded, photos
from trainer.config import load_config


@pytest.fixture
def panel_with_subject(qtbot, make_panel):
    """A Dataset page whose one concept holds two photos (loaded), wanting two class images."""

    def make(overrides: list[str] | None = None) -> DatasetPanel:
        panel = make_panel(["dreambooth.num_class_images=2", *(overrides or [])], images=2)
        loaded(qtbot, panel, 2)
        return panel

    return make


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


# ------------------------------------------------------------------ the dialogs, as a person uses them

def answer_dialog(act: Callable[[QWidget], None], kind: type[QWidget]) -> list[str]:
    """Act on the next modal dialog of ``kind`` once it is open; returns the titles of the dialogs
    acted on (one, once it has opened).

    The dialogs are the real ones (``QFileDialog.getExistingDirectory`` and ``QMessageBox.question``
    run their own event loop, in which this timer fires)."""
    seen: list[str] = []

    def poll(tries: int = 200) -> None:
        dialog = QApplication.activeModalWidget()
        if isinstance(dialog, kind) and dialog.isVisible():
            seen.append(dialog.windowTitle())
            act(dialog)
        elif tries:
            QTimer.singleShot(20, lambda: poll(tries - 1))

    QTimer.singleShot(0, poll)
    return seen


def choose_folder(folder: Path | None) -> Callable[[QWidget], None]:
    """Type the folder into the file dialog and press Choose; ``None``: press Cancel."""

    def act(dialog: QWidget) -> None:
        assert isinstance(dialog, QFileDialog)
        buttons = dialog.findChild(QDialogButtonBox, "buttonBox")
        if folder is None:
            qtbot_click(buttons.button(QDialogButtonBox.StandardButton.Cancel))
            return
        name = dialog.findChild(QLineEdit, "fileNameEdit")
        name.setText(str(folder))
        qtbot_click(buttons.button(QDialogButtonBox.StandardButton.Open))  # shown as "Choose"

    return act


def press(button: QMessageBox.StandardButton) -> Callable[[QWidget], None]:
    def act(dialog: QWidget) -> None:
        assert isinstance(dialog, QMessageBox)
        pressed.append(dialog.text())
        qtbot_click(dialog.button(button))

    pressed: list[str] = []
    act.texts = pressed  # type: ignore[attr-defined]
    return act


def qtbot_click(button: QWidget) -> None:
    QTest.mouseClick(button, Qt.MouseButton.LeftButton)


def files_under(folder: Path) -> dict[str, bytes]:
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def shown(qtbot, panel: DatasetPanel) -> DatasetPanel:
    panel.show()
    qtbot.waitExposed(panel)
    return panel


def test_add_concept_dialog_imports_the_chosen_folder(qtbot, panel_with_subject, tmp_path):
    panel = shown(qtbot, panel_with_subject())
    source = photos(tmp_path / "cats", 3, seed=500)
    originals = files_under(source)
    dialogs = answer_dialog(choose_folder(source), QFileDialog)
    qtbot.mouseClick(panel.concept_tabs.add, Qt.MouseButton.LeftButton)
    assert len(dialogs) == 1 and "new concept" in dialogs[0]
    qtbot.waitUntil(lambda: panel.store.count() == 2 and len(panel.dataset.entries) == 3, timeout=10_000)
    config = panel.model.config
    assert config is not None and [(c.name, c.path) for c in config.concepts] == [("cats", "datasets/cats")]
    assert panel.concept_tabs.tabs.count() == 2 and panel.concept_tabs.tabs.currentIndex() == 1
    qtbot.waitUntil(lambda: panel.concept_tabs.tabs.tabText(1) == "cats  ·  3", timeout=10_000)
    assert files_under(source) == originals  # copied, not moved
    assert len(list((panel.project.root / "datasets" / "cats").glob("*.jpg"))) == 3


def test_cancelling_the_add_concept_dialog_changes_nothing(qtbot, panel_with_subject):
    panel = shown(qtbot, panel_with_subject())
    before = panel.model.value("concepts"), panel.model.value("dataset.path")
    datasets = sorted(p.name for p in (panel.project.root / "datasets").iterdir())
    dialogs = answer_dialog(choose_folder(None), QFileDialog)
    qtbot.mouseClick(panel.concept_tabs.add, Qt.MouseButton.LeftButton)
    assert len(dialogs) == 1
    assert (panel.model.value("concepts"), panel.model.value("dataset.path")) == before
    assert panel.store.count() == 1 and panel.concept_tabs.tabs.count() == 1
    assert sorted(p.name for p in (panel.project.root / "datasets").iterdir()) == datasets
    assert not panel.importer.busy()


def test_remove_concept_dialog_asks_then_takes_it_out_of_the_config_only(qtbot, panel_with_subject, tmp_path):
    panel = shown(qtbot, panel_with_subject())
    add_cats(qtbot, panel, tmp_path)
    cats = panel.project.root / "datasets" / "cats"
    panel.dataset.remove([0])  # an edit of the concept's own (in .kamaal): it must survive too
    panel.dataset.flush()
    assert (cats / ".kamaal").is_dir()
    on_disk = files_under(cats)

    said_no = press(QMessageBox.StandardButton.No)
    answer_dialog(said_no, QMessageBox)
    qtbot.mouseClick(panel.concept_tabs.remove, Qt.MouseButton.LeftButton)
    assert len(said_no.texts) == 1 and "“cats”" in said_no.texts[0] and "stay on disk" in said_no.texts[0]
    assert panel.store.count() == 2 and panel.concept_tabs.tabs.count() == 2
    assert panel.model.value("concepts")[0]["path"] == "datasets/cats"

    said_yes = press(QMessageBox.StandardButton.Yes)
    answer_dialog(said_yes, QMessageBox)
    qtbot.mouseClick(panel.concept_tabs.remove, Qt.MouseButton.LeftButton)
    assert len(said_yes.texts) == 1
    assert panel.model.value("concepts") == [] and panel.model.config is not None
    assert panel.store.count() == 1 and panel.concept_tabs.tabs.count() == 1
    loaded(qtbot, panel, 2)
    qtbot.waitUntil(lambda: panel.concept_tabs.tabs.tabText(0) == "subject  ·  2", timeout=10_000)
    assert files_under(cats) == on_disk  # every image, caption and edit still there


def test_removing_the_only_concept_keeps_its_folder_and_disables_remove(qtbot, panel_with_subject):
    panel = shown(qtbot, panel_with_subject())
    subject = panel.project.root / "datasets" / "subject"
    on_disk = files_under(subject)
    assert panel.concept_tabs.remove.isEnabled()
    answer_dialog(press(QMessageBox.StandardButton.Yes), QMessageBox)
    qtbot.mouseClick(panel.concept_tabs.remove, Qt.MouseButton.LeftButton)
    assert panel.model.value("dataset.path") == "" and panel.store.count() == 1
    assert not panel.concept_tabs.remove.isEnabled()
    qtbot.waitUntil(lambda: panel.dataset.folder is None, timeout=10_000)
    assert files_under(subject) == on_disk


def test_a_removed_concepts_folder_can_be_added_again_where_it_is(qtbot, panel_with_subject, tmp_path):
    panel = shown(qtbot, panel_with_subject())
    add_cats(qtbot, panel, tmp_path)
    cats = panel.project.root / "datasets" / "cats"
    panel.store.set_value("repeats", 4)
    answer_dialog(press(QMessageBox.StandardButton.Yes), QMessageBox)
    qtbot.mouseClick(panel.concept_tabs.remove, Qt.MouseButton.LeftButton)
    assert panel.store.count() == 1

    answer_dialog(choose_folder(cats), QFileDialog)
    qtbot.mouseClick(panel.concept_tabs.add, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: panel.store.count() == 2 and len(panel.dataset.entries) == 3, timeout=10_000)
    assert panel.model.value("concepts")[0]["path"] == "datasets/cats"  # not a copy in datasets/cats-2
    assert not (panel.project.root / "datasets" / "cats-2").exists()
    assert "nothing copied" in panel.toolbar.counts.text()

    # The folder of a concept that is still in the project is refused, with a word why.
    answer_dialog(choose_folder(cats), QFileDialog)
    qtbot.mouseClick(panel.concept_tabs.add, Qt.MouseButton.LeftButton)
    assert panel.store.count() == 2 and "already the concept “cats”" in panel.toolbar.counts.text()

"""The Dataset page on before/after pairs (issue 28): wide tiles, the pair above the caption, a control dropped on
its slot, two images dropped together, and the pairs' health findings."""

from __future__ import annotations

import dataclasses
from pathlib import Path

from PySide6.QtCore import QMimeData, QPointF, Qt, QUrl
from PySide6.QtGui import QDropEvent

from desktop_app.dataset.grid import PAIR_TILE, TILE
from desktop_app.dataset.pair_dialog import AS_PAIR, control_and_target
from tests.dataset.conftest import picture
from tests.gui.dataset_helpers import loaded
from trainer.dataset.pair_health import PairUse


def drop(widget, *paths: Path) -> None:
    mime = QMimeData()
    mime.setUrls([QUrl.fromLocalFile(str(path)) for path in paths])
    widget.dropEvent(QDropEvent(QPointF(10, 10), Qt.DropAction.CopyAction, mime, Qt.MouseButton.LeftButton,
                                Qt.KeyboardModifier.NoModifier))


def paired_panel(qtbot, make_panel):
    """Two captioned photos, the first with a control image beside it: a concept of pairs."""
    panel = make_panel(images=2)
    folder = panel.project.root / "datasets" / "subject"
    picture(7, 320, 256).save(folder / "photo 00_control.jpg")
    panel.refresh()
    qtbot.waitUntil(lambda: len(panel.dataset.entries) == 2 and panel.dataset.paired, timeout=10_000)
    return panel, folder


def test_a_concept_of_pairs_shows_control_then_target_with_the_caption(qtbot, make_panel):
    panel, folder = paired_panel(qtbot, make_panel)
    assert panel.grid_model.tile_size() == PAIR_TILE and panel.grid.gridSize().height() == PAIR_TILE.height() + 6
    first = panel.grid_model.tile(0)
    assert first.paired and first.controls == 1 and first.caption == "a photo of sks dog, shot 0"
    assert panel.grid_model.tile(1).controls == 0  # drawn as an empty "no control" slot
    qtbot.waitUntil(lambda: panel.grid_model.tile(0).control is not None, timeout=10_000)  # its thumbnail too
    panel.select_rows([0])
    view = panel.pair_view
    assert not view.isHidden() and view.target.path == folder / "photo 00.jpg"
    assert [slot.path for slot in view.controls if not slot.isHidden()] == [folder / "photo 00_control.jpg"]
    qtbot.waitUntil(lambda: not view.controls[0].pixmap().isNull() and not view.target.pixmap().isNull(),
                    timeout=10_000)
    assert "photo 00_control.jpg → photo 00.jpg" in view.hint.text()
    qtbot.waitUntil(lambda: "The same crop cuts its control image" in panel.crop.info.text(), timeout=10_000)


def test_an_image_dropped_on_the_control_slot_is_copied_in_as_the_control(qtbot, make_panel, tmp_path):
    panel, folder = paired_panel(qtbot, make_panel)
    source = tmp_path / "before.png"
    picture(9, 320, 256).save(source)
    original = source.read_bytes()
    panel.select_rows([1])
    slot = panel.pair_view.controls[0]
    assert slot.path is None and slot.acceptDrops()
    drop(slot, source)
    qtbot.waitUntil(lambda: panel.dataset.entries[1].controls == (folder / "photo 01_control.png",), timeout=10_000)
    assert (folder / "photo 01_control.png").read_bytes() == original and source.read_bytes() == original
    assert panel.pair_view.controls[0].path == folder / "photo 01_control.png"
    assert panel.grid_model.tile(1).controls == 1


def test_two_images_dropped_on_a_concept_of_pairs_become_one_pair(qtbot, make_panel, tmp_path):
    panel, folder = paired_panel(qtbot, make_panel)
    after, before = tmp_path / "cat after.png", tmp_path / "cat before.jpg"
    picture(11, 320, 256).save(after)
    picture(12, 320, 256).save(before)
    assert control_and_target(after, before) == (before, after)  # the names say which is which
    drop(panel.grid, after, before)
    dialog = panel.pair_dialog
    assert dialog is not None and (dialog.control, dialog.target) == (before, after)
    dialog.swap()
    dialog.swap()
    dialog.done(AS_PAIR)
    loaded(qtbot, panel, 3)
    qtbot.waitUntil(lambda: panel.dataset.entries[panel.dataset.row_of(folder / "cat after.png")].controls
                    == (folder / "cat after_control.jpg",), timeout=10_000)
    assert (folder / "cat after_control.jpg").read_bytes() == before.read_bytes()


def test_an_edit_family_makes_a_target_without_control_an_error_in_the_health_list(qtbot, make_panel):
    panel, _ = paired_panel(qtbot, make_panel)
    panel.dataset.settings = dataclasses.replace(panel.dataset.settings, pairs=PairUse("An edit model", 1))
    panel.dataset.check()  # the check the page ran first (a text-to-image family) said only that controls are ignored
    qtbot.waitUntil(lambda: any(f.code.value == "missing_control" for f in panel.dataset.findings), timeout=30_000)
    codes = {(f.file.name, f.code.value, f.severity.value) for f in panel.dataset.findings}
    assert ("photo 01.jpg", "missing_control", "error") in codes
    assert ("subject", "partly_paired", "warning") in codes
    texts = [panel.findings.list.item(i).text() for i in range(panel.findings.list.count())]
    assert any(text.startswith("photo 01.jpg — photo 01.jpg has no control image") for text in texts)
    assert any(text.startswith("This concept — 1 of 2 images have no control image") for text in texts)
    assert panel.dataset.entries[1].worst is not None and panel.dataset.entries[1].worst.value == "error"


def test_a_plain_concept_keeps_its_tiles_and_imports_two_dropped_images_as_two(qtbot, make_panel, tmp_path):
    panel = make_panel(images=1)
    loaded(qtbot, panel, 1)
    assert panel.grid_model.tile_size() == TILE and not panel.grid_model.tile(0).paired
    panel.select_rows([0])
    assert panel.pair_view.isHidden()
    for seed, name in enumerate(("a.png", "b.png")):
        picture(seed, 320, 256).save(tmp_path / name)
    drop(panel.grid, tmp_path / "a.png", tmp_path / "b.png")  # no question: a text-to-image concept
    loaded(qtbot, panel, 3)
    assert panel.pair_dialog is None and not panel.dataset.paired

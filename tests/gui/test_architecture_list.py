"""The Train page's architecture list: the registry's families under a header per generation, each with the
smallest GPU its shipped presets are made for; only families can be chosen."""

from __future__ import annotations

from pathlib import Path

from PySide6.QtCore import QPoint, QPointF, Qt
from PySide6.QtGui import QWheelEvent
from PySide6.QtWidgets import QApplication

from desktop_app.paths import list_presets
from desktop_app.train import field_editors
from desktop_app.train.field_editors import ArchitectureEditor, make_editor
from desktop_app.train.field_meta import meta_for, smallest_cards
from trainer.families import FAMILIES, NAMES


def architecture_editor(qtbot) -> ArchitectureEditor:
    editor = make_editor(meta_for("model.architecture"))
    qtbot.addWidget(editor)
    assert isinstance(editor, ArchitectureEditor)
    return editor


def rows(editor: ArchitectureEditor) -> list[tuple[str, str | None, bool]]:
    """(text, family, selectable) of every row of the list."""
    combo = editor.combo
    return [(combo.itemText(i), combo.itemData(i),
             bool(combo.model().flags(combo.model().index(i, 0)) & Qt.ItemFlag.ItemIsSelectable))
            for i in range(combo.count())]


def test_families_are_grouped_by_generation_under_headers_that_cannot_be_chosen(qtbot):
    listed = rows(architecture_editor(qtbot))
    assert [family for _, family, _ in listed if family] == list(FAMILIES)  # every family once, registry order
    headers = [text for text, family, selectable in listed if family is None]
    assert headers == ["Stable Diffusion (2022–23)", "Transformers with T5 (2024–25)",
                       "Transformers with an LLM (2025–26)"]
    assert all(not selectable for _, family, selectable in listed if family is None)
    assert all(selectable for _, family, selectable in listed if family)
    header = None
    for text, family, _ in listed:  # each family sits under its own generation's header
        if family is None:
            header = text
        else:
            assert FAMILIES[family].generation == (header or ""), (family, header)
    assert listed[0][1] == "toy"  # the toy, of no generation, comes before every header


def test_keys_and_the_mouse_step_over_the_headers(qtbot):
    editor = architecture_editor(qtbot)
    combo = editor.combo
    editor.show()
    chosen = []
    editor.edited.connect(chosen.append)
    combo.setCurrentIndex(combo.findData("toy"))
    combo.setFocus()
    for _ in range(combo.count() + 2):  # down through every header to the last family, and past it
        qtbot.keyClick(combo, Qt.Key.Key_Down)
        assert combo.currentData() in NAMES
    assert combo.currentData() == list(FAMILIES)[-1]
    for _ in range(combo.count() + 2):
        qtbot.keyClick(combo, Qt.Key.Key_Up)
        assert combo.currentData() in NAMES
    assert combo.currentData() == "toy"
    assert chosen and set(chosen) <= set(FAMILIES) and chosen[-1] == "toy"
    editor.activateWindow()
    combo.setFocus()
    qtbot.waitUntil(combo.hasFocus, timeout=2000)  # the form's combos take the wheel only when focused
    centre = QPointF(combo.rect().center())
    for _ in range(combo.count() + 2):  # the wheel, on the focused list, steps over them too
        QApplication.sendEvent(combo, QWheelEvent(centre, combo.mapToGlobal(centre), QPoint(), QPoint(0, -120),
                                                  Qt.MouseButton.NoButton, Qt.KeyboardModifier.NoModifier,
                                                  Qt.ScrollPhase.NoScrollPhase, False))
        assert combo.currentData() in NAMES
    assert combo.currentData() == list(FAMILIES)[-1]
    combo.setCurrentIndex(combo.findData("toy"))

    view = combo.view()

    def click(row: int) -> None:  # the pointer goes there first, as a person's does: the view follows it
        combo.showPopup()
        qtbot.wait(QApplication.doubleClickInterval() + 50)  # the popup ignores a release this soon after it opens
        where = view.visualRect(combo.model().index(row, 0)).center()
        qtbot.mouseMove(view.viewport(), where)
        qtbot.mouseClick(view.viewport(), Qt.MouseButton.LeftButton, pos=where)

    click(combo.findText("Stable Diffusion (2022–23)"))
    assert combo.currentData() == "toy"  # a click on a header chooses nothing
    click(combo.findData("sdxl"))
    assert combo.currentData() == "sdxl" and chosen[-1] == "sdxl"


def write_preset(folder: Path, name: str, architecture: str) -> None:
    (folder / f"{name}.toml").write_text(f'mode = "lora"\n[model]\narchitecture = "{architecture}"\n',
                                         encoding="utf-8")


def test_each_family_shows_the_smallest_card_its_presets_are_made_for(qtbot, tmp_path, monkeypatch):
    shipped = smallest_cards(list_presets())
    assert shipped["flux2klein"] == (12, "flux2klein-lora-12gb") and shipped["sd3"] == (12, "sd35-lora-12gb")
    assert shipped["sd15"] == (8, "sd15-lora-8gb")  # of two 8 GB presets, the plainer name
    assert "toy" not in shipped and "sd2" not in shipped
    editor = architecture_editor(qtbot)
    for text, family, _ in rows(editor):
        if family in shipped:
            assert text == f"{FAMILIES[family].display_name} · {shipped[family][0]} GB GPU"
        elif family:
            assert text == FAMILIES[family].display_name

    write_preset(tmp_path, "flux-lora-24gb", "flux")
    write_preset(tmp_path, "my-flux-lora-10gb", "flux")
    write_preset(tmp_path, "flux-dreambooth", "flux")  # not named for a card
    write_preset(tmp_path, "zimage-lora-16gb", "qwenimage")  # the file says which family, not its name
    assert smallest_cards(sorted(tmp_path.glob("*.toml"))) == {"flux": (10, "my-flux-lora-10gb"),
                                                               "qwenimage": (16, "zimage-lora-16gb")}
    monkeypatch.setattr(field_editors, "list_presets", lambda: sorted(tmp_path.glob("*.toml")))
    editor = architecture_editor(qtbot)
    combo = editor.combo
    flux = combo.findData("flux")
    assert combo.itemText(flux) == "Flux.1 · 10 GB GPU"
    assert "my-flux-lora-10gb" in combo.itemData(flux, Qt.ItemDataRole.ToolTipRole)
    assert combo.itemText(combo.findData("sd3")) == "Stable Diffusion 3.5"  # no preset: no card claimed

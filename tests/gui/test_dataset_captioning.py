"""The Dataset page's "Caption images…": a tiny WD14-style tagger (built in the test, run by onnxruntime in a real
trainer process), a preview that writes nothing, a run that captions the chosen images as edits of the project
(caption files untouched), Cancel that keeps what is done, one undo for the batch, and clear messages for a
folder that is not a captioner."""

from __future__ import annotations

from pathlib import Path

import pytest

from desktop_app.dataset import DatasetPanel
from desktop_app.dataset.caption_dialog import MODEL_KEY, CaptionDialog, app_settings
from tests.dataset.test_captioning import write_tagger
from tests.gui.dataset_helpers import loaded
from trainer.dataset import DatasetCache

SLOW_TASK = "tests.gui.dataset_tasks:slow_captions"


@pytest.fixture(scope="module")
def tagger(tmp_path_factory) -> Path:
    return write_tagger(tmp_path_factory.mktemp("captioner") / "wd-tiny-tagger")


def snapshot(folder: Path) -> dict[str, bytes]:
    """Every file of the dataset folder but Kamaal's own edits (``.kamaal``)."""
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*"))
            if p.is_file() and ".kamaal" not in p.relative_to(folder).parts}


@pytest.fixture
def panel(qtbot, make_panel) -> DatasetPanel:
    """Four photos, the first two without a caption file."""
    panel = make_panel(images=4)
    folder = panel.dataset.folder
    assert folder is not None
    for name in ("photo 00.txt", "photo 01.txt"):
        (folder / name).unlink()
    panel.refresh()
    loaded(qtbot, panel, 4)
    qtbot.waitUntil(lambda: all(e.original.text or i < 2 for i, e in enumerate(panel.dataset.entries)))
    return panel


def dialog_for(qtbot, panel: DatasetPanel, model: Path, mode: str = "fill") -> CaptionDialog:
    dialog = panel.open_caption_dialog()
    qtbot.addWidget(dialog)
    dialog.model.setText(str(model))
    dialog.mode.setCurrentIndex(dialog.mode.findData(mode))
    return dialog


def finished(qtbot, panel: DatasetPanel) -> None:
    qtbot.waitUntil(lambda: not panel.auto_captioner.is_busy(), timeout=60_000)
    panel.dataset.flush()


def test_preview_writes_nothing_then_the_run_captions_the_chosen_images_and_one_undo_restores_them(
        qtbot, panel, tagger):
    folder = panel.dataset.folder
    files = snapshot(folder)
    captions = [entry.caption for entry in panel.dataset.entries]
    dialog = dialog_for(qtbot, panel, tagger)
    assert "tagger" in dialog.kind_label.text() and dialog.tagger_box.isVisibleTo(dialog)
    assert not dialog.model_box.isVisibleTo(dialog)
    assert dialog.prefix.text() == "sks, "  # the concept's instance token
    assert dialog.run_button.text() == "Caption 2 images"  # fill: only the two without a caption

    with qtbot.waitSignal(panel.auto_captioner.previewed, timeout=60_000) as previewed:
        assert dialog.preview()
    finished(qtbot, panel)
    shown = previewed.args[0]
    assert [image.name for image, _ in shown] == ["photo 00.jpg", "photo 01.jpg"]
    assert all(text.startswith("sks, ") and "^_^" in text for _, text in shown)  # the tagger's sure tag
    assert dialog.table.rowCount() == 2 and dialog.table.item(0, 1).text() == shown[0][1]
    assert [entry.caption for entry in panel.dataset.entries] == captions
    assert snapshot(folder) == files and not DatasetCache.for_folder(folder).all_captions()
    assert app_settings().value(MODEL_KEY) == str(tagger)  # remembered for the next time

    # Replace the captions of the selected images: one without a caption, one with.
    panel.select_rows([0, 2])
    dialog = dialog_for(qtbot, panel, tagger, "replace")
    assert dialog.model.text() == str(tagger) and dialog.only_selected.isChecked()
    dialog.blacklist.setText("blue sky")
    assert dialog.run_button.text() == "Caption 2 images"
    assert dialog.run()
    finished(qtbot, panel)
    entries = panel.dataset.entries
    new = {0: entries[0].caption, 2: entries[2].caption}
    assert all(text.startswith("sks, ") and "^_^" in text and "blue sky" not in text for text in new.values())
    assert new[0] == ", ".join(tag for tag in shown[0][1].split(", ") if tag != "blue sky")  # as previewed
    assert [entries[1].caption, entries[3].caption] == [captions[1], captions[3]]
    edits = DatasetCache.for_folder(folder)
    assert {path.name: caption.text for path, caption in edits.all_captions().items()} == {
        "photo 00.jpg": new[0], "photo 02.jpg": new[2]}  # what training and the health check read
    assert snapshot(folder) == files  # caption files and images untouched
    assert panel.undo_captioning.isVisibleTo(panel) and "(2)" in panel.undo_captioning.text()
    assert "captioned 2 images" in dialog.status.text()

    panel.editor.show_rows([2])
    assert "sks" in panel.editor.text.toPlainText() and "^_^" in panel.editor.text.toPlainText()
    dialog.undo()
    panel.dataset.flush()
    assert [entry.caption for entry in panel.dataset.entries] == captions
    assert not DatasetCache.for_folder(folder).all_captions() and snapshot(folder) == files
    assert not panel.undo_captioning.isVisibleTo(panel) and not dialog.undo_button.isEnabled()
    dialog.close()


def test_cancel_keeps_what_is_done_and_undo_spares_a_caption_edited_since(qtbot, panel, tagger):
    folder = panel.dataset.folder
    files = snapshot(folder)
    captions = [entry.caption for entry in panel.dataset.entries]
    panel.auto_captioner.task_name = SLOW_TASK
    dialog = dialog_for(qtbot, panel, tagger, "append")
    assert dialog.whole_concept.isChecked() and dialog.run_button.text() == "Caption 4 images"
    with qtbot.waitSignal(panel.auto_captioner.captioned, timeout=60_000):
        assert dialog.run()
    assert dialog.cancel_button.isVisibleTo(dialog) and dialog.progress.isVisibleTo(dialog)
    dialog.cancel_button.click()
    finished(qtbot, panel)
    done = [row for row, entry in enumerate(panel.dataset.entries) if entry.caption != captions[row]]
    assert 1 <= len(done) < 4 and done == list(range(len(done)))  # in order, stopped midway
    assert "Cancelled" in dialog.status.text() and "kept" in dialog.status.text()
    for row in done:  # appended after the caption there was
        caption = panel.dataset.entries[row].caption
        assert caption.startswith(f"{captions[row]}, sks, " if captions[row] else "sks, ")
    assert len(DatasetCache.for_folder(folder).all_captions()) == len(done)
    assert snapshot(folder) == files

    dialog.close()  # the page keeps the undo
    panel.dataset.set_captions({0: "typed by hand"})  # edited after the batch: undo leaves it
    assert panel.undo_captioning.isVisibleTo(panel)
    panel.undo_captioning.click()
    panel.dataset.flush()
    assert panel.dataset.entries[0].caption == "typed by hand"
    assert [entry.caption for entry in panel.dataset.entries][1:] == captions[1:]
    assert f"{len(done) - 1} caption" in panel.toolbar.counts.text() and "1 edited since kept" in \
        panel.toolbar.counts.text()
    assert not panel.undo_captioning.isVisibleTo(panel)


def test_a_folder_that_is_not_a_captioner_is_named_before_anything_runs(qtbot, panel, tmp_path):
    empty = tmp_path / "not-a-model"
    empty.mkdir()
    dialog = dialog_for(qtbot, panel, empty)
    assert "is not a captioner" in dialog.kind_label.text() and str(empty) in dialog.kind_label.text()
    assert not dialog.run_button.isEnabled() and not dialog.preview_button.isEnabled()
    half = tmp_path / "half-tagger"
    half.mkdir()
    (half / "model.onnx").write_bytes(b"onnx")
    dialog.model.setText(str(half))
    assert "no selected_tags.csv" in dialog.kind_label.text() and not dialog.run_button.isEnabled()
    (half / "selected_tags.csv").write_text("tag_id,name,category,count\n", encoding="utf-8")
    (half / "model.onnx").write_bytes(b"not an onnx file")
    dialog.model.clear()
    dialog.model.setText(str(half))
    assert dialog.preview_button.isEnabled()  # the file names say tagger: the task itself finds it broken
    with qtbot.waitSignal(panel.auto_captioner.finished, timeout=60_000) as failed:
        dialog.preview()
    finished(qtbot, panel)
    assert failed.args[0].startswith("Captioning model: ") and str(half) in failed.args[0]
    assert "Traceback" not in failed.args[0]
    dialog.close()

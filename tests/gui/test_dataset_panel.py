"""The Dataset page: import, thumbnails, captions with autosave, bulk edits, removal, crop, health, class images.

Every test builds a project (the DreamBooth preset, so the class-image section shows) and a panel
on it; the fixture shuts each panel down, so no worker thread or task process outlives a test.
"""

from __future__ import annotations

import shutil

from PySide6.QtCore import QMimeData, QPoint, QPointF, Qt, QUrl
from PySide6.QtGui import QDropEvent

from desktop_app.dataset import DatasetPanel
from tests.dataset.conftest import BAD, write_corpus
from tests.gui.dataset_helpers import loaded, photos
from trainer.dataset import CLIP_USABLE_TOKENS, DatasetCache


def checked(qtbot, panel: DatasetPanel) -> None:
    qtbot.waitUntil(lambda: bool(panel.dataset.report_summary), timeout=30_000)


def row_named(panel: DatasetPanel, name: str) -> int:
    return next(row for row, entry in enumerate(panel.dataset.entries) if entry.path.name == name)


# ------------------------------------------------------------------ import

def test_importing_a_folder_copies_it_into_the_project_and_leaves_the_originals(qtbot, make_panel, tmp_path):
    panel = make_panel(["dataset.path="])
    source = photos(tmp_path / "my photos", 4)
    before = {p.name: p.read_bytes() for p in source.iterdir()}
    assert panel.import_paths([source])
    loaded(qtbot, panel, 4)
    assert panel.model.value("dataset.path") == "datasets/subject"
    copied = panel.project.root / "datasets" / "subject"
    assert sorted(p.name for p in copied.iterdir() if p.suffix == ".jpg") == sorted(
        p.name for p in source.iterdir() if p.suffix == ".jpg")
    assert {p.name: p.read_bytes() for p in source.iterdir()} == before
    assert panel.dataset.editable and "Imported 4 images" in panel.toolbar.counts.text()


def test_files_dropped_on_the_grid_are_imported(qtbot, make_panel, tmp_path):
    panel = make_panel(images=2)
    loaded(qtbot, panel, 2)
    source = photos(tmp_path / "more", 3, seed=300)
    mime = QMimeData()
    mime.setUrls([QUrl.fromLocalFile(str(source / "photo 00.jpg")), QUrl.fromLocalFile(str(source / "photo 01.jpg"))])
    event = QDropEvent(QPointF(20, 20), Qt.DropAction.CopyAction, mime, Qt.MouseButton.LeftButton,
                       Qt.KeyboardModifier.NoModifier)
    panel.grid.dropEvent(event)
    loaded(qtbot, panel, 4)  # "photo 00.jpg" was taken by a different picture: the copy is renamed
    names = {entry.path.name for entry in panel.dataset.entries}
    assert {"photo 00-2.jpg", "photo 01-2.jpg"} <= names


def test_a_folder_outside_the_project_is_read_only_until_copied_in(qtbot, make_panel, tmp_path):
    outside = photos(tmp_path / "elsewhere", 3)
    panel = make_panel([f"dataset.path={outside}"])
    loaded(qtbot, panel, 3)
    assert not panel.dataset.editable and panel.outside.isVisibleTo(panel)
    panel.select_rows([0])
    assert panel.editor.text.isReadOnly()
    assert not panel.bulk.apply.isEnabled() and not panel.toolbar.remove.isEnabled()
    panel.dataset.set_captions({0: "never written"})  # the model refuses too
    assert not (outside / ".kamaal").exists()
    panel.copy_in.click()
    qtbot.waitUntil(lambda: panel.model.value("dataset.path") == "datasets/elsewhere", timeout=10_000)
    loaded(qtbot, panel, 3)
    assert panel.dataset.editable and not panel.outside.isVisibleTo(panel)


def test_thumbnails_load_lazily_and_are_cached_in_the_project(qtbot, make_panel):
    panel = make_panel(images=6)
    panel.show()
    loaded(qtbot, panel, 6)
    qtbot.waitUntil(lambda: panel.grid_model.loaded_count() == 6, timeout=15_000)
    cache = panel.project.root / "cache" / "thumbnails"
    assert len(list(cache.rglob("*.png"))) == 6


# ------------------------------------------------------------------ captions

def test_a_caption_edit_is_saved_automatically_to_the_project_not_beside_the_image(qtbot, make_panel):
    panel = make_panel(images=3)
    loaded(qtbot, panel, 3)
    panel.select_rows([1])
    image = panel.dataset.entries[1].path
    assert panel.editor.text.toPlainText() == "a photo of sks dog, shot 1"
    panel.editor.text.setPlainText("a photo of sks dog, sitting")
    edited = DatasetCache.for_folder(image.parent).caption_path(image)
    assert panel.editor.timer.isActive() and not edited.exists()  # debounced: nothing written mid-typing
    qtbot.waitUntil(lambda: edited.is_file(), timeout=5_000)
    assert edited.read_text(encoding="utf-8").strip() == "a photo of sks dog, sitting"
    assert image.with_suffix(".txt").read_text(encoding="utf-8") == "a photo of sks dog, shot 1"
    qtbot.waitUntil(lambda: panel.editor.status.text() == "saved", timeout=5_000)
    assert panel.editor.revert.isVisibleTo(panel)
    assert "edited in Kamaal" in panel.editor.title.text()  # no longer "from photo 01.txt"
    panel.editor.revert.click()
    panel.dataset.flush()
    assert not edited.exists() and panel.editor.text.toPlainText() == "a photo of sks dog, shot 1"
    assert "from photo 01.txt" in panel.editor.title.text()


def test_switching_images_saves_the_pending_edit_at_once(qtbot, make_panel):
    panel = make_panel(images=2)
    loaded(qtbot, panel, 2)
    panel.select_rows([0])
    panel.editor.text.setPlainText("quick edit")
    panel.select_rows([1])
    assert panel.dataset.entries[0].edited == "quick edit"


def test_the_token_counter_warns_past_clips_limit(qtbot, make_panel):
    panel = make_panel(images=1)
    loaded(qtbot, panel, 1)
    qtbot.waitUntil(lambda: panel.dataset.tokenizer is not None, timeout=10_000)
    panel.select_rows([0])
    assert not panel.editor.tokens.property("over")
    panel.editor.text.setPlainText(" ".join(["sks dog running on the beach"] * 14))
    assert panel.editor.tokens.property("over")
    assert "cut off" in panel.editor.tokens.text() and f"/ {CLIP_USABLE_TOKENS} tokens" in panel.editor.tokens.text()
    assert not panel.editor.tokens.text().startswith("≈")  # exact: the CLIP vocabulary was loaded


# ------------------------------------------------------------------ bulk operations and removal

def test_bulk_operations_change_only_the_selected_captions(qtbot, make_panel):
    panel = make_panel(images=4)
    loaded(qtbot, panel, 4)
    panel.select_rows([0, 2])
    assert panel.bulk.apply.text() == "Apply to 2 selected"
    bulk = panel.bulk
    bulk.operation.setCurrentIndex(bulk.operation.findData("remove_token"))
    assert bulk.value.text() == "sks"
    assert bulk.apply_to_selection() == 2
    bulk.operation.setCurrentIndex(bulk.operation.findData("replace"))
    bulk.value.setText("dog")
    bulk.with_text.setText("cat")
    bulk.apply_to_selection()
    bulk.operation.setCurrentIndex(bulk.operation.findData("suffix"))
    bulk.value.setText("studio light")
    bulk.apply_to_selection()
    captions = [entry.caption for entry in panel.dataset.entries]
    assert captions[0] == "a photo of cat, shot 0, studio light"
    assert captions[1] == "a photo of sks dog, shot 1"
    assert captions[2] == "a photo of cat, shot 2, studio light"
    panel.dataset.flush()
    edits = DatasetCache.for_folder(panel.dataset.folder)
    assert edits.read_caption(panel.dataset.entries[2].path).text == "a photo of cat, shot 2, studio light"
    assert edits.read_caption(panel.dataset.entries[1].path) is None


def test_removing_images_keeps_the_files_and_can_be_undone(qtbot, make_panel):
    panel = make_panel(images=3)
    loaded(qtbot, panel, 3)
    gone = panel.dataset.entries[1].path
    panel.select_rows([1])
    panel.toolbar.remove.click()
    assert [e.path.name for e in panel.dataset.entries] == ["photo 00.jpg", "photo 02.jpg"]
    assert gone.is_file() and panel.toolbar.restore.isVisibleTo(panel)
    panel.dataset.flush()
    assert DatasetCache.for_folder(gone.parent).removed() == {gone}
    panel.toolbar.restore.click()
    loaded(qtbot, panel, 3)


# ------------------------------------------------------------------ crop

def test_dragging_a_crop_rectangle_stores_the_crop_in_the_project(qtbot, make_panel):
    panel = make_panel(images=2)
    panel.show()
    loaded(qtbot, panel, 2)
    qtbot.waitUntil(lambda: panel.dataset.entries[0].size is not None, timeout=10_000)
    panel.tabs.setCurrentWidget(panel.crop)
    panel.select_rows([0])
    canvas = panel.crop.canvas
    qtbot.waitUntil(lambda: canvas.pixmap is not None, timeout=10_000)
    image = panel.dataset.entries[0].path
    before = image.read_bytes()
    frame = canvas._frame()
    start = QPoint(int(frame.left() + frame.width() * 0.1), int(frame.top() + frame.height() * 0.1))
    end = QPoint(int(frame.left() + frame.width() * 0.6), int(frame.top() + frame.height() * 0.9))
    qtbot.mousePress(canvas, Qt.MouseButton.LeftButton, pos=start)
    qtbot.mouseMove(canvas, end)
    qtbot.mouseRelease(canvas, Qt.MouseButton.LeftButton, pos=end)
    crop = panel.dataset.entries[0].crop
    assert crop is not None and crop.size == (320, 256)
    left, top, right, bottom = crop.box
    assert abs(left - 32) <= 2 and abs(top - 26) <= 2 and abs(right - 192) <= 2 and abs(bottom - 230) <= 2
    panel.dataset.flush()
    assert DatasetCache.for_folder(image.parent).read_crop(image) == crop
    assert image.read_bytes() == before
    assert panel.crop.info.text().startswith(f"Crop {right - left}×{bottom - top} → bucket ")
    # Drag inside the rectangle: it moves, same size.
    inside = QPoint(int(frame.left() + frame.width() * 0.3), int(frame.top() + frame.height() * 0.5))
    qtbot.mousePress(canvas, Qt.MouseButton.LeftButton, pos=inside)
    qtbot.mouseRelease(canvas, Qt.MouseButton.LeftButton, pos=inside + QPoint(20, 0))
    moved = panel.dataset.entries[0].crop
    assert moved is not None and moved.box[0] > left and moved.box[2] - moved.box[0] == right - left
    panel.crop.reset.click()
    panel.dataset.flush()
    assert panel.dataset.entries[0].crop is None and DatasetCache.for_folder(image.parent).read_crop(image) is None


# ------------------------------------------------------------------ health

def test_broken_files_are_named_the_panel_stays_up_and_clicking_a_finding_jumps_to_the_image(qtbot, make_panel):
    panel = make_panel()
    write_corpus(panel.project.root / "datasets" / "subject")
    panel.refresh()
    loaded(qtbot, panel, 26)
    panel.show()
    checked(qtbot, panel)
    errors = {f.file.name for f in panel.dataset.findings if f.severity == "error"}
    assert set(BAD) <= errors
    for name in BAD:
        assert panel.dataset.entries[row_named(panel, name)].worst == "error"
    # The grid survives the broken thumbnails; the problems filter keeps only images with problems.
    panel.toolbar.problems.setChecked(True)
    shown = {panel.grid_model.index(r).data() for r in range(panel.grid_model.rowCount())}
    assert set(BAD) <= shown and "good one.jpg" not in shown
    # Clicking a finding selects its image, even when the filter hid it.
    panel.tabs.setCurrentWidget(panel.findings)
    items = panel.findings.list
    target = next(i for i in range(items.count()) if "rotated.jpg" in items.item(i).text())
    items.scrollToItem(items.item(target))
    rect = items.visualItemRect(items.item(target))
    qtbot.mouseClick(items.viewport(), Qt.MouseButton.LeftButton, pos=rect.center())
    assert panel.selected_rows() == [row_named(panel, "rotated.jpg")]
    assert not panel.toolbar.problems.isChecked()  # an info finding: the filter was lifted to show it
    assert panel.editor.title.text().startswith("<b>rotated.jpg</b>")


def test_toy_mode_says_no_images_are_needed(qtbot, make_panel):
    panel = make_panel(["model.architecture=toy", "mode=toy"])
    assert panel.pages.currentWidget() is panel.toy_note
    assert "No images needed" in panel.toy_note.note.text()


# ------------------------------------------------------------------ class images

def test_the_class_images_button_generates_the_missing_ones_with_progress(qtbot, make_panel):
    panel = make_panel(images=1)
    box = panel.class_images
    qtbot.waitUntil(lambda: box.generate.text() == "Generate 3", timeout=10_000)
    assert "0 of 3" in box.status.text()
    progress: list[int] = []
    box.runner.progress.connect(lambda event: progress.append(event.done))
    with qtbot.waitSignal(box.runner.busyChanged, timeout=60_000, check_params_cb=lambda busy: not busy):
        box.generate.click()
        assert box.cancel.isVisibleTo(panel) and not box.generate.isVisibleTo(panel)
    assert progress == [1, 2, 3]
    assert panel.model.value("dreambooth.class_dir") == "datasets/class"
    assert len(list((panel.project.root / "datasets" / "class").glob("*.png"))) == 3
    qtbot.waitUntil(lambda: "3 of 3" in box.status.text(), timeout=10_000)
    assert "Generated 3 class images" in box.status.text() and not box.generate.isEnabled()


def test_generating_class_images_can_be_cancelled(qtbot, make_panel):
    panel = make_panel(["dreambooth.num_class_images=200"])
    box = panel.class_images
    with qtbot.waitSignal(box.runner.progress, timeout=60_000):
        box.start()
    with qtbot.waitSignal(box.runner.busyChanged, timeout=30_000, check_params_cb=lambda busy: not busy):
        box.cancel.click()
    qtbot.waitUntil(lambda: "Cancelled" in box.status.text(), timeout=10_000)
    made = len(list((panel.project.root / "datasets" / "class").glob("*.png")))
    assert 1 <= made < 200


def test_the_main_window_shows_the_dataset_page_of_its_project(qtbot, make_window, make_project):
    project = make_project(["dataset.path=datasets/subject"], "sd15-dreambooth")
    photos(project.root / "datasets" / "subject", 2)
    window = make_window(project=project)
    panel = window.dataset_panel
    assert window.pages.widget(0) is window.dataset_page and window.dataset_page.page() is panel
    assert panel.objectName() == "datasetPanel"
    loaded(qtbot, panel, 2)
    assert panel.dataset.editable
    window.close()
    shutil.rmtree(project.root / "datasets")


def test_the_bucket_preview_follows_the_training_settings(qtbot, make_panel):
    panel = make_panel(images=3)  # 320×256, 336×256, 352×256: landscape
    loaded(qtbot, panel, 3)
    qtbot.waitUntil(lambda: all(e.size for e in panel.dataset.entries), timeout=10_000)
    counts = panel.buckets.counts()
    assert sum(counts.values()) == 3 and all(w > h for w, h in counts)
    panel.model.set_value("dataset.bucketing", False)
    assert panel.buckets.counts() == {(512, 512): 3}
    assert "3 usable images in 1 bucket at 512 px" in panel.buckets.summary.text()
    # An image the check found unusable takes no place in a bucket: training skips it.
    from trainer.dataset.report import Code, Finding, Severity

    first = panel.dataset.entries[0]
    first.findings = [Finding(first.path, Code.UNREADABLE, Severity.ERROR, "cannot be read")]
    panel.buckets.refresh()
    assert panel.buckets.counts() == {(512, 512): 2} and "2 usable images" in panel.buckets.summary.text()


def test_the_caption_editor_shows_what_training_sees_when_captions_are_varied(qtbot, make_panel):
    panel = make_panel(images=1)
    loaded(qtbot, panel, 1)
    panel.select_rows([0])
    assert not panel.editor.training_view.isVisibleTo(panel)  # nothing varied: the caption is what training sees
    panel.model.set_value("dataset.shuffle_tags", True)
    panel.model.set_value("dataset.keep_tags", 1)
    panel.editor.text.setPlainText("sks, dog, red collar, grass, sunny")
    caption = panel.editor.text.toPlainText()
    assert panel.editor.training_view.isVisibleTo(panel) and panel.editor.another_draw.isVisibleTo(panel)
    draws = set()
    for _ in range(12):
        shown = panel.editor.training_view.text()
        drawn = shown.split("<i>")[1].split("</i>")[0]
        assert drawn.split(", ")[0] == caption.split(", ")[0]  # the kept tag stays first
        assert sorted(drawn.split(", ")) == sorted(caption.split(", "))  # the same tags, reordered
        draws.add(drawn)
        panel.editor.another_draw.click()
    assert len(draws) > 1
    panel.model.set_value("dataset.caption_dropout", 0.5)
    texts = set()
    for _ in range(12):
        texts.add(panel.editor.training_view.text())
        panel.editor.another_draw.click()
    assert any("no caption" in text for text in texts)

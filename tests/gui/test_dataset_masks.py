"""Painting a loss mask on the Dataset page's crop view: strokes, undo and clear write NAME.mask.png beside the
project's copy of the image (never the image), and the page reads the mask back."""

from __future__ import annotations

from PIL import Image
from PySide6.QtCore import QPoint, Qt

from tests.gui.dataset_helpers import loaded


def _stroke(qtbot, canvas, start: tuple[float, float], end: tuple[float, float]) -> None:
    frame = canvas._frame()

    def at(point: tuple[float, float]) -> QPoint:
        return QPoint(int(frame.left() + frame.width() * point[0]), int(frame.top() + frame.height() * point[1]))

    qtbot.mousePress(canvas, Qt.MouseButton.LeftButton, pos=at(start))
    qtbot.mouseMove(canvas, at(((start[0] + end[0]) / 2, (start[1] + end[1]) / 2)))
    qtbot.mouseRelease(canvas, Qt.MouseButton.LeftButton, pos=at(end))


def test_painting_erasing_undo_and_clear_write_the_mask_file_beside_the_image(qtbot, make_panel):
    panel = make_panel(images=2)
    panel.show()
    loaded(qtbot, panel, 2)
    qtbot.waitUntil(lambda: panel.dataset.entries[0].size is not None, timeout=10_000)
    panel.tabs.setCurrentWidget(panel.crop)
    panel.select_rows([0])
    view, canvas = panel.crop, panel.crop.canvas
    qtbot.waitUntil(lambda: canvas.pixmap is not None, timeout=10_000)
    image = panel.dataset.entries[0].path
    before = image.read_bytes()
    mask_file = image.with_name(image.stem + ".mask.png")

    view.findChild(type(view.reset), "paintTool").click()
    _stroke(qtbot, canvas, (0.1, 0.5), (0.9, 0.5))  # a horizontal band across the middle trains
    panel.dataset.flush()
    mask = Image.open(mask_file)
    assert mask.mode == "L" and mask.size == (320, 256)  # the image's own size
    assert mask.getpixel((160, 128)) == 255 and mask.getpixel((160, 10)) == 0 and mask.getpixel((5, 128)) == 0
    assert panel.dataset.entries[0].mask == mask_file and image.read_bytes() == before
    assert "not used while Masked loss is off" in view.info.text()
    panel.model.set_value("dataset.masked_loss", True)
    assert "Mask photo 00.mask.png: training ignores the tinted parts" in view.info.text()
    assert panel.grid_model.tile(0).masked and not panel.grid_model.tile(1).masked  # the tile's mask disc

    view.findChild(type(view.reset), "eraseTool").click()
    _stroke(qtbot, canvas, (0.5, 0.3), (0.5, 0.7))  # a vertical cut through the band is ignored again
    panel.dataset.flush()
    assert Image.open(mask_file).getpixel((160, 128)) == 0 and Image.open(mask_file).getpixel((60, 128)) == 255

    view.undo.click()
    panel.dataset.flush()
    assert Image.open(mask_file).getpixel((160, 128)) == 255
    view.clear.click()
    panel.dataset.flush()
    assert not mask_file.exists() and panel.dataset.entries[0].mask is None
    assert not panel.grid_model.tile(0).masked
    assert "No mask: all of it trains" in view.info.text()
    view.undo.click()
    panel.dataset.flush()
    assert Image.open(mask_file).getpixel((160, 128)) == 255

    # Another image and back: the mask is read from the file and shown.
    panel.select_rows([1])
    qtbot.waitUntil(lambda: canvas.layer.mask is None and canvas.mask_ready, timeout=10_000)
    panel.select_rows([0])
    qtbot.waitUntil(lambda: canvas.layer.mask is not None, timeout=10_000)
    assert canvas.layer.mask.pixelColor(160, 128).value() == 255 and canvas.layer.mask.pixelColor(160, 10).value() == 0
    assert not view.undo.isEnabled()  # the history belonged to the visit before
    assert image.read_bytes() == before


def test_sizes_announced_again_keep_the_mask_being_painted(qtbot, make_panel):
    panel = make_panel(images=1)
    panel.show()
    loaded(qtbot, panel, 1)
    qtbot.waitUntil(lambda: panel.dataset.entries[0].size is not None, timeout=10_000)
    panel.tabs.setCurrentWidget(panel.crop)
    panel.select_rows([0])
    view, canvas = panel.crop, panel.crop.canvas
    qtbot.waitUntil(lambda: canvas.pixmap is not None and canvas.mask_ready, timeout=10_000)
    view.findChild(type(view.reset), "eraseTool").click()
    _stroke(qtbot, canvas, (0.2, 0.5), (0.8, 0.5))
    painted = canvas.layer.mask
    panel.dataset.sizesChanged.emit()  # as while a big folder's headers arrive; the write may not have landed
    assert canvas.layer.mask is painted and view.undo.isEnabled()

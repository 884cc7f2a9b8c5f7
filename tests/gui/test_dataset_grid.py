"""The thumbnail grid's model: thumbnails that arrive together are announced together, every row still
shows its own, and the held thumbnails are bounded (a dropped one is asked for again when painted)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from PySide6.QtCore import QObject, Qt, Signal
from PySide6.QtGui import QColor, QImage, QPixmap

from desktop_app.dataset import grid
from desktop_app.dataset.grid import ThumbnailListModel
from desktop_app.dataset.model import DatasetModel, Entry
from trainer.dataset.captions import Caption, CaptionStatus


class FakeLoader(QObject):
    ready = Signal(str, QImage)
    failed = Signal(str, str)

    def __init__(self) -> None:
        super().__init__()
        self.requested: list[str] = []

    def request(self, path: str) -> None:
        self.requested.append(path)

    def forget_pending(self) -> None:
        pass


def image(shade: int) -> QImage:
    picture = QImage(16, 12, QImage.Format.Format_RGB888)
    picture.fill(QColor(shade, shade, shade))
    return picture


@pytest.fixture
def rows(qtbot) -> Iterator[tuple[DatasetModel, FakeLoader, ThumbnailListModel]]:
    dataset = DatasetModel()
    loader = FakeLoader()
    model = ThumbnailListModel(dataset, loader)
    missing = Caption(None, CaptionStatus.MISSING)
    dataset._set_entries([Entry(Path(f"/nowhere/img-{i}.jpg"), missing) for i in range(50)], 0)
    yield dataset, loader, model
    dataset.shutdown()


def test_thumbnails_arriving_together_are_announced_once_and_each_row_shows_its_own(qtbot, rows):
    dataset, loader, model = rows
    assert model.rowCount() == 50 and model.tile(0).pixmap is None
    assert loader.requested == [str(dataset.entries[0].path)]  # asked for when first painted
    changes: list[tuple[int, int]] = []
    model.dataChanged.connect(lambda first, last, _roles=None: changes.append((first.row(), last.row())))
    for row in (3, 40, 7):
        loader.ready.emit(str(dataset.entries[row].path), image(row))
    assert changes == []  # not one repaint per thumbnail
    qtbot.waitUntil(lambda: bool(changes), timeout=2_000)
    assert changes == [(3, 40)]
    for row in (3, 7, 40):
        pixmap = model.data(model.index(row), Qt.ItemDataRole.DecorationRole)
        assert isinstance(pixmap, QPixmap) and pixmap.size().width() == 16
        assert pixmap.toImage().pixelColor(0, 0).red() == row
    assert model.tile(5) is not None and model.tile(5).pixmap is None
    assert model.tile(50) is None
    assert model.loaded_count() == 3


def test_held_thumbnails_are_bounded_and_a_dropped_one_is_asked_for_again(qtbot, rows, monkeypatch):
    dataset, loader, model = rows
    monkeypatch.setattr(grid, "KEEP_THUMBNAILS", 3)
    paths = [str(entry.path) for entry in dataset.entries]
    for row in range(5):
        loader.ready.emit(paths[row], image(row))
    assert model.loaded_count() == 3
    loader.requested.clear()
    assert model.tile(0).pixmap is None and loader.requested == [paths[0]]  # dropped first, asked for again
    assert model.tile(4).pixmap is not None

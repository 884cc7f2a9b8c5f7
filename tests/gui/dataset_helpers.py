"""Helpers for tests of the Dataset page: pictures with captions, waiting for the grid, the fake
class-image task (``tests/gui/dataset_tasks.py``); the ``make_panel`` fixture is in ``conftest.py``."""

from __future__ import annotations

from pathlib import Path

from desktop_app.dataset import DatasetPanel
from tests.dataset.conftest import picture

FAKE_TASK = "tests.gui.dataset_tasks:fake_class_images"


def photos(folder: Path, count: int, captions: bool = True, seed: int = 200) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(count):
        picture(seed + i, 320 + 16 * (i % 3), 256).save(folder / f"photo {i:02d}.jpg", quality=85)
        if captions:
            (folder / f"photo {i:02d}.txt").write_text(f"a photo of sks dog, shot {i}", encoding="utf-8")
    return folder


def loaded(qtbot, panel: DatasetPanel, count: int) -> None:
    qtbot.waitUntil(lambda: len(panel.dataset.entries) == count, timeout=10_000)

"""How many images the dataset has, for the memory plan's caches (issue 24), without the Dataset page open.

The Dataset page counts every concept's usable images into the :class:`ConceptStore` once it is built; until then
:class:`ImageCounter` counts the folders the store has no count for (the same ``count_usable``: images listed by
name, Pillow-free, less the ones removed on the Dataset page) and records them in the store, as that page would.
:func:`dataset_images` reads the total the Memory box plans with: 0 while any concept is uncounted, which the plan
reads as "unknown" (its caches are then left as they are, and it says so).

Threads: GUI thread; the listing runs on a :class:`~desktop_app.dataset.background.Background` worker thread.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from functools import partial
from pathlib import Path

from PySide6.QtCore import QObject

from desktop_app.dataset.background import Background, Report
from desktop_app.dataset.concept_store import ConceptStore


def _count_usable(folder: Path, report: Report, cancelled: threading.Event) -> int | None:
    """On the worker thread: the Dataset page's own count, imported there (the window opens without the Dataset
    page's modules)."""
    from desktop_app.dataset import jobs

    return jobs.count_usable(folder, report, cancelled)


def dataset_images(store: ConceptStore) -> int:
    """Every concept's images together, once every concept is counted (0: not known yet)."""
    counts = store.counts
    return sum(counts.values()) if store.count() and len(counts) == store.count() else 0


class ImageCounter(QObject):
    def __init__(self, store: ConceptStore, project_root: Callable[[], Path | None],
                 parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.store, self.project_root = store, project_root
        self.background = Background(self, threads=1)
        self._counting: set[Path] = set()
        self._folders: tuple[Path | None, ...] = ()  # the concepts' folders when last counted

    def folder_of(self, index: int) -> Path | None:
        value = str(self.store.value("path", index) or "")
        if not value:
            return None
        path = Path(value).expanduser()
        root = self.project_root()
        return path if path.is_absolute() or root is None else root / path

    def count_missing(self) -> None:
        """Count each concept the store has no count for (a folder that is not there stays uncounted); when the
        concepts' folders changed (one added, removed or moved), every count is stale and taken again."""
        folders = tuple(self.folder_of(index) for index in range(self.store.count()))
        if folders != self._folders:
            self._folders = folders
            self.store.clear_counts()
        for index in range(self.store.count()):
            folder = self.folder_of(index)
            if index in self.store.counts or folder is None or folder in self._counting:
                continue
            self._counting.add(folder)
            self.background.run(partial(_count_usable, folder),
                                lambda count, index=index, folder=folder: self._counted(index, folder, count),
                                lambda _error, folder=folder: self._counting.discard(folder))

    def _counted(self, index: int, folder: Path, count: int | None) -> None:
        self._counting.discard(folder)
        if index < self.store.count() and self.folder_of(index) == folder:  # still that concept's folder
            self.store.set_count(index, count)

    def shutdown(self) -> None:
        self.background.shutdown()

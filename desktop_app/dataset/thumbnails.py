"""Thumbnails for the grid: made in worker processes, cached on disk, most recently asked for first.

``ThumbnailLoader.request(path)`` is called by the grid's model when a view paints an item, so
only what is on screen is ever loaded.  Requests go on a stack (the newest — what the user is
looking at now — first) and at most ``in_flight`` load at a time, so scrolling fast through a
thousand images never queues a thousand decodes.

Processes and threads:
  * worker processes (``Processes``): ``jobs.thumbnail`` — Pillow decodes (JPEG at reduced
    scale) or reads the disk cache (``jobs`` describes it), and sends back a small RGB image.
  * GUI thread: everything else; the RGB image becomes a ``QImage`` here (a copy of 48 KB), and
    ``ready(path, QImage)`` and ``failed(path, message)`` are emitted here.
"""

from __future__ import annotations

from functools import partial
from pathlib import Path

from PIL import Image
from PySide6.QtCore import QObject, Signal
from PySide6.QtGui import QImage

from desktop_app.dataset.jobs import THUMB_SIZE, thumbnail
from desktop_app.dataset.processes import Processes
from trainer.dataset import DatasetImageError

__all__ = ["THUMB_SIZE", "ThumbnailLoader", "rgb_qimage"]
PRIORITY = 2  # what the user is looking at goes before listing (1) and the rest (0)


def rgb_qimage(image: Image.Image) -> QImage:
    """An RGB Pillow image as a ``QImage`` of its own (copied pixels, no PNG round trip)."""
    rgb = image if image.mode == "RGB" else image.convert("RGB")
    pixels = rgb.tobytes()
    width, height = rgb.size
    return QImage(pixels, width, height, 3 * width, QImage.Format.Format_RGB888).copy()


class ThumbnailLoader(QObject):
    """Loads thumbnails on request, newest request first (see the module docstring)."""

    ready = Signal(str, QImage)
    failed = Signal(str, str)

    def __init__(self, processes: Processes, cache_dir: Path | None = None, *, in_flight: int = 2,
                 parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.processes = processes
        self.cache_dir = cache_dir
        self.in_flight = in_flight
        self._stack: list[str] = []
        self._queued: set[str] = set()
        self._running: set[str] = set()

    def request(self, path: str) -> None:
        """Ask for ``path``'s thumbnail; asking again moves it to the front."""
        if path in self._running:
            return
        if path in self._queued:
            self._stack.remove(path)
        self._queued.add(path)
        self._stack.append(path)
        self._pump()

    def forget_pending(self) -> None:
        """Drop requests that have not started (a new folder was opened)."""
        self._stack.clear()
        self._queued.clear()

    def pending(self) -> int:
        return len(self._stack) + len(self._running)

    def _pump(self) -> None:
        while self._stack and len(self._running) < self.in_flight:
            path = self._stack.pop()
            self._queued.discard(path)
            self._running.add(path)
            self.processes.run(partial(thumbnail, Path(path), self.cache_dir, THUMB_SIZE),
                               lambda image, path=path: self._done(path, rgb_qimage(image)),
                               lambda error, path=path: self._failed(path, error), priority=PRIORITY)

    def _done(self, path: str, image: QImage) -> None:
        self._running.discard(path)
        self.ready.emit(path, image)
        self._pump()

    def _failed(self, path: str, error: BaseException) -> None:
        self._running.discard(path)
        reason = error.reason if isinstance(error, DatasetImageError) else str(error)
        self.failed.emit(path, reason)
        self._pump()

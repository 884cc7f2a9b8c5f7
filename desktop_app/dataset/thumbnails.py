"""Thumbnails for the grid: made on worker threads, cached on disk, most recently asked for first.

``ThumbnailLoader.request(path)`` is called by the grid's model when a view paints an item, so
only what is on screen is ever loaded.  Requests go on a stack (the newest — what the user is
looking at now — first) and at most ``threads`` load at a time, so scrolling fast through a
thousand images never queues a thousand decodes.

Threads:
  * worker threads (``Background``): ``load_or_make`` — Pillow decodes (JPEG at reduced scale),
    writes the disk cache atomically and builds a ``QImage`` (allowed off the GUI thread; a
    ``QPixmap`` is not).
  * GUI thread: everything else; ``ready(path, QImage)`` and ``failed(path, message)`` are emitted
    here.

Disk cache: ``CACHE/ab/<sha1>.png``, the hash covering the image's path, size and modification
time and the thumbnail size, so a changed file gets a new thumbnail and nothing goes stale.
Written through a temp file and a rename, without fsync: it is only a cache.
"""

from __future__ import annotations

import hashlib
import io
import os
import tempfile
import threading
from pathlib import Path

from PIL import Image
from PySide6.QtCore import QObject, Signal
from PySide6.QtGui import QImage

from desktop_app.dataset.background import Background, Report
from trainer.dataset import DatasetImageError, load_thumbnail

THUMB_SIZE = 128


def cache_file(cache_dir: Path, image: Path, size: int = THUMB_SIZE) -> Path:
    stat = image.stat()
    key = hashlib.sha1(f"{image.resolve()}|{stat.st_size}|{stat.st_mtime_ns}|{size}".encode()).hexdigest()
    return cache_dir / key[:2] / f"{key}.png"


def _write_cache(path: Path, data: bytes) -> None:
    """Temp file + rename, so a reader never sees half a PNG; no fsync: it is a cache, a lost file is remade."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def load_or_make(image: Path, cache_dir: Path | None, size: int = THUMB_SIZE) -> QImage:
    """The thumbnail of ``image`` as a ``QImage`` (worker thread); raises ``DatasetImageError``/``OSError``."""
    cached = cache_file(cache_dir, image, size) if cache_dir is not None else None
    if cached is not None and cached.is_file():
        loaded = QImage(str(cached))
        if not loaded.isNull():
            return loaded
    thumb = load_thumbnail(image, size)
    if cached is not None:
        buffer = io.BytesIO()
        thumb.save(buffer, format="PNG", compress_level=1)
        try:
            _write_cache(cached, buffer.getvalue())
        except OSError:
            pass  # a read-only or full disk costs speed next time, nothing else
    return rgb_qimage(thumb)


def rgb_qimage(image: Image.Image) -> QImage:
    """An RGB Pillow image as a ``QImage`` of its own (copied pixels, no PNG round trip).

    Not ``QImage.loadFromData``: PySide keeps the GIL while Qt decodes, and every such millisecond on a
    worker is one the GUI thread may wait to paint."""
    rgb = image if image.mode == "RGB" else image.convert("RGB")
    pixels = rgb.tobytes()
    width, height = rgb.size
    return QImage(pixels, width, height, 3 * width, QImage.Format.Format_RGB888).copy()


class ThumbnailLoader(QObject):
    """Loads thumbnails on request, newest request first (see the module docstring)."""

    ready = Signal(str, QImage)
    failed = Signal(str, str)

    def __init__(self, background: Background, cache_dir: Path | None = None, *, in_flight: int = 2,
                 parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.background = background
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
            def work(_report: Report, _cancelled: threading.Event, path: str = path,
                     cache_dir: Path | None = self.cache_dir) -> QImage:
                return load_or_make(Path(path), cache_dir)

            self.background.run(work, lambda image, path=path: self._done(path, image),
                                lambda error, path=path: self._failed(path, error))

    def _done(self, path: str, image: QImage) -> None:
        self._running.discard(path)
        self.ready.emit(path, image)
        self._pump()

    def _failed(self, path: str, error: BaseException) -> None:
        self._running.discard(path)
        reason = error.reason if isinstance(error, DatasetImageError) else str(error)
        self.failed.emit(path, reason)
        self._pump()

"""Loads and scales images off the GUI thread, for the sample grid and the compare view.

Threads:
  * GUI thread: :meth:`ThumbnailLoader.request`, the ``loaded`` signal's slots, the cache.
  * Pool threads (the loader's own ``QThreadPool``): :class:`_Load.run` decodes and scales one file
    into a ``QImage`` (safe off the GUI thread, unlike ``QPixmap``) and hands it back through a
    queued signal.  Pool code touches no widget and no Python ``threading`` state.

Each (path, size) is decoded once and cached (LRU, a few hundred tiles); a file that changed on
disk since (same step drawn again) is read anew because the cache key includes its mtime.
``shutdown()`` waits for running loads so no thread outlives the widget that asked.
"""

from __future__ import annotations

import os
from collections import OrderedDict

from PySide6.QtCore import QObject, QRunnable, QSize, Qt, QThreadPool, Signal
from PySide6.QtGui import QImage, QImageReader

CACHE_SIZE = 512


class _Relay(QObject):
    """Lives on the GUI thread; a pool thread emits on it, so the slot runs on the GUI thread."""

    done = Signal(str, int, QImage)


class _Load(QRunnable):
    def __init__(self, relay: _Relay, path: str, size: int) -> None:
        super().__init__()
        self.relay, self.path, self.size = relay, path, size
        self.setAutoDelete(True)

    def run(self) -> None:
        reader = QImageReader(self.path)
        reader.setAutoTransform(True)
        if self.size > 0:
            original = reader.size()
            if original.isValid():  # fit the box: shrink big samples, enlarge tiny ones (64 px demo)
                reader.setScaledSize(original.scaled(QSize(self.size, self.size), Qt.AspectRatioMode.KeepAspectRatio))
        image = reader.read()  # a null image when the file is missing or unreadable
        self.relay.done.emit(self.path, self.size, image)


class ThumbnailLoader(QObject):
    """``request(path, size)`` → later ``loaded(path, size, QImage)`` on the GUI thread (null image = unreadable)."""

    loaded = Signal(str, int, QImage)

    def __init__(self, parent: QObject | None = None, threads: int = 2) -> None:
        super().__init__(parent)
        self.pool = QThreadPool(self)
        self.pool.setMaxThreadCount(threads)
        self._relay = _Relay(self)
        self._relay.done.connect(self._on_done, Qt.ConnectionType.QueuedConnection)
        self._cache: OrderedDict[tuple[str, int, float], QImage] = OrderedDict()
        self._pending: set[tuple[str, int]] = set()

    def cached(self, path: str, size: int) -> QImage | None:
        key = (path, size, _mtime(path))
        image = self._cache.get(key)
        if image is not None:
            self._cache.move_to_end(key)
        return image

    def request(self, path: str, size: int = 0) -> None:
        """Load ``path`` scaled to fit ``size``×``size`` (0 = full size); answered from the cache at once."""
        image = self.cached(path, size)
        if image is not None:
            self.loaded.emit(path, size, image)
            return
        if (path, size) in self._pending:
            return
        self._pending.add((path, size))
        self.pool.start(_Load(self._relay, path, size))

    def pending(self) -> int:
        return len(self._pending)

    def shutdown(self) -> None:
        self.pool.clear()
        self.pool.waitForDone(5000)

    def _on_done(self, path: str, size: int, image: QImage) -> None:
        self._pending.discard((path, size))
        self._cache[(path, size, _mtime(path))] = image
        while len(self._cache) > CACHE_SIZE:
            self._cache.popitem(last=False)
        self.loaded.emit(path, size, image)


def _mtime(path: str) -> float:
    try:
        return os.stat(path).st_mtime
    except OSError:
        return 0.0

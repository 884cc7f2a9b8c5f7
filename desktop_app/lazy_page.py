"""A page that is built the first time it is shown: the window opens with only what its first page needs.

The tab holds a :class:`LazyPage` frame from the start (so the tab bar, the page order and a restored
page index are right at once); the page itself, and the modules it imports, come when the frame is first
shown or when code asks for :meth:`LazyPage.page` (a menu command, a test, another page opening it).
With ``after_first_paint``, a part of the first page that is slow to import (the live preview's pyqtgraph
plots) comes right after the window's first frame instead, so the window is on screen first.
GUI thread only.
"""

from __future__ import annotations

from collections.abc import Callable

from PySide6.QtCore import QTimer, Signal
from PySide6.QtGui import QPaintEvent, QShowEvent
from PySide6.QtWidgets import QVBoxLayout, QWidget


class LazyPage(QWidget):
    built = Signal(QWidget)  # the page, once, right after it was made

    def __init__(self, factory: Callable[[], QWidget], parent: QWidget | None = None,
                 after_first_paint: bool = False) -> None:
        super().__init__(parent)
        self._factory = factory
        self._page: QWidget | None = None
        self._after_first_paint = after_first_paint
        self._scheduled = False
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.setSpacing(0)

    def is_built(self) -> bool:
        return self._page is not None

    def built_page(self) -> QWidget | None:
        """The page if it was built, else None (for work that only concerns a page that exists)."""
        return self._page

    def page(self) -> QWidget:
        """The page, built now if it was not yet."""
        if self._page is None:
            page = self._factory()
            self._page = page
            self.layout().addWidget(page)
            if self.isVisible():
                page.show()
            self.built.emit(page)
        return self._page

    def showEvent(self, event: QShowEvent) -> None:
        if not self._after_first_paint:
            self.page()
        super().showEvent(event)

    def paintEvent(self, event: QPaintEvent) -> None:
        """The empty frame was painted with the window's first frame: the page comes in the next turn of the loop."""
        if self._after_first_paint and self._page is None and not self._scheduled:
            self._scheduled = True
            QTimer.singleShot(0, self.page)
        super().paintEvent(event)

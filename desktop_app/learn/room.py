"""Fits the Learn page into the main window: its tab (built the first time it is shown) and where its
"Do this on your own model" buttons lead — a lesson's preset chosen on the Train page as if picked in the
preset chooser (so an edited form is asked about first), or the Merge page.  GUI thread only.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from desktop_app.lazy_page import LazyPage
from desktop_app.learn.i18n import tr

if TYPE_CHECKING:
    from desktop_app.learn.page import LearnPage
    from desktop_app.window_api import Window


class LearnRoom:
    def __init__(self, window: Window) -> None:
        self.window = window
        self.frame = LazyPage(self._build)
        window.add_page(self.frame, tr("Learn"))  # in the language installed at start-up; the page keeps it so

    @property
    def page(self) -> LearnPage:
        return self.frame.page()  # type: ignore[return-value]

    def _build(self) -> LearnPage:
        from desktop_app.learn.page import LearnPage

        page = LearnPage()
        page.presetRequested.connect(self.open_preset)
        page.mergePageRequested.connect(lambda: self.window.show_page(self.window.merge_panel))
        page.titleChanged.connect(self._set_tab_title)
        self._set_tab_title(page.heading.text())
        return page

    def _set_tab_title(self, title: str) -> None:
        tabs = self.window.pages
        tabs.setTabText(tabs.indexOf(self.frame), title)

    def open_preset(self, name: str) -> None:
        window = self.window
        combo = window.controls.preset_combo
        index = combo.findData(name)
        if index >= 0 and not window.session.is_active():
            combo.activated.emit(index)  # exactly what choosing it in the chooser does
        window.show_page(window.splitter)

    def shutdown(self) -> None:
        page = self.frame.built_page()
        if page is not None:
            page.shutdown()  # type: ignore[attr-defined]


def install(window: Window) -> LearnRoom:
    return LearnRoom(window)

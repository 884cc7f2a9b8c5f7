"""The Train page's list of the project's concepts: one card per concept (name, image count, token,
repeats, resolution, folder and, in DreamBooth, class set), so the settings beside it are read with
the whole dataset in view.

Read-only: concepts are added, removed and edited on the Dataset page, and a card's name opens the
concept there (``editRequested``).  Model-first: it follows the Dataset page's ``ConceptStore``
(the concepts, and their image counts, which that page counts on a worker thread) and the config's
values, so a concept added, removed or renamed, a field edited or a preset loaded shows at once.
GUI thread only.
"""

from __future__ import annotations

import html
from pathlib import Path

from PySide6.QtCore import Qt, Signal
from PySide6.QtGui import QResizeEvent
from PySide6.QtWidgets import QFrame, QGridLayout, QLabel, QSizePolicy, QVBoxLayout, QWidget

from desktop_app.dataset.concept_store import ConceptStore

# Config sections whose values a card shows (the first concept lives in them; the rest in ``concepts``).
SHOWN_SECTIONS = ("dataset", "dreambooth")


def plural(count: int, word: str) -> str:
    return f"{count:,} {word}{'' if count == 1 else 's'}"


def shown_path(value: str, project_root: Path | None) -> str:
    """A configured folder as people read it: relative to the project when inside it."""
    if not value or project_root is None:
        return value
    path = Path(value).expanduser()
    try:
        return (project_root / path).resolve().relative_to(project_root.resolve()).as_posix()
    except ValueError:
        return value


class ElidedLabel(QLabel):
    """One line of text shortened (in the middle, or where ``mode`` says) to the width it gets; the whole
    text is its tooltip."""

    def __init__(self, mode: Qt.TextElideMode = Qt.TextElideMode.ElideMiddle, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.mode = mode
        self.full_text = ""
        self.setSizePolicy(QSizePolicy.Policy.Ignored, QSizePolicy.Policy.Preferred)

    def set_full_text(self, text: str) -> None:
        self.full_text = text
        self.setToolTip(text)
        self._elide()

    def resizeEvent(self, event: QResizeEvent) -> None:
        super().resizeEvent(event)
        self._elide()

    def _elide(self) -> None:
        shown = self.fontMetrics().elidedText(self.full_text, self.mode, max(self.width(), 40))
        if shown != self.text():
            self.setText(shown)


class ConceptCard(QFrame):
    """One concept: name and image count, then token · repeats · resolution, folder, class set."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("conceptCard")
        self.title = QLabel()
        self.title.setObjectName("conceptCardTitle")
        self.title.setTextFormat(Qt.TextFormat.RichText)
        self.title.setToolTip("Show this concept on the Dataset page, where it is edited.")
        self.images = QLabel()
        self.images.setObjectName("conceptCardImages")
        self.images.setAlignment(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
        self.details = ElidedLabel()
        self.folder = ElidedLabel()
        self.class_set = ElidedLabel(Qt.TextElideMode.ElideRight)  # the prompt and count matter most
        for label in (self.details, self.folder, self.class_set):
            label.setProperty("role", "subtle")
        layout = QGridLayout(self)
        layout.setContentsMargins(8, 5, 8, 6)
        layout.setHorizontalSpacing(8)
        layout.setVerticalSpacing(1)
        layout.addWidget(self.title, 0, 0)
        layout.addWidget(self.images, 0, 1)
        layout.addWidget(self.details, 1, 0, 1, 2)
        layout.addWidget(self.folder, 2, 0, 1, 2)
        layout.addWidget(self.class_set, 3, 0, 1, 2)
        layout.setColumnStretch(0, 1)

    def show_concept(self, store: ConceptStore, index: int, class_sets: bool, project_root: Path | None) -> None:
        """Show concept ``index`` of ``store``; ``class_sets``: DreamBooth with prior preservation."""
        value = store.value
        self.title.setText(f'<a href="{index}" style="color: #1f4e79; text-decoration: none;">'
                           f'{html.escape(store.title(index))}</a>')
        count = store.counts.get(index)
        self.images.setText(plural(count, "image") if count is not None else "")
        self.details.set_full_text(f"token {value('instance_token', index) or '—'}  ·  "
                                   f"{plural(int(value('repeats', index)), 'repeat')}  ·  "
                                   f"{store.resolution(index)} px")
        path = shown_path(str(value("path", index) or ""), project_root)
        self.folder.set_full_text(f"Folder: {path}" if path else "Folder: none yet (add one on the Dataset page)")
        self.class_set.setVisible(class_sets)
        class_dir = shown_path(str(value("class_dir", index) or ""), project_root)
        prompt = str(value("class_prompt", index) or "")
        if index > 0 and not class_dir:
            self.class_set.set_full_text("Class: none (trains without class images)")
        else:
            wanted = int(value("num_class_images", index))
            what = f"{wanted:,} of “{prompt}”" if prompt else plural(wanted, "image")
            self.class_set.set_full_text(f"Class: {what} in {class_dir or '(no folder chosen yet)'}")


class ConceptSummary(QWidget):
    """Every concept of the project as a card, with a line that adds them up."""

    editRequested = Signal(int)  # a card's name was clicked: show that concept on the Dataset page

    def __init__(self, store: ConceptStore, project_root: Path | None = None, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("conceptSummary")
        self.store = store
        self.project_root = project_root  # folders inside it are shown relative to it
        self.config = store.config
        self.cards: list[ConceptCard] = []
        self.heading = QLabel()
        self.heading.setObjectName("conceptSummaryHeading")
        self.heading.setProperty("role", "subtle")
        self.heading.setWordWrap(True)
        self.card_layout = QVBoxLayout()
        self.card_layout.setSpacing(4)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 8)
        layout.setSpacing(4)
        layout.addWidget(self.heading)
        layout.addLayout(self.card_layout)
        store.conceptsChanged.connect(self.refresh)
        store.countsChanged.connect(self.refresh)
        self.config.valueChanged.connect(self._value_changed)
        self.refresh()

    def set_project_root(self, root: Path | None) -> None:
        self.project_root = root
        self.refresh()

    def _value_changed(self, name: str, _value: object) -> None:
        if name in ("mode", "concepts") or name.partition(".")[0] in SHOWN_SECTIONS:
            self.refresh()

    def refresh(self) -> None:
        count = self.store.count()
        while len(self.cards) < count:
            card = ConceptCard()
            card.title.linkActivated.connect(lambda href: self.editRequested.emit(int(href)))
            self.card_layout.addWidget(card)
            self.cards.append(card)
        while len(self.cards) > count:
            card = self.cards.pop()
            self.card_layout.removeWidget(card)
            card.hide()  # at once: deleteLater waits for the event loop
            card.deleteLater()
        value = self.config.value
        class_sets = value("mode") == "dreambooth" and bool(value("dreambooth.prior_preservation"))
        for index, card in enumerate(self.cards):
            card.show_concept(self.store, index, class_sets, self.project_root)
        self.heading.setText(self._heading())

    def _heading(self) -> str:
        count, counts = self.store.count(), self.store.counts
        text = (f"{count} concepts, trained together; each is edited on the Dataset page." if count > 1
                else "One concept. Add more, or edit this one, on the Dataset page.")
        if len(counts) == count and count > 0:
            images = sum(counts.values())
            per_epoch = sum(n * int(self.store.value("repeats", index)) for index, n in counts.items())
            text += f" {plural(images, 'image')}" + (f", {per_epoch:,} per epoch with repeats." if per_epoch != images
                                                     else " per epoch.")
        return text

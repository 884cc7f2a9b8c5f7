"""The concept strip and the concept bar: what the images teach.

A project holds one or more concepts (``desktop_app.dataset.concept_store``): each an instance set
(folder, name, token, caption template, repeats, resolution) and, for DreamBooth, a class set
(folder, prompt, how many).  The strip (``ConceptTabs``) lists them — select, add, remove — and the
bar (``ConceptBar``) edits the selected one.  The editors are bound to the store, both ways: a
preset or the Train page's form changing a field updates the bar, and selecting another concept
shows its values.  GUI thread only.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import (
    QGridLayout,
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QPushButton,
    QSpinBox,
    QTabBar,
    QVBoxLayout,
    QWidget,
)

from desktop_app.dataset.concept_store import ConceptStore
from desktop_app.train.field_meta import meta_for


class _Binding:
    """One editor ↔ one key of the selected concept."""

    def __init__(self, store: ConceptStore, key: str, read: Callable[[], Any], show: Callable[[Any], None],
                 tooltip_field: str) -> None:
        self.store, self.key, self.read, self.show = store, key, read, show
        self.tooltip = meta_for(tooltip_field).tooltip

    def refresh(self) -> None:
        value = self.store.value(self.key)
        if self.read() != value:
            self.show(value)

    def commit(self) -> None:
        if self.read() != self.store.value(self.key):
            self.store.set_value(self.key, self.read())


class ConceptTabs(QWidget):
    """One tab per concept (title and image count), with Add concept… and Remove concept."""

    addRequested = Signal()
    removeRequested = Signal(int)

    def __init__(self, store: ConceptStore, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("conceptTabs")
        self.store = store
        self.tabs = QTabBar()
        self.tabs.setObjectName("conceptTabBar")
        self.tabs.setExpanding(False)
        self.tabs.setDrawBase(False)
        self.tabs.setToolTip("The project's concepts: each is a folder of images with its own token, captions, "
                             "repeats and resolution. Training uses all of them together.")
        self.add = QPushButton("Add concept…")
        self.add.setObjectName("addConcept")
        self.add.setToolTip("Import a folder of images as a new concept (copied into the project).")
        self.add.clicked.connect(self.addRequested.emit)
        self.remove = QPushButton("Remove concept")
        self.remove.setObjectName("removeConcept")
        self.remove.setToolTip("Take the selected concept out of the project. Its images stay on disk.")
        self.remove.clicked.connect(lambda: self.removeRequested.emit(self.store.current))
        title = QLabel("<b>Concepts</b>")
        layout = QHBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(title)
        layout.addSpacing(6)
        layout.addWidget(self.tabs, 1)
        layout.addWidget(self.add)
        layout.addWidget(self.remove)
        self.tabs.currentChanged.connect(self._tab_selected)
        store.conceptsChanged.connect(self.refresh)
        store.currentChanged.connect(self.refresh)
        store.countsChanged.connect(self.refresh)
        self.refresh()

    def refresh(self) -> None:
        titles, counts = self.store.titles(), self.store.counts
        self.tabs.blockSignals(True)
        while self.tabs.count() > len(titles):
            self.tabs.removeTab(self.tabs.count() - 1)
        for index, title in enumerate(titles):
            text = f"{title}  ·  {counts[index]:,}" if index in counts else title
            if index >= self.tabs.count():
                self.tabs.addTab(text)
            elif self.tabs.tabText(index) != text:
                self.tabs.setTabText(index, text)
            self.tabs.setTabToolTip(index, str(self.store.value("path", index) or "no folder yet"))
        self.tabs.setCurrentIndex(self.store.current)
        self.tabs.blockSignals(False)
        self.remove.setEnabled(len(titles) > 1 or bool(self.store.value("path", 0)))

    def _tab_selected(self, index: int) -> None:
        if index >= 0:
            self.store.select(index)


class ConceptBar(QWidget):
    """Instance set and class set of the selected concept, side by side."""

    def __init__(self, store: ConceptStore, class_images: QWidget, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("conceptBar")
        self.store = store
        self.config = store.config
        self.bindings: list[_Binding] = []
        self.folder = QLabel()
        self.folder.setObjectName("conceptFolder")
        self.folder.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.folder.setToolTip(meta_for("dataset.path").tooltip)
        self.name = self._line("name", "dataset.name")
        self.name.setMaximumWidth(220)
        self.token = self._line("instance_token", "dataset.instance_token")
        self.token.setMaximumWidth(120)
        self.template = self._line("caption_template", "dataset.caption_template")
        self.repeats = self._spin("repeats", "dataset.repeats", 1, 1000)
        self.resolution = self._spin("resolution", "dataset.resolution", 64, 4096, 64)
        self.resolution.setSuffix(" px")

        subject = QGroupBox("Subject (instance images)")
        self.subject_group = subject
        grid = QGridLayout(subject)
        grid.setHorizontalSpacing(10)
        grid.addWidget(QLabel("Name"), 0, 0)
        grid.addWidget(self.name, 0, 1, 1, 2)
        folder_row = QHBoxLayout()
        folder_row.addWidget(QLabel("Folder"))
        folder_row.addSpacing(6)
        folder_row.addWidget(self.folder, 1)
        grid.addLayout(folder_row, 0, 3, 1, 5)
        grid.addWidget(QLabel("Token"), 1, 0)
        grid.addWidget(self.token, 1, 1)
        grid.addWidget(QLabel("Caption template"), 1, 2)
        grid.addWidget(self.template, 1, 3)
        grid.addWidget(QLabel("Repeats"), 1, 4)
        grid.addWidget(self.repeats, 1, 5)
        grid.addWidget(QLabel("Resolution"), 1, 6)
        grid.addWidget(self.resolution, 1, 7)
        grid.setColumnStretch(3, 1)
        grid.setColumnStretch(1, 0)

        self.class_group = QGroupBox("Class images (DreamBooth prior preservation)")
        self.class_group.setObjectName("classGroup")
        self.class_dir = self._line("class_dir", "dreambooth.class_dir")
        self.class_prompt = self._line("class_prompt", "dreambooth.class_prompt")
        self.class_count = self._spin("num_class_images", "dreambooth.num_class_images", 0, 100_000, 10)
        self.class_count.setMaximumWidth(110)
        class_grid = QGridLayout(self.class_group)
        class_grid.setHorizontalSpacing(10)
        class_grid.addWidget(QLabel("Folder"), 0, 0)
        class_grid.addWidget(self.class_dir, 0, 1)
        class_grid.addWidget(QLabel("Prompt"), 0, 2)
        class_grid.addWidget(self.class_prompt, 0, 3)
        class_grid.addWidget(QLabel("How many"), 0, 4)
        class_grid.addWidget(self.class_count, 0, 5)
        class_grid.addWidget(class_images, 1, 0, 1, 6)
        class_grid.setColumnStretch(1, 2)
        class_grid.setColumnStretch(3, 3)

        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(subject)
        layout.addWidget(self.class_group)
        store.fieldsChanged.connect(self.refresh)
        store.currentChanged.connect(lambda _index: self.refresh())
        self.config.valueChanged.connect(self._value_changed)
        self.config.errorsChanged.connect(self._show_errors)
        self.refresh()
        self._value_changed("mode", None)

    # ---------------------------------------------------------------- editors

    def _line(self, key: str, tooltip_field: str) -> QLineEdit:
        edit = QLineEdit()
        edit.setObjectName(f"concept:{key}")
        binding = _Binding(self.store, key, lambda: edit.text().strip(), lambda value: edit.setText(str(value)),
                           tooltip_field)
        edit.setToolTip(binding.tooltip)
        edit.editingFinished.connect(binding.commit)
        self.bindings.append(binding)
        return edit

    def _spin(self, key: str, tooltip_field: str, low: int, high: int, step: int = 1) -> QSpinBox:
        spin = QSpinBox()
        spin.setObjectName(f"concept:{key}")
        spin.setRange(low, high)
        spin.setSingleStep(step)
        spin.setKeyboardTracking(False)
        if key == "resolution":
            # A further concept's 0 means "the dataset's": show the resolution it trains at.
            binding = _Binding(self.store, key, spin.value, lambda _value: spin.setValue(self.store.resolution()),
                               tooltip_field)
            binding.refresh = lambda: spin.setValue(self.store.resolution())  # type: ignore[method-assign]
            binding.commit = lambda: (self.store.set_value(key, spin.value())  # type: ignore[method-assign]
                                      if spin.value() != self.store.resolution() else None)
        else:
            binding = _Binding(self.store, key, spin.value, lambda value: spin.setValue(int(value)), tooltip_field)
        spin.setToolTip(binding.tooltip)
        spin.valueChanged.connect(lambda _value: binding.commit())
        self.bindings.append(binding)
        return spin

    def refresh(self) -> None:
        """Show the selected concept's values (its own, whichever part of the config holds them)."""
        for binding in self.bindings:
            binding.refresh()
        if self.store.current == 0:
            self.class_dir.setPlaceholderText("datasets/class (made when you generate)")
        else:
            self.class_dir.setPlaceholderText("none: this concept trains without class images")
        self.class_prompt.setPlaceholderText("" if self.store.current == 0 else "e.g. a photo of a cat")
        self._show_errors()

    def _show_errors(self) -> None:
        editors = {"name": self.name, "instance_token": self.token, "caption_template": self.template,
                   "repeats": self.repeats, "resolution": self.resolution, "class_dir": self.class_dir,
                   "class_prompt": self.class_prompt, "num_class_images": self.class_count}
        for key, editor in editors.items():
            message = self.store.error(key)
            editor.setProperty("invalid", bool(message))
            editor.setToolTip(message or meta_for(self.store.field_name(key, 0)).tooltip)
            editor.style().unpolish(editor)
            editor.style().polish(editor)

    def _value_changed(self, name: str, _value: object) -> None:
        if name == "mode":
            self.class_group.setVisible(self.config.value("mode") == "dreambooth")

    def show_folder(self, text: str) -> None:
        self.folder.setText(text)

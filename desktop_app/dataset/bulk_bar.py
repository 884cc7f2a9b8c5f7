"""Bulk caption edits on the selected images: instance token, prefix, suffix, find and replace.

The operations themselves are pure functions in ``trainer.dataset.caption_ops``; this bar only
picks one, takes its arguments and hands ``BulkEdit`` to ``DatasetModel.apply_bulk``.
GUI thread only.
"""

from __future__ import annotations

from collections.abc import Callable

from PySide6.QtCore import Signal
from PySide6.QtWidgets import QComboBox, QGridLayout, QLabel, QLineEdit, QPushButton, QWidget

from desktop_app.dataset.model import DatasetModel
from trainer.dataset.caption_ops import BulkEdit

CHOICES = [("Add the instance token", "add_token"), ("Remove the instance token", "remove_token"),
           ("Add a prefix", "prefix"), ("Add a suffix", "suffix"), ("Find and replace", "replace")]


class BulkBar(QWidget):
    applied = Signal(int)  # how many captions changed

    def __init__(self, dataset: DatasetModel, selected_rows: Callable[[], list[int]],
                 parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("bulkBar")
        self.dataset = dataset
        self.selected_rows = selected_rows
        self.operation = QComboBox()
        self.operation.setObjectName("bulkOperation")
        for label, name in CHOICES:
            self.operation.addItem(label, name)
        self.value = QLineEdit()
        self.value.setObjectName("bulkValue")
        self.with_label = QLabel("with")
        self.with_text = QLineEdit()
        self.with_text.setObjectName("bulkWith")
        self.with_text.setPlaceholderText("replacement (may be empty)")
        self.apply = QPushButton("Apply")
        self.apply.setObjectName("bulkApply")
        self.result = QLabel()
        self.result.setProperty("role", "subtle")
        layout = QGridLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(self.operation, 0, 0, 1, 2)
        layout.addWidget(self.value, 1, 0, 1, 2)
        layout.addWidget(self.with_label, 2, 0)
        layout.addWidget(self.with_text, 2, 1)
        layout.addWidget(self.apply, 3, 0)
        layout.addWidget(self.result, 3, 1)
        layout.setColumnStretch(1, 1)
        self.operation.currentIndexChanged.connect(self._operation_changed)
        self.apply.clicked.connect(self.apply_to_selection)
        self._operation_changed()
        self.update_selection()

    def _operation_changed(self) -> None:
        name = self.operation.currentData()
        replacing = name == "replace"
        self.with_label.setVisible(replacing)
        self.with_text.setVisible(replacing)
        if name in ("add_token", "remove_token"):
            self.value.setText(self.dataset.settings.token)
        elif self.value.text() == self.dataset.settings.token:
            self.value.clear()
        self._shown_token = self.dataset.settings.token
        self.value.setPlaceholderText({"prefix": "text to put first", "suffix": "text to put last",
                                       "replace": "find", }.get(name, "token"))

    def token_changed(self) -> None:
        """Follow the concept's token (edited, or another concept selected) unless the person typed another."""
        token = self.dataset.settings.token
        if self.operation.currentData() in ("add_token", "remove_token") and self.value.text() == self._shown_token:
            self.value.setText(token)
        self._shown_token = token

    def update_selection(self) -> None:
        count = len(self.selected_rows())
        self.apply.setText(f"Apply to {count} selected" if count else "Apply")
        self.apply.setEnabled(bool(count) and self.dataset.editable)

    def apply_to_selection(self) -> int:
        edit = BulkEdit(self.operation.currentData(), self.value.text(), self.with_text.text())
        changed = self.dataset.apply_bulk(self.selected_rows(), edit)
        self.result.setText(f"{changed} caption{'s' if changed != 1 else ''} changed")
        self.applied.emit(changed)
        return changed

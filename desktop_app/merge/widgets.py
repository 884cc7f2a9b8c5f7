"""Small input widgets of the Merge page: a path field with Browse buttons, and a list of weighted paths."""

from __future__ import annotations

from PySide6.QtCore import Signal
from PySide6.QtWidgets import (
    QAbstractItemView,
    QDoubleSpinBox,
    QFileDialog,
    QHBoxLayout,
    QHeaderView,
    QLineEdit,
    QPushButton,
    QTableWidget,
    QVBoxLayout,
    QWidget,
)

MODEL_FILTER = "Checkpoints (*.safetensors *.ckpt);;All files (*)"
LORA_FILTER = "LoRA files (*.safetensors);;All files (*)"


class PathPicker(QWidget):
    """A path field with Browse buttons.  ``kind``: 'file', 'files' (several, ``; `` between), 'folder', 'model'
    (file or folder), 'save-file' or 'save-path' (a file or a folder to create)."""

    changed = Signal(str)

    def __init__(self, kind: str, placeholder: str, file_filter: str = MODEL_FILTER,
                 parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.kind = kind
        self.file_filter = file_filter
        self.edit = QLineEdit()
        self.edit.setPlaceholderText(placeholder)
        self.edit.setClearButtonEnabled(True)
        self.edit.textChanged.connect(lambda text: self.changed.emit(text.strip()))
        row = QHBoxLayout(self)
        row.setContentsMargins(0, 0, 0, 0)
        row.setSpacing(4)
        row.addWidget(self.edit, 1)
        buttons = {"file": ["File…"], "files": ["Files…"], "folder": ["Folder…"], "model": ["File…", "Folder…"],
                   "save-file": ["Save as…"], "save-path": ["File…", "Folder…"]}[kind]
        for label in buttons:
            button = QPushButton(label)
            button.setAutoDefault(False)
            button.clicked.connect(lambda _=False, label=label: self._browse(label))
            row.addWidget(button)

    def path(self) -> str:
        return self.edit.text().strip()

    def set_path(self, path: str) -> None:
        self.edit.setText(path)

    def _browse(self, label: str) -> None:
        start = self.path()
        saving = self.kind.startswith("save")
        if label == "Folder…":
            chosen = QFileDialog.getExistingDirectory(self, "Choose a folder", start)
        elif label == "Files…":
            chosen = "; ".join(QFileDialog.getOpenFileNames(self, "Choose the files", "", self.file_filter)[0])
        elif saving:
            chosen, _ = QFileDialog.getSaveFileName(self, "Save as", start, "safetensors (*.safetensors)")
            if chosen and not chosen.endswith(".safetensors"):
                chosen += ".safetensors"
        else:
            chosen, _ = QFileDialog.getOpenFileName(self, "Choose a file", start, self.file_filter)
        if chosen:
            self.set_path(chosen)


def weight_box(value: float = 1.0, low: float = -2.0, high: float = 2.0) -> QDoubleSpinBox:
    box = QDoubleSpinBox()
    box.setRange(low, high)
    box.setDecimals(2)
    box.setSingleStep(0.05)
    box.setValue(value)
    return box


class WeightedPaths(QWidget):
    """A list of (LoRA file, weight) rows with Add… and Remove."""

    changed = Signal()

    def __init__(self, file_filter: str = LORA_FILTER, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.file_filter = file_filter
        self.table = QTableWidget(0, 2)
        self.table.setHorizontalHeaderLabels(["LoRA file", "Weight"])
        self.table.horizontalHeader().setSectionResizeMode(0, QHeaderView.ResizeMode.Stretch)
        self.table.horizontalHeader().setSectionResizeMode(1, QHeaderView.ResizeMode.Fixed)
        self.table.setColumnWidth(1, 90)
        self.table.verticalHeader().setVisible(False)
        self.table.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.table.setMinimumHeight(110)
        self.table.setMaximumHeight(150)
        add, remove = QPushButton("Add LoRA…"), QPushButton("Remove")
        add.clicked.connect(self._browse)
        remove.clicked.connect(self._remove_selected)
        buttons = QHBoxLayout()
        buttons.addWidget(add)
        buttons.addWidget(remove)
        buttons.addStretch(1)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(self.table)
        layout.addLayout(buttons)

    def add(self, path: str, weight: float = 1.0) -> None:
        row = self.table.rowCount()
        self.table.insertRow(row)
        edit = QLineEdit(path)
        edit.setFrame(False)
        edit.textChanged.connect(lambda _text: self.changed.emit())
        box = weight_box(weight)
        box.valueChanged.connect(lambda _value: self.changed.emit())
        self.table.setCellWidget(row, 0, edit)
        self.table.setCellWidget(row, 1, box)
        self.changed.emit()

    def items(self) -> list[tuple[str, float]]:
        rows = []
        for row in range(self.table.rowCount()):
            path = self.table.cellWidget(row, 0).text().strip()  # type: ignore[union-attr]
            if path:
                rows.append((path, self.table.cellWidget(row, 1).value()))  # type: ignore[union-attr]
        return rows

    def _browse(self) -> None:
        chosen, _ = QFileDialog.getOpenFileNames(self, "Choose LoRA files", "", self.file_filter)
        for path in chosen:
            self.add(path)

    def _remove_selected(self) -> None:
        for row in sorted({index.row() for index in self.table.selectedIndexes()}, reverse=True):
            self.table.removeRow(row)
        self.changed.emit()

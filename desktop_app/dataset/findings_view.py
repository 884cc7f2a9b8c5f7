"""The health findings list: what the check found, worst first; clicking one jumps to its image.

Fed by ``DatasetModel.reportChanged`` (the same ``Report`` the CLI prints as JSON).  A finding
that names an image emits ``jumpRequested(path)``; the panel selects and shows that image.
GUI thread only.
"""

from __future__ import annotations

from pathlib import Path

from PySide6.QtCore import Qt, Signal
from PySide6.QtGui import QBrush, QColor, QIcon, QPainter, QPixmap
from PySide6.QtWidgets import QLabel, QListWidget, QListWidgetItem, QProgressBar, QVBoxLayout, QWidget

from desktop_app.dataset.grid import BADGE
from desktop_app.dataset.model import DatasetModel
from trainer.dataset import Severity

TINTS = {Severity.ERROR: "#fef3f2", Severity.WARNING: "#fffaeb", Severity.INFO: "#ffffff"}


def dot(severity: Severity) -> QIcon:
    """The same coloured dot the grid's tiles wear, as an icon."""
    pixmap = QPixmap(14, 14)
    pixmap.fill(Qt.GlobalColor.transparent)
    painter = QPainter(pixmap)
    painter.setRenderHint(QPainter.RenderHint.Antialiasing)
    painter.setPen(Qt.PenStyle.NoPen)
    painter.setBrush(BADGE[severity])
    painter.drawEllipse(1, 1, 12, 12)
    painter.end()
    return QIcon(pixmap)


class FindingsView(QWidget):
    jumpRequested = Signal(Path)

    def __init__(self, dataset: DatasetModel, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("findingsView")
        self.dataset = dataset
        self.summary = QLabel("Run the health check to see what training would trip over.")
        self.summary.setObjectName("healthSummary")
        self.summary.setWordWrap(True)
        self.progress = QProgressBar()
        self.progress.setObjectName("healthProgress")
        self.progress.setTextVisible(True)
        self.progress.setFormat("Checking %v of %m…")
        self.progress.hide()
        self.list = QListWidget()
        self.list.setObjectName("findingsList")
        self.list.setWordWrap(True)
        self.list.setSpacing(2)
        self.list.setStyleSheet("QListWidget#findingsList { color: #1f2933; }")
        self.list.setVerticalScrollMode(QListWidget.ScrollMode.ScrollPerPixel)
        self.list.itemActivated.connect(self._activated)
        self.list.itemClicked.connect(self._activated)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(8, 8, 8, 8)
        layout.addWidget(self.summary)
        layout.addWidget(self.progress)
        layout.addWidget(self.list, 1)
        dataset.reportChanged.connect(self.refresh)
        dataset.checkProgress.connect(self._progress)
        dataset.reset.connect(self._cleared)

    def _progress(self, done: int, total: int) -> None:
        self.progress.setMaximum(max(total, 1))
        self.progress.setValue(done)
        self.progress.setVisible(done < total)

    def _cleared(self) -> None:
        if not self.dataset.report_summary:
            self.list.clear()
            self.summary.setText("Run the health check to see what training would trip over.")

    def refresh(self) -> None:
        self.progress.hide()
        self.list.clear()
        folder = self.dataset.folder
        for finding in self.dataset.findings:
            if folder is not None and finding.file == folder:  # about the whole concept: partly paired, …
                name = "This concept"
            elif folder is not None and finding.file.is_relative_to(folder):
                name = finding.file.relative_to(folder).as_posix()
            else:
                name = finding.file.name
            item = QListWidgetItem(dot(finding.severity), f"{name} — {finding.message}")
            item.setData(Qt.ItemDataRole.UserRole, finding.file)
            item.setToolTip(f"{finding.code.value}: {finding.message}")
            item.setBackground(QBrush(QColor(TINTS[finding.severity])))
            self.list.addItem(item)
        problems = sum(1 for f in self.dataset.findings if f.severity is not Severity.INFO)
        self.summary.setText(f"<b>{self.dataset.report_summary}</b>. "
                             + ("Click a finding to show its image." if problems else "Nothing to fix."))

    def _activated(self, item: QListWidgetItem) -> None:
        path = item.data(Qt.ItemDataRole.UserRole)
        if isinstance(path, Path) and self.dataset.row_of(path) is not None:
            self.jumpRequested.emit(path)

"""The grid's toolbar: import, remove / restore, the problems filter, the health check, counts.

Only buttons and labels; the panel connects them.  GUI thread only.
"""

from __future__ import annotations

from PySide6.QtWidgets import QCheckBox, QHBoxLayout, QLabel, QProgressBar, QPushButton, QWidget


class DatasetToolbar(QWidget):
    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("datasetToolbar")
        self.import_folder = QPushButton("Import folder…")
        self.import_folder.setObjectName("importFolder")
        self.import_folder.setToolTip("Copy a folder's images and captions into the project. The originals are "
                                      "never changed; you can also drop files or folders on the grid.")
        self.add_files = QPushButton("Add images…")
        self.add_files.setObjectName("addImages")
        self.remove = QPushButton("Remove from dataset")
        self.remove.setObjectName("removeImages")
        self.remove.setToolTip("Leave the selected images out of training (Delete). The files stay on disk.")
        self.restore = QPushButton("Restore removed")
        self.restore.setObjectName("restoreImages")
        self.problems = QCheckBox("Only images with problems")
        self.problems.setObjectName("problemsOnly")
        self.check = QPushButton("Check health")
        self.check.setObjectName("checkHealth")
        self.progress = QProgressBar()
        self.progress.setObjectName("importProgress")
        self.progress.setMaximumWidth(160)
        self.progress.hide()
        self.counts = QLabel()
        self.counts.setObjectName("datasetCounts")
        self.counts.setProperty("role", "subtle")
        layout = QHBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        for widget in (self.import_folder, self.add_files, self.remove, self.restore):
            layout.addWidget(widget)
        layout.addSpacing(12)
        layout.addWidget(self.problems)
        layout.addWidget(self.check)
        layout.addWidget(self.progress)
        layout.addStretch(1)
        layout.addWidget(self.counts)

    def set_editable(self, editable: bool, has_selection: bool, removed: int) -> None:
        self.remove.setEnabled(editable and has_selection)
        self.restore.setVisible(editable and removed > 0)
        self.restore.setText(f"Restore {removed} removed")

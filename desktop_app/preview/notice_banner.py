"""A banner across the top of the preview that says how the last run ended, clearly and in words.

Red for a failure (with the trainer's message, and the traceback behind "Details…"), blue for a
finished run (with the outputs and a button to open the run folder).  After an out-of-memory it offers
"Continue with a smaller plan" when the trainer found one.  Hidden while there is
nothing to say; dismissed with ×.
"""

from __future__ import annotations

from PySide6.QtCore import Qt, QUrl
from PySide6.QtGui import QDesktopServices
from PySide6.QtWidgets import QFrame, QHBoxLayout, QLabel, QMessageBox, QPushButton, QToolButton, QVBoxLayout, QWidget

from desktop_app.preview.run_model import Notice, RunModel


class NoticeBanner(QFrame):
    def __init__(self, model: RunModel, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("noticeBanner")
        self.model = model
        self.title = QLabel()
        self.title.setObjectName("noticeTitle")
        self.text = QLabel()
        self.text.setObjectName("noticeText")
        self.text.setWordWrap(True)
        self.text.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.details_button = QPushButton("Details…")
        self.details_button.clicked.connect(self._show_details)
        self.folder_button = QPushButton("Open run folder")
        self.folder_button.clicked.connect(self._open_folder)
        # After an out-of-memory: the plan goes into the run's config and the run resumes from its checkpoint.
        self.plan_button = QPushButton("Continue with a smaller plan")
        self.plan_button.setObjectName("continueWithPlanButton")
        self.plan_button.clicked.connect(model.continue_with_plan)
        close = QToolButton()
        close.setObjectName("noticeClose")
        close.setText("×")
        close.setToolTip("Dismiss")
        close.clicked.connect(lambda: self.model.set_notice(None))

        words = QVBoxLayout()
        words.setSpacing(2)
        words.addWidget(self.title)
        words.addWidget(self.text)
        layout = QHBoxLayout(self)
        layout.setContentsMargins(12, 8, 6, 8)
        layout.addLayout(words, 1)
        layout.addWidget(self.plan_button, 0, Qt.AlignmentFlag.AlignVCenter)
        layout.addWidget(self.details_button, 0, Qt.AlignmentFlag.AlignVCenter)
        layout.addWidget(self.folder_button, 0, Qt.AlignmentFlag.AlignVCenter)
        layout.addWidget(close, 0, Qt.AlignmentFlag.AlignTop)

        model.noticeChanged.connect(self.refresh)
        self.refresh()

    @property
    def notice(self) -> Notice | None:
        return self.model.notice

    def refresh(self) -> None:
        notice = self.notice
        self.setVisible(notice is not None)
        if notice is None:
            return
        self.setProperty("level", notice.level)
        self.style().unpolish(self)
        self.style().polish(self)
        self.title.setText(notice.title)
        self.text.setText(notice.text)
        self.details_button.setVisible(bool(notice.details))
        self.folder_button.setVisible(bool(notice.run_dir))
        self.plan_button.setVisible(bool(notice.plan))
        self.plan_button.setToolTip("Change the run's memory options to: " + "; ".join(
            f"{path} = {value}" for path, value in notice.plan.items()) if notice.plan else "")

    def _show_details(self) -> None:
        if self.notice is not None:
            box = QMessageBox(QMessageBox.Icon.Critical, self.notice.title, self.notice.text, parent=self)
            box.setDetailedText(self.notice.details)
            box.open()

    def _open_folder(self) -> None:
        if self.notice is not None and self.notice.run_dir:
            QDesktopServices.openUrl(QUrl.fromLocalFile(self.notice.run_dir))

"""The app's look: Fusion everywhere (the same on Linux, Windows and macOS) plus a few named roles.

Widgets mark what they are with a ``role`` property (panelTitle, hint, fieldError, …) instead of
styling themselves, so the look lives here in one place.
"""

from __future__ import annotations

from PySide6.QtWidgets import QApplication

STYLESHEET = """
QLabel[role="panelTitle"] { font-size: 13pt; font-weight: 600; color: #1f2933; padding: 2px 0 6px 2px; }
QLabel[role="hint"] { color: #7b8794; font-size: 10pt; padding: 12px; }
QLabel[role="note"] { color: #323f4b; background: #f0f4f8; border: 1px solid #d9e2ec; border-radius: 6px;
                      padding: 10px; }
QLabel[role="subtle"] { color: #52606d; font-size: 9pt; }
QLabel[role="sectionTitle"] { font-weight: 600; color: #1f2933; padding-top: 4px; }
QLabel[role="fieldError"] { color: #b42318; font-size: 9pt; }
QLabel[role="errorSummary"] { color: #7a271a; background: #fef3f2; border: 1px solid #fda29b; border-radius: 6px;
                              padding: 8px; }
QGroupBox { font-weight: 600; border: 1px solid #d9e2ec; border-radius: 6px; margin-top: 10px;
            padding: 10px 8px 6px 8px; }
QGroupBox::title { subcontrol-origin: margin; left: 10px; padding: 0 4px; color: #334e68; }
QGroupBox QLabel, QGroupBox QCheckBox { font-weight: normal; }
QLineEdit[invalid="true"], QSpinBox[invalid="true"], QDoubleSpinBox[invalid="true"],
QPlainTextEdit[invalid="true"], QComboBox[invalid="true"] { border: 1px solid #d92d20; border-radius: 3px;
                                                             background: #fff5f5; padding: 2px; }
#conceptCard { background: #f8fafc; border: 1px solid #d9e2ec; border-radius: 5px; }
#conceptCardTitle { font-weight: 600; }
#conceptCardImages { color: #323f4b; }
#controlBar { border-bottom: 1px solid #d9e2ec; }
#noticeBanner { border-radius: 6px; }
#noticeBanner[level="error"] { background: #fef3f2; border: 1px solid #f97066; }
#noticeBanner[level="warning"] { background: #fffaeb; border: 1px solid #fdb022; }
#noticeBanner[level="info"] { background: #eff8ff; border: 1px solid #84caff; }
#noticeTitle { font-weight: 600; font-size: 11pt; }
#noticeBanner[level="error"] #noticeTitle { color: #b42318; }
#noticeBanner[level="info"] #noticeTitle { color: #175cd3; }
#noticeClose { border: none; font-size: 14pt; color: #667085; }
#statusBar QLabel { color: #323f4b; }
"""


def apply_style(app: QApplication) -> None:
    app.setStyle("Fusion")
    app.setStyleSheet(STYLESHEET)

"""The "Caption images…" dialog: a local captioning model, how its captions join the ones there are, a preview on
a few images, then all of them with progress, Cancel and Undo.

The dialog only gathers choices and shows ``AutoCaptioner``'s signals; the captioner (on the page, so its undo
outlives the dialog) runs the task and applies the captions.  Which options show follows the folder's kind,
decided from its file names (``trainer.captioning.folder``, no model loads here): a WD14 tagger's thresholds,
blacklist and underscores, or an image-to-text / VLM model's prompt.  The model folder is remembered in the
app's settings.  Closing the dialog while it runs cancels (what is done stays).

GUI thread only.
"""

from __future__ import annotations

from pathlib import Path

from PySide6.QtCore import QSettings
from PySide6.QtWidgets import (
    QCheckBox,
    QComboBox,
    QDialog,
    QDoubleSpinBox,
    QFileDialog,
    QFormLayout,
    QGroupBox,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QLineEdit,
    QProgressBar,
    QPushButton,
    QRadioButton,
    QSpinBox,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
    QWidget,
)

from desktop_app import paths
from desktop_app.dataset.auto_caption import PREVIEW_IMAGES, AutoCaptioner, CaptionRequest
from trainer.captioning.batch import CaptionJob
from trainer.captioning.folder import MODEL_FIELD, captioner_kind
from trainer.errors import InputError

MODES = [("Fill empty captions only", "fill"), ("Replace every caption", "replace"),
         ("Append to the caption", "append")]
MODEL_KEY = "captioning/modelFolder"


def app_settings() -> QSettings:
    return QSettings(str(paths.settings_path()), QSettings.Format.IniFormat)


class CaptionDialog(QDialog):
    def __init__(self, captioner: AutoCaptioner, selected: list[Path], concept: list[Path], concept_name: str,
                 token: str, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("captionDialog")
        self.setWindowTitle("Caption images")
        self.captioner = captioner
        self.selected_paths, self.concept_paths = selected, concept
        self.kind: str | None = None
        self.wanted = 0  # how many images the mode would caption

        self.only_selected = QRadioButton(f"The {len(selected)} selected image{'s' if len(selected) != 1 else ''}"
                                          if selected else "The selected images (none selected)")
        self.whole_concept = QRadioButton(f"All {len(concept)} images of “{concept_name}”")
        (self.only_selected if selected else self.whole_concept).setChecked(True)
        self.only_selected.setEnabled(bool(selected))
        self.model = QLineEdit(str(app_settings().value(MODEL_KEY, "") or ""))
        self.model.setObjectName("captionModel")
        self.model.setPlaceholderText("a WD14 tagger's folder, or a BLIP / Florence-2 / Qwen2.5-VL folder")
        browse = QPushButton("Browse…")
        browse.clicked.connect(self._browse)
        self.kind_label = QLabel()
        self.kind_label.setObjectName("captionModelKind")
        self.kind_label.setWordWrap(True)
        self.mode = QComboBox()
        self.mode.setObjectName("captionMode")
        for label, name in MODES:
            self.mode.addItem(label, name)
        self.prefix = QLineEdit(f"{token}, " if token else "")
        self.prefix.setObjectName("captionPrefix")
        self.suffix = QLineEdit()
        self.suffix.setObjectName("captionSuffix")
        self.tagger_box = self._tagger_options()
        self.model_box = self._model_options()

        model_row = QHBoxLayout()
        model_row.addWidget(self.model, 1)
        model_row.addWidget(browse)
        model_column = QVBoxLayout()  # the kind (or what is wrong) right under the folder it is about
        model_column.addLayout(model_row)
        model_column.addWidget(self.kind_label)
        which = QHBoxLayout()
        which.addWidget(self.only_selected)
        which.addWidget(self.whole_concept)
        which.addStretch(1)
        form = QFormLayout()
        form.addRow("Images", which)
        form.addRow("Model folder", model_column)
        form.addRow("Mode", self.mode)
        form.addRow("Prefix", self.prefix)
        form.addRow("Suffix", self.suffix)

        self.table = QTableWidget(0, 2)
        self.table.setObjectName("captionPreview")
        self.table.setHorizontalHeaderLabels(["Image", "Caption"])
        self.table.horizontalHeader().setSectionResizeMode(0, QHeaderView.ResizeMode.ResizeToContents)
        self.table.horizontalHeader().setSectionResizeMode(1, QHeaderView.ResizeMode.Stretch)
        self.table.verticalHeader().hide()
        self.table.setWordWrap(True)
        self.table.setMinimumHeight(120)
        self.progress = QProgressBar()
        self.progress.setObjectName("captionProgress")
        self.progress.hide()
        self.status = QLabel("Preview a few images first: nothing is written until you caption them all.")
        self.status.setObjectName("captionStatusLine")
        self.status.setProperty("role", "subtle")
        self.status.setWordWrap(True)

        self.preview_button = QPushButton(f"Preview on {PREVIEW_IMAGES}")
        self.preview_button.setObjectName("captionPreviewButton")
        self.run_button = QPushButton("Caption")
        self.run_button.setObjectName("captionRun")
        self.preview_button.setDefault(True)  # Enter previews: nothing is written before a look
        self.cancel_button = QPushButton("Cancel")
        self.cancel_button.setObjectName("captionCancel")
        self.cancel_button.hide()
        self.undo_button = QPushButton("Undo this batch")
        self.undo_button.setObjectName("captionUndo")
        self.close_button = QPushButton("Close")
        buttons = QHBoxLayout()
        for button in (self.preview_button, self.run_button, self.cancel_button, self.undo_button):
            buttons.addWidget(button)
        buttons.addStretch(1)
        buttons.addWidget(self.close_button)

        layout = QVBoxLayout(self)
        layout.addLayout(form)
        layout.addWidget(self.tagger_box)
        layout.addWidget(self.model_box)
        layout.addWidget(self.table, 1)
        layout.addWidget(self.progress)
        layout.addWidget(self.status)
        layout.addLayout(buttons)
        self.resize(640, 560)

        self.model.textChanged.connect(self._model_changed)
        self.mode.currentIndexChanged.connect(self._count)
        self.only_selected.toggled.connect(self._count)
        self.preview_button.clicked.connect(self.preview)
        self.run_button.clicked.connect(self.run)
        self.cancel_button.clicked.connect(captioner.cancel)
        self.undo_button.clicked.connect(self.undo)
        self.close_button.clicked.connect(self.close)
        # The captioner outlives the dialog: these connections go when it closes.
        self._connections = [(captioner.previewed, self._previewed), (captioner.captioned, self._captioned),
                             (captioner.progressed, self._progressed), (captioner.finished, self.status.setText),
                             (captioner.busyChanged, self._busy), (captioner.undoChanged, self._undo_changed)]
        for signal, slot in self._connections:
            signal.connect(slot)
        self._model_changed()
        self._undo_changed(len(captioner.undo_batch.changes) if captioner.can_undo() else 0)

    def _tagger_options(self) -> QGroupBox:
        box = QGroupBox("Tagger")
        self.general = QDoubleSpinBox()
        self.general.setObjectName("captionGeneralThreshold")
        self.character = QDoubleSpinBox()
        for spin, value in ((self.general, 0.35), (self.character, 0.85)):
            spin.setRange(0.01, 1.0)
            spin.setSingleStep(0.05)
            spin.setValue(value)
        self.blacklist = QLineEdit()
        self.blacklist.setObjectName("captionBlacklist")
        self.blacklist.setPlaceholderText("tags never written, separated by commas")
        self.underscores = QCheckBox("Keep underscores in tags (red_shirt, not red shirt)")
        thresholds = QHBoxLayout()
        thresholds.addWidget(QLabel("General tags from"))
        thresholds.addWidget(self.general)
        thresholds.addSpacing(12)
        thresholds.addWidget(QLabel("character tags from"))
        thresholds.addWidget(self.character)
        thresholds.addStretch(1)
        form = QFormLayout(box)
        form.addRow("Thresholds", thresholds)
        form.addRow("Blacklist", self.blacklist)
        form.addRow("", self.underscores)
        return box

    def _model_options(self) -> QGroupBox:
        box = QGroupBox("Image-to-text model")
        self.prompt = QLineEdit()
        self.prompt.setObjectName("captionPrompt")
        self.prompt.setPlaceholderText("VLM: “Describe this image.” · Florence-2: <CAPTION> · BLIP: “a photo of”")
        self.prompt.setToolTip("A vision-language model (Qwen-VL, LLaVA) is asked this as a chat turn "
                               "(empty: “Describe this image.”); Florence-2 is given a task such as <CAPTION>, "
                               "<DETAILED_CAPTION> (when empty) or <MORE_DETAILED_CAPTION>; BLIP, GIT and other "
                               "image-to-text models start their caption with it and it is taken off again.")
        self.max_tokens = QSpinBox()
        self.max_tokens.setRange(1, 1024)
        self.max_tokens.setValue(75)
        self.max_tokens.setMaximumWidth(140)
        form = QFormLayout(box)
        form.addRow("Prompt", self.prompt)
        form.addRow("Longest caption", self.max_tokens)
        self.max_tokens.setSuffix(" tokens")
        return box

    # ---------------------------------------------------------------- choices

    def _browse(self) -> None:
        folder = QFileDialog.getExistingDirectory(self, "Captioning model folder", self.model.text())
        if folder:
            self.model.setText(folder)

    def _model_changed(self) -> None:
        text = self.model.text().strip()
        self.kind = None
        if not text:
            message = "Choose the folder of a captioning model you downloaded; Kamaal never downloads one."
        else:
            try:
                self.kind = captioner_kind(Path(text).expanduser(), MODEL_FIELD)
                message = ("A WD14-style tagger: its tags become the caption." if self.kind == "tagger"
                           else "A transformers image-to-text or vision-language model.")
            except InputError as error:
                message = f"<span style='color:#b42318'>{error}</span>"
        self.kind_label.setText(message)
        self.tagger_box.setVisible(self.kind == "tagger")
        self.model_box.setVisible(self.kind == "transformers")
        self._count()

    def paths(self) -> list[Path]:
        return self.selected_paths if self.only_selected.isChecked() else self.concept_paths

    def request(self) -> CaptionRequest:
        options: dict = {}
        if self.kind == "tagger":
            options = {"general_threshold": self.general.value(), "character_threshold": self.character.value(),
                       "blacklist": [tag.strip() for tag in self.blacklist.text().split(",") if tag.strip()],
                       "keep_underscores": self.underscores.isChecked()}
        elif self.kind == "transformers":
            options = {"prompt": self.prompt.text().strip(), "max_new_tokens": self.max_tokens.value()}
        job = CaptionJob(self.mode.currentData(), self.prefix.text(), self.suffix.text())
        return CaptionRequest(Path(self.model.text().strip()).expanduser(), job, options)

    def _count(self) -> None:
        self.wanted = len(self.captioner.wanted(self.paths(), CaptionJob(self.mode.currentData())))
        self.run_button.setText(f"Caption {self.wanted} image{'s' if self.wanted != 1 else ''}")
        self._enable()

    def _enable(self) -> None:
        busy = self.captioner.is_busy()
        ready = self.kind is not None and not busy and self.wanted > 0
        self.preview_button.setEnabled(ready)
        self.run_button.setEnabled(ready and self.captioner.dataset.editable)
        self.undo_button.setEnabled(self.captioner.can_undo())
        for widget in (self.model, self.mode, self.prefix, self.suffix, self.tagger_box, self.model_box,
                       self.only_selected, self.whole_concept):
            widget.setEnabled(not busy and (widget is not self.only_selected or bool(self.selected_paths)))

    # ---------------------------------------------------------------- running

    def preview(self) -> bool:
        self._remember()
        self.table.setRowCount(0)
        return self.captioner.preview(self.request(), self.paths())

    def run(self) -> bool:
        self._remember()
        self.table.setRowCount(0)
        return self.captioner.run(self.request(), self.paths())

    def undo(self) -> None:
        restored, kept = self.captioner.undo()
        self.status.setText(f"Undone: {restored} caption{'s' if restored != 1 else ''} back as they were"
                            + (f"; {kept} edited since were kept." if kept else "."))
        self._count()

    def _remember(self) -> None:
        app_settings().setValue(MODEL_KEY, self.model.text().strip())

    def _add_row(self, image: Path, caption: str) -> None:
        row = self.table.rowCount()
        self.table.insertRow(row)
        self.table.setItem(row, 0, QTableWidgetItem(image.name))
        self.table.setItem(row, 1, QTableWidgetItem(caption))
        self.table.scrollToBottom()

    def _previewed(self, results: list[tuple[Path, str]]) -> None:
        for image, caption in results:
            self._add_row(image, caption)
        self.table.resizeRowsToContents()

    def _captioned(self, image: Path, caption: str) -> None:
        self._add_row(image, caption)

    def _progressed(self, done: int, total: int, message: str) -> None:
        self.progress.setRange(0, max(total, 1))
        self.progress.setValue(done)
        self.progress.setFormat(f"{done} of {total}" + (f" · {message}" if message else ""))

    def _busy(self, busy: bool) -> None:
        self.progress.setVisible(busy)
        self.cancel_button.setVisible(busy)
        self._count()

    def _undo_changed(self, count: int) -> None:
        self.undo_button.setText(f"Undo this batch ({count})" if count else "Undo this batch")
        self._enable()

    def done(self, result: int) -> None:
        """Closing the dialog (Close, Escape, the window's X) cancels a run; the captions applied so far stay."""
        self.captioner.cancel()
        for signal, slot in self._connections:
            signal.disconnect(slot)
        self._connections = []
        super().done(result)

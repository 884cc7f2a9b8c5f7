"""The caption editor: edit the selected image's caption; saved automatically, with a token count.

Typing restarts a short timer (``AUTOSAVE_MS``); when it fires — or when the selection moves on,
or the panel closes — the text goes to ``DatasetModel.set_captions``, which writes it atomically
to the project's edits (never to the caption file beside the image).  The counter shows CLIP
tokens (exact with the shipped CLIP vocabulary, see ``trainer.dataset.tokens``; an estimate
until it has loaded) and turns red past the 75 a caption may use (77 with start and end).

GUI thread only; the tokenizer is built once on a worker thread (``Background``).
"""

from __future__ import annotations

import html
import random

from PySide6.QtCore import QTimer, Signal
from PySide6.QtWidgets import QHBoxLayout, QLabel, QPlainTextEdit, QPushButton, QVBoxLayout, QWidget

from desktop_app.dataset.model import DatasetModel
from trainer.dataset import CLIP_USABLE_TOKENS, CaptionStatus, fill_template
from trainer.dataset.tokens import count_clip_tokens, load_clip_tokenizer

AUTOSAVE_MS = 500


class CaptionEditor(QWidget):
    saved = Signal(int)  # row whose caption was just handed to the model

    def __init__(self, dataset: DatasetModel, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("captionEditor")
        self.dataset = dataset
        self.row: int | None = None
        self.title = QLabel("Select an image to edit its caption.")
        self.title.setWordWrap(True)
        self.title.setObjectName("captionTitle")
        self.text = QPlainTextEdit()
        self.text.setObjectName("captionText")
        self.text.setPlaceholderText("No caption: training uses the caption template.")
        self.text.setTabChangesFocus(True)
        self.text.setMaximumHeight(110)
        self.tokens = QLabel()
        self.tokens.setObjectName("tokenCount")
        self.tokens.setProperty("role", "subtle")
        self.status = QLabel()
        self.status.setObjectName("captionStatus")
        self.status.setProperty("role", "subtle")
        self.revert = QPushButton("Use the original")
        self.revert.setObjectName("revertCaption")
        self.revert.setToolTip("Forget the edit and use the caption file beside the image again.")
        self.revert.clicked.connect(self._revert)
        row = QHBoxLayout()
        row.addWidget(self.tokens, 1)
        row.addWidget(self.status)
        row.addWidget(self.revert)
        # What training sees when captions are varied (dataset.caption_dropout, shuffle_tags, …): one draw.
        self.training_view = QLabel()
        self.training_view.setObjectName("trainingCaption")
        self.training_view.setWordWrap(True)
        self.training_view.setProperty("role", "subtle")
        self.another_draw = QPushButton("Another draw")
        self.another_draw.setObjectName("anotherDraw")
        self.another_draw.setToolTip("Training varies this caption every time it draws the image "
                                     "(Train ▸ Dataset: caption dropout, tag dropout, shuffled tags); show another.")
        self.another_draw.clicked.connect(self._another_draw)
        self._draw = 0
        drawn = QHBoxLayout()
        drawn.addWidget(self.training_view, 1)
        drawn.addWidget(self.another_draw)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(self.title)
        layout.addWidget(self.text)
        layout.addLayout(row)
        layout.addLayout(drawn)

        self.timer = QTimer(self)
        self.timer.setSingleShot(True)
        self.timer.setInterval(AUTOSAVE_MS)
        self.timer.timeout.connect(self.save_now)
        self.text.textChanged.connect(self._typed)
        dataset.captionsChanged.connect(self._captions_changed)
        dataset.pendingWrites.connect(self._pending)
        dataset.reset.connect(lambda: self.show_rows([]))
        dataset.background.run(lambda _r, _c: load_clip_tokenizer(), self._tokenizer_loaded, lambda _e: None)
        self._loading = False
        self._dirty = False  # typed but not yet handed to the model
        self.show_rows([])

    def _tokenizer_loaded(self, tokenizer: object) -> None:
        self.dataset.tokenizer = tokenizer  # type: ignore[assignment]
        self._count()

    # ---------------------------------------------------------------- which image

    def show_rows(self, rows: list[int]) -> None:
        """Edit ``rows[0]`` when exactly one image is selected; otherwise say what to do."""
        self.save_now()
        self.row = rows[0] if len(rows) == 1 else None
        self._loading = True
        if self.row is None:
            self.text.setPlainText("")
            self.title.setText(f"{len(rows)} images selected: use the bulk edits below." if rows
                               else "Select an image to edit its caption.")
        else:
            self.text.setPlainText(self.dataset.entries[self.row].caption)
            self._show_source()
        self._loading = False
        editable = self.row is not None and self.dataset.editable
        self.text.setVisible(self.row is not None)  # several selected: the bulk edits below are the tool
        self.tokens.setVisible(self.row is not None)
        self.text.setReadOnly(not editable)
        self.revert.setVisible(editable and self.dataset.entries[self.row].edited is not None)  # type: ignore[index]
        self._count()

    def _show_source(self) -> None:
        """The title: the image and where its caption comes from now (an edit, its .txt file, nowhere)."""
        if self.row is None:
            return
        entry = self.dataset.entries[self.row]
        source = ("edited in Kamaal (kept in the project; the .txt file is untouched)" if entry.edited is not None
                  else "from " + entry.original.path.name if entry.original.status is CaptionStatus.OK and
                  entry.original.path else "no caption file")
        self.title.setText(f"<b>{entry.path.name}</b> — {source}")

    # ---------------------------------------------------------------- editing

    def _typed(self) -> None:
        if not self._loading and self.row is not None and self.dataset.editable:
            self.status.setText("editing…")
            self._dirty = True
            self.timer.start()
        self._count()

    def save_now(self) -> None:
        """Hand a pending edit to the model now (the autosave timer, a selection change, closing)."""
        if not self._dirty or self.row is None:
            return
        self._dirty = False
        self.timer.stop()
        row = self.row
        self.dataset.set_captions({row: self.text.toPlainText()})
        self.saved.emit(row)

    def _revert(self) -> None:
        if self.row is not None:
            self.timer.stop()
            self._dirty = False
            self.dataset.revert_caption(self.row)

    def _captions_changed(self, rows: list[int]) -> None:
        if self.row in rows and not self._dirty:
            current = self.dataset.entries[self.row].caption
            if current != self.text.toPlainText().strip():
                self.show_rows([self.row])  # changed by a bulk edit or a revert
            self.revert.setVisible(self.dataset.editable and self.dataset.entries[self.row].edited is not None)
            self._show_source()

    def _pending(self, count: int) -> None:
        if not self._dirty:
            self.status.setText("saving…" if count else "saved")

    def settings_changed(self) -> None:
        self._count()

    def _another_draw(self) -> None:
        self._draw += 1
        self._count()

    def _show_training_view(self, caption: str) -> None:
        variation = self.dataset.settings.variation
        shown = self.row is not None and variation.active
        self.training_view.setVisible(shown)
        self.another_draw.setVisible(shown)
        if not shown:
            return
        drawn = variation.apply(caption, random.Random(self._draw))
        self.training_view.setText("Training sees, in one draw: " + (
            f"<i>{html.escape(drawn)}</i>" if drawn else "<i>(no caption — the image unconditioned)</i>"))

    def _count(self) -> None:
        text = self.text.toPlainText().strip()
        if self.row is not None and not text:
            settings = self.dataset.settings
            text = fill_template(settings.template, settings.token)
        self._show_training_view(text)
        count, exact = count_clip_tokens(text, self.dataset.tokenizer)
        over = count > CLIP_USABLE_TOKENS
        approx = "" if exact else "≈"
        message = f"{approx}{count} / {CLIP_USABLE_TOKENS} tokens"
        if over:
            message += f" — CLIP reads 77 tokens (75 of caption); the last {count - CLIP_USABLE_TOKENS} are cut off"
        self.tokens.setText(message if self.row is not None else "")
        self.tokens.setProperty("over", over)
        self.tokens.setStyleSheet("color: #b42318; font-weight: 600;" if over else "")

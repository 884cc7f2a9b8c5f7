"""The Merge page: choose an operation, fill in its form, run it in a trainer process (progress and
Cancel), then preview the result beside its inputs.

Threads: everything here runs on the GUI thread; the work itself runs in a spawn child through
:class:`~desktop_app.tasks.TaskRunner` (the ``merge-*`` tasks), whose signals arrive on the GUI thread.
One runner serves both the operation and its preview, one task at a time.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import (
    QApplication,
    QComboBox,
    QFormLayout,
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QPlainTextEdit,
    QProgressBar,
    QPushButton,
    QScrollArea,
    QSizePolicy,
    QSpinBox,
    QSplitter,
    QStackedWidget,
    QVBoxLayout,
    QWidget,
)

from desktop_app.merge.forms import FORMS, MergeForm
from desktop_app.merge.preview_grid import PreviewGrid
from desktop_app.paths import data_dir
from desktop_app.tasks import TaskRunner
from trainer.protocol import Failed, TaskDone, TaskProgress

DEFAULT_PROMPTS = "a portrait photo of a woman, soft light\na red sports car on a mountain road"
PREVIEW_TASK = "merge-preview"


class MergePanel(QWidget):
    finished = Signal(dict)  # the task's result, after an operation (not a preview) succeeded

    def __init__(self, parent: QWidget | None = None, *, preview_root: Path | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("mergePanel")
        self.preview_root = preview_root  # None: a folder in the user's data folder
        self.runner = TaskRunner(self)
        app = QApplication.instance()
        if app is not None:  # a merge still running when the app quits is stopped, not orphaned
            app.aboutToQuit.connect(self.shutdown)
        self.last_result: dict[str, Any] | None = None
        self._last_form: MergeForm | None = None

        title = QLabel("Merge")
        title.setProperty("role", "panelTitle")
        self.operation = QComboBox()
        self.operation.setObjectName("mergeOperation")
        self.forms: list[MergeForm] = [form_class() for form_class in FORMS]
        self.stack = QStackedWidget()
        for form in self.forms:
            self.operation.addItem(form.title)
            self.stack.addWidget(form)
            form.changed.connect(self._on_form_changed)
        self.description = QLabel()
        self.description.setWordWrap(True)
        self.description.setProperty("role", "note")
        self.operation.currentIndexChanged.connect(self._show_form)

        self.run_button = QPushButton("Merge")
        self.run_button.setObjectName("mergeRun")
        self.run_button.setDefault(True)
        self.cancel_button = QPushButton("Cancel")
        self.cancel_button.setObjectName("mergeCancel")
        self.progress = QProgressBar()
        self.progress.setTextVisible(False)
        self.progress.setMaximumHeight(10)
        self.status = QLabel()
        self.status.setObjectName("mergeStatus")
        self.status.setWordWrap(True)
        self.status.setProperty("role", "subtle")
        self.result_note = QLabel()
        self.result_note.setObjectName("mergeResult")
        self.result_note.setWordWrap(True)
        self.result_note.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.result_note.hide()
        self.run_button.clicked.connect(self.run)
        self.cancel_button.clicked.connect(self.runner.cancel)

        run_row = QHBoxLayout()
        run_row.addWidget(self.run_button)
        run_row.addWidget(self.cancel_button)
        run_row.addWidget(self.progress, 1)
        left_column = QWidget()
        left_layout = QVBoxLayout(left_column)
        left_layout.addWidget(title)
        left_layout.addWidget(self.operation)
        left_layout.addWidget(self.description)
        left_layout.addWidget(self.stack)
        left_layout.addLayout(run_row)
        left_layout.addWidget(self.status)
        left_layout.addWidget(self.result_note)
        left_layout.addStretch(1)
        scroll = QScrollArea()
        scroll.setWidgetResizable(True)
        scroll.setFrameShape(QScrollArea.Shape.NoFrame)
        scroll.setWidget(left_column)

        splitter = QSplitter(Qt.Orientation.Horizontal)
        splitter.setChildrenCollapsible(False)
        scroll.setMinimumWidth(460)
        splitter.addWidget(scroll)
        splitter.addWidget(self._build_preview())
        splitter.setSizes([520, 760])
        splitter.setStretchFactor(1, 1)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(4, 4, 4, 4)
        layout.addWidget(splitter)

        self.runner.progress.connect(self._on_progress)
        self.runner.log.connect(lambda event: self.status.setText(event.message))
        self.runner.done.connect(self._on_done)
        self.runner.failed.connect(self._on_failed)
        self.runner.busyChanged.connect(lambda _busy: self._update_buttons())
        self._show_form(0)

    def suggest_prompts(self, prompts: list[str]) -> None:
        """Preview with the project's own sample prompts (what its model knows how to draw), unless the
        person has typed prompts of their own."""
        if prompts and not self.prompts.document().isModified():
            self.prompts.setPlainText("\n".join(prompts[:4]))
            self.prompts.document().setModified(False)

    def _build_preview(self) -> QWidget:
        box = QGroupBox("Preview")
        self.prompts = QPlainTextEdit(DEFAULT_PROMPTS)
        self.prompts.setObjectName("mergePrompts")
        self.prompts.setFixedHeight(58)
        self.seed = QSpinBox()
        self.seed.setRange(0, 2**31 - 1)
        self.seed.setValue(1234)
        self.steps = QSpinBox()
        self.steps.setRange(1, 150)
        self.steps.setValue(20)
        self.preview_button = QPushButton("Preview")
        self.preview_button.setObjectName("mergePreview")
        self.preview_button.clicked.connect(self.preview)
        settings = QFormLayout()
        settings.addRow("Prompts (one per line)", self.prompts)
        numbers = QHBoxLayout()
        numbers.addWidget(QLabel("Seed"))
        numbers.addWidget(self.seed)
        numbers.addSpacing(12)
        numbers.addWidget(QLabel("Steps"))
        numbers.addWidget(self.steps)
        numbers.addStretch(1)
        numbers.addWidget(self.preview_button)
        settings.addRow(numbers)
        self.grid = PreviewGrid()
        layout = QVBoxLayout(box)
        layout.addLayout(settings)
        layout.addWidget(self.grid, 1)
        return box

    # ------------------------------------------------------------------ state

    @property
    def form(self) -> MergeForm:
        return self.forms[self.operation.currentIndex()]

    def _show_form(self, index: int) -> None:
        # A stack is as tall as its tallest page; ignoring the hidden pages' sizes keeps the Merge
        # button right under the form that is showing.
        for i, form in enumerate(self.forms):
            policy = QSizePolicy.Policy.Preferred if i == index else QSizePolicy.Policy.Ignored
            form.setSizePolicy(policy, policy)
        self.stack.setCurrentIndex(index)
        self.stack.adjustSize()
        self.description.setText(self.forms[index].description)
        self.run_button.setText("Convert" if "convert" in self.forms[index].task else "Merge")
        self._on_form_changed()

    def _on_form_changed(self) -> None:
        self._update_buttons()
        self.status.setText(self.form.missing() or "Ready.")

    def _update_buttons(self) -> None:
        busy = self.runner.is_busy()
        missing = self.form.missing()
        self.run_button.setEnabled(not busy and missing is None)
        self.cancel_button.setEnabled(busy)
        self.operation.setEnabled(not busy)
        self.stack.setEnabled(not busy)
        rows = self._preview_rows()
        self.preview_button.setEnabled(not busy and bool(rows))

    def _preview_rows(self) -> list[dict[str, Any]]:
        if self.last_result is None or self._last_form is None:
            return []
        return self._last_form.preview_rows(self.last_result)

    # ------------------------------------------------------------------ running

    def run(self) -> None:
        if self.runner.is_busy() or self.form.missing() is not None:
            return
        self.result_note.hide()
        self.last_result, self._last_form = None, self.form
        self.grid.clear()
        self.progress.setRange(0, 0)
        self.runner.start(self.form.task, self.form.args())

    def preview(self, extra: dict[str, Any] | None = None) -> None:
        rows = self._preview_rows()
        if self.runner.is_busy() or not rows:
            return
        root = self.preview_root or data_dir() / "merge-previews"
        args = {"rows": rows, "out_dir": str(root / time.strftime("%Y%m%d-%H%M%S")),
                "prompts": [p for p in self.prompts.toPlainText().splitlines() if p.strip()],
                "seeds": [self.seed.value()], "steps": self.steps.value(), **(extra or {})}
        self.progress.setRange(0, 0)
        self.runner.start(PREVIEW_TASK, args)

    def _on_progress(self, event: TaskProgress) -> None:
        if event.total > 0:
            self.progress.setRange(0, event.total)
            self.progress.setValue(event.done)
        if event.message:
            self.status.setText(event.message)

    def _on_done(self, event: TaskDone) -> None:
        self.progress.setRange(0, 1)
        self.progress.setValue(1)
        if event.task == PREVIEW_TASK:
            self.grid.show_result(event.result)
            self.status.setText(f"Preview written to {event.result['out_dir']}")
            return
        self.last_result = event.result
        self._show_result(event.result)
        self.finished.emit(event.result)

    def _show_result(self, result: dict[str, Any]) -> None:
        lines = [f"Wrote {path}" for path in result.get("outputs", [])]
        if result.get("rank") and result.get("relative_error") is not None and self.form.args().get("mode") == "svd":
            lines.append(f"Rank {result['rank']}: approximation error {result['relative_error']:.2%} "
                         f"(worst module {result['worst_error']:.2%})")
        lines += result.get("warnings", [])
        if not self._preview_rows():
            lines.append("Choose a base model under “Preview on” to preview merged LoRAs." if
                         self._last_form is self.forms[1] else "")
        self.result_note.setText("\n".join(line for line in lines if line))
        self.result_note.setProperty("role", "note")
        self.result_note.style().polish(self.result_note)
        self.result_note.show()

    def _on_failed(self, event: Failed) -> None:
        self.progress.setRange(0, 1)
        self.progress.setValue(0)
        what = {"input": "Cannot do this", "cancelled": "Cancelled"}.get(event.kind, "Failed")
        self.result_note.setText(f"{what}: {event.message}")
        self.result_note.setProperty("role", "errorSummary" if event.kind != "cancelled" else "note")
        self.result_note.style().polish(self.result_note)
        self.result_note.show()

    def shutdown(self) -> None:
        """Stop a running task and release the runner (the window calls this when it closes)."""
        self.runner.close()

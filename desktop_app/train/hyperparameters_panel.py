"""The hyperparameter form, built from the config's own field declarations.

Groups for people (Basics, Model, Dataset, LoRA, DreamBooth, Optimizer, Memory & speed, Sampling,
Output; see :mod:`desktop_app.train.form_groups`); only the groups and fields that matter for the chosen
mode are shown.  Every editor's tooltip gives the description, range and default; a field with a
bad value gets a red frame and the config's own message for it, right under the field.  Two groups
carry more than fields: *Frozen layers* the block tree, *Memory & speed* the device, the memory
estimate and **Measure** (both widgets run their torch work through trainer tasks).

Threads: everything here runs on the GUI thread.
"""

from __future__ import annotations

from PySide6.QtCore import Qt
from PySide6.QtWidgets import QFormLayout, QFrame, QGroupBox, QLabel, QScrollArea, QVBoxLayout, QWidget

from desktop_app.train.config_model import ConfigModel
from desktop_app.train.field_editors import FieldEditor, make_editor
from desktop_app.train.field_meta import MODE_HINTS, meta_for
from desktop_app.train.form_groups import GROUPS, LEADERS, NOT_IN_FORM, field_visible, follows_value, visible_groups

LABEL_WIDTH_MAX = 150


class FieldRow(QWidget):
    """An editor with its error message underneath (hidden while the value is fine)."""

    def __init__(self, editor: FieldEditor) -> None:
        super().__init__()
        self.editor = editor
        self.error = QLabel()
        self.error.setObjectName(f"error:{editor.meta.name}")
        self.error.setProperty("role", "fieldError")
        self.error.setWordWrap(True)
        self.error.hide()
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.setSpacing(2)
        layout.addWidget(editor)
        layout.addWidget(self.error)

    def show_error(self, message: str | None) -> None:
        self.editor.set_invalid(bool(message))
        self.error.setText(message or "")
        self.error.setVisible(bool(message))


class HyperparametersPanel(QWidget):
    def __init__(self, model: ConfigModel, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("hyperparametersPanel")
        self.model = model
        self.rows: dict[str, FieldRow] = {}
        self.groups: dict[str, QGroupBox] = {}
        self.labels: list[QLabel] = []
        self.hidden: frozenset[str] = frozenset()  # fields shown elsewhere on the page (see hide_fields)

        title = QLabel("Hyperparameters")
        title.setProperty("role", "panelTitle")
        self.locked_note = QLabel("Locked while training: the run uses a copy of these settings.")
        self.locked_note.setObjectName("settingsLockedNote")
        self.locked_note.setProperty("role", "subtle")
        self.locked_note.setWordWrap(True)
        self.locked_note.hide()
        self.summary = QLabel()
        self.summary.setObjectName("configSummary")
        self.summary.setProperty("role", "errorSummary")
        self.summary.setWordWrap(True)
        self.summary.hide()

        self.form = QWidget()
        form_layout = QVBoxLayout(self.form)
        form_layout.setContentsMargins(0, 0, 6, 0)
        form_layout.setSpacing(10)
        self.mode_hint = QLabel()
        self.mode_hint.setObjectName("modeHint")
        self.mode_hint.setWordWrap(True)
        self.mode_hint.setProperty("role", "subtle")
        for group_spec in GROUPS:
            group = QGroupBox(group_spec.title)
            group.setObjectName(f"group:{group_spec.key}")
            layout = QFormLayout(group)
            layout.setFieldGrowthPolicy(QFormLayout.FieldGrowthPolicy.AllNonFixedFieldsGrow)
            layout.setLabelAlignment(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
            if group_spec.hint:
                hint = QLabel(group_spec.hint)
                hint.setProperty("role", "subtle")
                hint.setWordWrap(True)
                layout.addRow(hint)
            for name in group_spec.fields:
                if name not in NOT_IN_FORM:
                    self._add_row(layout, name)
                    if name == "mode":
                        layout.addRow("", self.mode_hint)
            self.groups[group_spec.key] = group
            form_layout.addWidget(group)
        form_layout.addStretch(1)
        # One label column for all groups, so the editors line up from group to group; long labels wrap.
        width = min(LABEL_WIDTH_MAX, max(label.sizeHint().width() for label in self.labels))
        for label in self.labels:
            label.setWordWrap(True)
            label.setFixedWidth(width)

        scroll = QScrollArea()
        scroll.setWidget(self.form)
        scroll.setWidgetResizable(True)
        scroll.setFrameShape(QFrame.Shape.NoFrame)
        scroll.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(8, 8, 4, 8)
        layout.addWidget(title)
        layout.addWidget(self.locked_note)
        layout.addWidget(scroll, 1)
        # Below the form, not above it: appearing and going, it must not move the fields under the mouse.
        layout.addWidget(self.summary)

        model.valueChanged.connect(self._on_value_changed)
        model.errorsChanged.connect(self._show_errors)
        self._update_sections()
        self._show_errors()

    def _add_row(self, layout: QFormLayout, name: str) -> None:
        meta = meta_for(name)
        editor = make_editor(meta)
        editor.set_value(self.model.value(name))
        editor.edited.connect(lambda value, name=name: self.model.set_value(name, value))
        row = FieldRow(editor)
        label = QLabel(meta.label)
        label.setToolTip(meta.tooltip)
        label.setBuddy(editor)
        label.setAlignment(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
        self.labels.append(label)
        layout.addRow(label, row)
        self.rows[name] = row

    def add_to_group(self, key: str, widget: QWidget, first: bool = False) -> None:
        """Put a widget (the block tree, the memory box) at the end of a group, or with ``first`` at its
        top, across both columns."""
        layout = self.groups[key].layout()
        assert isinstance(layout, QFormLayout)
        if first:
            layout.insertRow(0, widget)
        else:
            layout.addRow(widget)

    def hide_fields(self, names: frozenset[str]) -> None:
        """Hide these fields' rows whatever the mode (another widget on the page shows them); their
        problems are then listed in the summary below the form."""
        if names != self.hidden:
            self.hidden = names
            self._update_sections()

    def shows(self, name: str) -> bool:
        """Is the field's row shown (for the current mode and architecture, and not shown elsewhere)?"""
        architecture = str(self.model.value("model.architecture"))
        return (name not in self.hidden and field_visible(name, self.model.mode, architecture)
                and follows_value(name, self.model.value))

    def editor(self, name: str) -> FieldEditor:
        return self.rows[name].editor

    def set_editable(self, editable: bool) -> None:
        """Settings are locked while a run uses them (the run has its own snapshot)."""
        self.form.setEnabled(editable)
        self.locked_note.setVisible(not editable)

    def _on_value_changed(self, name: str, value: object) -> None:
        if name in self.rows:
            self.rows[name].editor.set_value(value)
        if name in ("mode", "model.architecture") or name in LEADERS:
            self._update_sections()

    def _update_sections(self) -> None:
        self.mode_hint.setText(MODE_HINTS.get(self.model.mode, ""))
        mode, architecture = self.model.mode, str(self.model.value("model.architecture"))
        shown = visible_groups(mode, architecture)
        for key, group in self.groups.items():
            group.setVisible(key in shown)
        for name, row in self.rows.items():
            layout = row.parentWidget().layout() if row.parentWidget() is not None else None
            if isinstance(layout, QFormLayout):
                layout.setRowVisible(row, self.shows(name))
        self._show_errors()

    def _show_errors(self) -> None:
        errors = self.model.errors()
        marked, elsewhere = [], []
        for name, row in self.rows.items():
            row.show_error(errors.get(name))
        for name, message in errors.items():
            if name not in self.rows or not self.shows(name):
                elsewhere.append(f"{name}: {message}" if name else message)
            else:
                marked.append(meta_for(name).label)
        if not errors:
            self.summary.hide()
            return
        count = len(errors)
        if self.model.is_valid():
            text = "The trainer refused a setting"
        else:
            text = f"{count} setting{'s' if count > 1 else ''} to fix before training can start"
        text += f": {', '.join(marked)} (marked below)." if marked else "."
        if elsewhere:
            text += "\n" + "\n".join(f"• {line}" for line in elsewhere)
        self.summary.setText(text)
        self.summary.show()

"""One editor widget per kind of config field, all with the same small interface.

Each editor shows a value, emits ``edited(value)`` when the person changes it, and can be marked
invalid.  Editors never validate: they pass on what was typed (parsed as far as it goes — "1e-"
stays text) and the config model says what is wrong with it.
"""

from __future__ import annotations

from typing import Any, cast

from PySide6.QtCore import QEvent, QObject, Qt, Signal
from PySide6.QtGui import QFontMetrics, QStandardItem, QStandardItemModel
from PySide6.QtWidgets import (
    QAbstractSpinBox,
    QApplication,
    QCheckBox,
    QComboBox,
    QDoubleSpinBox,
    QFileDialog,
    QHBoxLayout,
    QLineEdit,
    QPlainTextEdit,
    QSpinBox,
    QToolButton,
    QWidget,
)

from desktop_app.paths import list_presets
from desktop_app.train.field_meta import (
    ARCHITECTURE_TITLES,
    INT32_MAX,
    MODE_TITLES,
    SAMPLER_TITLES,
    FieldMeta,
    architecture_groups,
    smallest_cards,
)


class FieldEditor(QWidget):
    edited = Signal(object)

    def __init__(self, meta: FieldMeta, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.meta = meta
        self.setObjectName(f"field:{meta.name}")
        self.setToolTip(meta.tooltip)
        layout = QHBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.setSpacing(4)

    def _add(self, widget: QWidget) -> None:
        # A small minimum: spin boxes size themselves for their largest value (2,147,483,647), which
        # would make the form wider than its panel.
        widget.setMinimumWidth(70)
        self.layout().addWidget(widget, 1)

    def value(self) -> Any:
        raise NotImplementedError

    def set_value(self, value: Any) -> None:
        """Show ``value`` (without emitting ``edited``); a no-op when it is already shown."""
        if self.value() == value and type(self.value()) is type(value):
            return
        self.blockSignals(True)
        try:
            self._show(value)
        finally:
            self.blockSignals(False)

    def _show(self, value: Any) -> None:
        raise NotImplementedError

    def set_invalid(self, invalid: bool) -> None:
        self.setProperty("invalid", invalid)
        for child in self.findChildren(QWidget):
            child.setProperty("invalid", invalid)
            child.style().unpolish(child)
            child.style().polish(child)

    def _emit(self, *_: object) -> None:
        if not self.signalsBlocked():
            self.edited.emit(self.value())


class _WheelGuard(QObject):
    """Spin boxes and combos in a scrolling form ignore the wheel unless focused (scrolling must not edit)."""

    def eventFilter(self, watched: QObject, event: QEvent) -> bool:
        if event.type() == QEvent.Type.Wheel and isinstance(watched, QWidget) and not watched.hasFocus():
            event.ignore()
            return True
        return False


_wheel_guard: _WheelGuard | None = None


def _guard_wheel(widget: QWidget) -> None:
    global _wheel_guard
    if _wheel_guard is None:  # one filter for every editor, owned by the application
        _wheel_guard = _WheelGuard(QApplication.instance())
    widget.setFocusPolicy(Qt.FocusPolicy.StrongFocus)
    widget.installEventFilter(_wheel_guard)


class _TypedSpinBox(QSpinBox):
    """A spin box that takes whatever whole number is typed (the config then says what is wrong with it, in
    red, instead of the box silently putting the old value back), while its arrows stay in the allowed range."""

    def __init__(self, low: int, high: int) -> None:
        super().__init__()
        self.low, self.high = low, high
        self.setRange(-INT32_MAX, INT32_MAX)

    def stepBy(self, steps: int) -> None:
        self.setValue(min(max(self.value() + steps * self.singleStep(), self.low), self.high))

    def stepEnabled(self) -> QAbstractSpinBox.StepEnabledFlag:
        flags = QAbstractSpinBox.StepEnabledFlag.StepNone
        if self.value() < self.high:
            flags |= QAbstractSpinBox.StepEnabledFlag.StepUpEnabled
        if self.value() > self.low:
            flags |= QAbstractSpinBox.StepEnabledFlag.StepDownEnabled
        return flags


class IntEditor(FieldEditor):
    def __init__(self, meta: FieldMeta, parent: QWidget | None = None) -> None:
        super().__init__(meta, parent)
        low = int(meta.minimum) + (1 if meta.min_exclusive else 0) if meta.minimum is not None else 0
        high = int(meta.maximum) - (1 if meta.max_exclusive else 0) if meta.maximum is not None else INT32_MAX
        self.spin = _TypedSpinBox(max(low, -INT32_MAX), min(high, INT32_MAX))
        self.spin.setSingleStep(meta.multiple_of or 1)
        self.spin.setSuffix(meta.suffix)
        self.spin.setGroupSeparatorShown(True)
        self.spin.setAccelerated(True)
        _guard_wheel(self.spin)
        self.spin.valueChanged.connect(self._emit)
        self._add(self.spin)

    def value(self) -> Any:
        return self.spin.value()

    def _show(self, value: Any) -> None:
        self.spin.setValue(int(value))


class FloatEditor(FieldEditor):
    def __init__(self, meta: FieldMeta, parent: QWidget | None = None) -> None:
        super().__init__(meta, parent)
        self.spin = QDoubleSpinBox()
        self.spin.setDecimals(3)
        self.spin.setRange(meta.minimum if meta.minimum is not None else -1e9,
                           meta.maximum if meta.maximum is not None else 1e9)
        span = self.spin.maximum() - self.spin.minimum()
        self.spin.setSingleStep(0.01 if span <= 1 else 0.1 if span <= 100 else 1.0)
        self.spin.setSuffix(meta.suffix)
        _guard_wheel(self.spin)
        self.spin.valueChanged.connect(self._emit)
        self._add(self.spin)

    def value(self) -> Any:
        return round(self.spin.value(), self.spin.decimals())

    def _show(self, value: Any) -> None:
        self.spin.setValue(float(value))


class ScientificEditor(FieldEditor):
    """A number typed as text, so 1e-4 and 0.0001 both work; what does not parse stays text (and is flagged)."""

    def __init__(self, meta: FieldMeta, parent: QWidget | None = None) -> None:
        super().__init__(meta, parent)
        self.line = QLineEdit()
        self.line.setPlaceholderText(f"e.g. {meta.default:g}")
        self.line.textEdited.connect(self._emit)
        self._add(self.line)

    def value(self) -> Any:
        text = self.line.text().strip()
        try:
            return float(text)
        except ValueError:
            return text

    def _show(self, value: Any) -> None:
        self.line.setText(f"{value:g}" if isinstance(value, float) else str(value))


class ChoiceEditor(FieldEditor):
    def __init__(self, meta: FieldMeta, parent: QWidget | None = None) -> None:
        super().__init__(meta, parent)
        self.combo = QComboBox()
        self._fill()
        _guard_wheel(self.combo)
        self.combo.currentIndexChanged.connect(self._emit)
        self._add(self.combo)

    def _fill(self) -> None:
        titles = {"mode": MODE_TITLES, "sampling.sampler": SAMPLER_TITLES}.get(self.meta.name, {})
        for choice in self.meta.choices:
            self.combo.addItem(titles.get(choice, choice), choice)

    def value(self) -> Any:
        return self.combo.currentData()

    def _show(self, value: Any) -> None:
        self.combo.setCurrentIndex(self.combo.findData(value))


class ArchitectureEditor(ChoiceEditor):
    """The families under a header per generation (bold, neither selectable nor reachable by keys or wheel), each
    with the smallest GPU its shipped presets are made for; only families are ever chosen."""

    def _fill(self) -> None:
        cards = smallest_cards(list_presets())
        items = cast(QStandardItemModel, self.combo.model())  # QComboBox's own model
        bold = self.combo.font()
        bold.setBold(True)
        widest = 0
        for generation, names in architecture_groups():
            if generation:
                header = QStandardItem(generation)
                header.setFlags(Qt.ItemFlag.NoItemFlags)
                header.setFont(bold)
                items.appendRow(header)
                widest = max(widest, QFontMetrics(bold).horizontalAdvance(generation))
            for name in names:
                title = ARCHITECTURE_TITLES[name]
                card = cards.get(name)
                self.combo.addItem(f"{title} · {card[0]} GB GPU" if card else title, name)
                self.combo.setItemData(self.combo.count() - 1, (
                    f"{title}: its smallest preset, {card[1]}, is made for a {card[0]} GB GPU." if card
                    else f"{title}: no preset for a particular GPU ships for it."), Qt.ItemDataRole.ToolTipRole)
        # The open list sizes itself by the items' plain text: room for the bold headers too, or they are elided.
        self.combo.view().setMinimumWidth(widest + 32)


class BoolEditor(FieldEditor):
    def __init__(self, meta: FieldMeta, parent: QWidget | None = None) -> None:
        super().__init__(meta, parent)
        self.check = QCheckBox()
        self.check.toggled.connect(self._emit)
        self.layout().addWidget(self.check)

    def value(self) -> Any:
        return self.check.isChecked()

    def _show(self, value: Any) -> None:
        self.check.setChecked(bool(value))


class TextEditor(FieldEditor):
    def __init__(self, meta: FieldMeta, parent: QWidget | None = None) -> None:
        super().__init__(meta, parent)
        self.line = QLineEdit()
        self.line.textEdited.connect(self._emit)
        self._add(self.line)

    def value(self) -> Any:
        return self.line.text()

    def _show(self, value: Any) -> None:
        self.line.setText(str(value))


class PathEditor(TextEditor):
    """A path typed or chosen with Browse…; model weights (``model.path``, ``…_file``) are files, everything else a
    folder (a diffusers folder for ``model.path`` is typed or pasted)."""

    def __init__(self, meta: FieldMeta, parent: QWidget | None = None) -> None:
        super().__init__(meta, parent)
        self.line.setPlaceholderText("(none)")
        browse = QToolButton()
        browse.setText("…")
        browse.setToolTip("Browse…")
        browse.clicked.connect(self._browse)
        self.layout().addWidget(browse)  # keeps its natural width

    def _browse(self) -> None:
        if self.meta.name == "model.path" or self.meta.name.endswith("_file"):
            path, _ = QFileDialog.getOpenFileName(self, self.meta.label, self.line.text(),
                                                  "Model weights (*.safetensors);;All files (*)")
        else:
            path = QFileDialog.getExistingDirectory(self, self.meta.label, self.line.text())
        if path:
            self.line.setText(path)
            self._emit()


class StringListEditor(FieldEditor):
    """One item per line (prompts may contain commas)."""

    def __init__(self, meta: FieldMeta, parent: QWidget | None = None) -> None:
        super().__init__(meta, parent)
        self.text = QPlainTextEdit()
        self.text.setTabChangesFocus(True)
        self.text.setPlaceholderText("one per line")
        self.text.setFixedHeight(self.text.fontMetrics().lineSpacing() * 3 + 12)
        self.text.textChanged.connect(self._emit)
        self._add(self.text)

    def value(self) -> Any:
        return [line.strip() for line in self.text.toPlainText().splitlines() if line.strip()]

    def _show(self, value: Any) -> None:
        self.text.setPlainText("\n".join(str(item) for item in value))


class IntListEditor(FieldEditor):
    """Whole numbers separated by commas; an item that is not a number stays text (and is flagged)."""

    def __init__(self, meta: FieldMeta, parent: QWidget | None = None) -> None:
        super().__init__(meta, parent)
        self.line = QLineEdit()
        self.line.setPlaceholderText("e.g. 0, 1, 2")
        self.line.textEdited.connect(self._emit)
        self._add(self.line)

    def value(self) -> Any:
        items: list[Any] = []
        for part in self.line.text().split(","):
            part = part.strip()
            if part:
                try:
                    items.append(int(part))
                except ValueError:
                    items.append(part)
        return items

    def _show(self, value: Any) -> None:
        self.line.setText(", ".join(str(item) for item in value))


EDITORS: dict[str, type[FieldEditor]] = {
    "int": IntEditor, "float": FloatEditor, "scientific": ScientificEditor, "choice": ChoiceEditor,
    "bool": BoolEditor, "text": TextEditor, "path": PathEditor, "list_str": StringListEditor,
    "list_int": IntListEditor,
}


def make_editor(meta: FieldMeta, parent: QWidget | None = None) -> FieldEditor:
    return (ArchitectureEditor if meta.name == "model.architecture" else EDITORS[meta.kind])(meta, parent)

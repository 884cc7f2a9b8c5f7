"""The concept bar: what the images teach — the instance set (folder, token, caption template,
repeats, resolution) and, for DreamBooth, the class set (folder, prompt, how many).

A project's first concept *is* the config's ``dataset.*`` and ``dreambooth.class_*`` fields, so
training reads it unchanged; every editor here is bound to ``ConfigModel`` (two-way: a preset or
the Train page's form changing a field updates this bar).  GUI thread only.
"""

from __future__ import annotations

from PySide6.QtCore import Qt
from PySide6.QtWidgets import QGridLayout, QGroupBox, QLabel, QLineEdit, QSpinBox, QVBoxLayout, QWidget

from desktop_app.config_model import ConfigModel
from desktop_app.field_meta import meta_for


def bind_line(edit: QLineEdit, config: ConfigModel, name: str) -> QLineEdit:
    edit.setObjectName(f"concept:{name}")
    edit.setText(str(config.value(name)))
    edit.setToolTip(meta_for(name).tooltip)
    edit.editingFinished.connect(lambda: config.set_value(name, edit.text().strip()))
    config.valueChanged.connect(lambda field, value: edit.setText(str(value))
                                if field == name and edit.text() != str(value) else None)
    return edit


def bind_spin(spin: QSpinBox, config: ConfigModel, name: str, low: int, high: int, step: int = 1) -> QSpinBox:
    spin.setObjectName(f"concept:{name}")
    spin.setRange(low, high)
    spin.setSingleStep(step)
    spin.setValue(int(config.value(name)))
    spin.setToolTip(meta_for(name).tooltip)
    spin.setKeyboardTracking(False)
    spin.valueChanged.connect(lambda value: config.set_value(name, int(value)))
    config.valueChanged.connect(lambda field, value: spin.setValue(int(value))
                                if field == name and spin.value() != value else None)
    return spin


class ConceptBar(QWidget):
    """Instance set and class set of the project's concept, side by side."""

    def __init__(self, config: ConfigModel, class_images: QWidget, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("conceptBar")
        self.config = config
        self.folder = QLabel()
        self.folder.setObjectName("conceptFolder")
        self.folder.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.folder.setToolTip(meta_for("dataset.path").tooltip)
        self.token = bind_line(QLineEdit(), config, "dataset.instance_token")
        self.token.setMaximumWidth(120)
        self.template = bind_line(QLineEdit(), config, "dataset.caption_template")
        self.repeats = bind_spin(QSpinBox(), config, "dataset.repeats", 1, 1000)
        self.resolution = bind_spin(QSpinBox(), config, "dataset.resolution", 64, 4096, 64)
        self.resolution.setSuffix(" px")

        subject = QGroupBox("Subject (instance images)")
        grid = QGridLayout(subject)
        grid.setHorizontalSpacing(10)
        grid.addWidget(QLabel("Folder"), 0, 0)
        grid.addWidget(self.folder, 0, 1, 1, 5)
        grid.addWidget(QLabel("Token"), 1, 0)
        grid.addWidget(self.token, 1, 1)
        grid.addWidget(QLabel("Caption template"), 1, 2)
        grid.addWidget(self.template, 1, 3)
        grid.addWidget(QLabel("Repeats"), 1, 4)
        grid.addWidget(self.repeats, 1, 5)
        grid.addWidget(QLabel("Resolution"), 1, 6)
        grid.addWidget(self.resolution, 1, 7)
        grid.setColumnStretch(3, 1)
        grid.setColumnStretch(1, 0)

        self.class_group = QGroupBox("Class images (DreamBooth prior preservation)")
        self.class_group.setObjectName("classGroup")
        self.class_dir = bind_line(QLineEdit(), config, "dreambooth.class_dir")
        self.class_dir.setPlaceholderText("datasets/class (made when you generate)")
        self.class_prompt = bind_line(QLineEdit(), config, "dreambooth.class_prompt")
        self.class_count = bind_spin(QSpinBox(), config, "dreambooth.num_class_images", 0, 100_000, 10)
        self.class_count.setMaximumWidth(110)
        class_grid = QGridLayout(self.class_group)
        class_grid.setHorizontalSpacing(10)
        class_grid.addWidget(QLabel("Folder"), 0, 0)
        class_grid.addWidget(self.class_dir, 0, 1)
        class_grid.addWidget(QLabel("Prompt"), 0, 2)
        class_grid.addWidget(self.class_prompt, 0, 3)
        class_grid.addWidget(QLabel("How many"), 0, 4)
        class_grid.addWidget(self.class_count, 0, 5)
        class_grid.addWidget(class_images, 1, 0, 1, 6)
        class_grid.setColumnStretch(1, 2)
        class_grid.setColumnStretch(3, 3)

        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(subject)
        layout.addWidget(self.class_group)
        config.valueChanged.connect(self._value_changed)
        self._value_changed("mode", None)

    def _value_changed(self, name: str, _value: object) -> None:
        if name == "mode":
            self.class_group.setVisible(self.config.value("mode") == "dreambooth")

    def show_folder(self, text: str) -> None:
        self.folder.setText(text)

"""What the Dataset page shows in toy mode: the toy network learns a synthetic task, no images."""

from __future__ import annotations

from PySide6.QtCore import Qt
from PySide6.QtWidgets import QLabel, QVBoxLayout, QWidget

from desktop_app.train.config_model import ConfigModel


class ToyNote(QWidget):
    def __init__(self, model: ConfigModel, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.model = model
        self.note = QLabel()
        self.note.setObjectName("toyDatasetNote")
        self.note.setWordWrap(True)
        self.note.setProperty("role", "note")
        self.note.setAlignment(Qt.AlignmentFlag.AlignTop)
        self.note.setMaximumWidth(760)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(self.note)
        layout.addStretch(1)
        model.valueChanged.connect(lambda name, _v: self.refresh() if name.startswith("toy.") else None)
        self.refresh()

    def refresh(self) -> None:
        samples = self.model.value("toy.samples")
        share = self.model.value("toy.holdout_fraction")
        held_out = f"{share:.0%}" if isinstance(share, float) else "some"
        self.note.setText(
            "<p><b>No images needed.</b></p>"
            "<p>The toy network (10 → 50 → 50 → 1, the guide's first lesson) trains on synthetic data: "
            f"{samples:,} random points with 10 features each and a smooth target to learn.</p>"
            f"<p>{held_out} of them are held out and never trained on; the held-out loss shows how well "
            "the network generalises.</p>"
            "<p>Switch <i>What to train</i> to LoRA or DreamBooth to train on your own images.</p>")

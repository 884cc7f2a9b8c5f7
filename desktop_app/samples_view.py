"""The latest preview images of a Stable Diffusion run: one tile per prompt and seed.

Fed by the run model's ``samplesChanged``; the trainer writes the PNGs into the run folder and
sends only their paths.  (The growing grid of every step, with step-0 comparison, comes with the
live-preview issue.)  The images are a few small PNGs per sampling point, read on the GUI thread.
"""

from __future__ import annotations

from pathlib import Path

from PySide6.QtCore import Qt
from PySide6.QtGui import QPixmap
from PySide6.QtWidgets import QGridLayout, QLabel, QScrollArea, QVBoxLayout, QWidget

from desktop_app.run_model import RunModel
from trainer.protocol import Sample

TILE = 192  # px: large enough to judge a sample, small enough for two prompts × two seeds side by side
PLACEHOLDER = "Sample images appear here while a Stable Diffusion model trains."


class SamplesView(QWidget):
    def __init__(self, model: RunModel, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("samplesView")
        self.header = QLabel(PLACEHOLDER)
        self.header.setObjectName("samplesHeader")
        self.header.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self.header.setWordWrap(True)
        self.header.setProperty("role", "hint")
        self.tiles = QWidget()
        self.grid = QGridLayout(self.tiles)
        self.grid.setSpacing(12)
        scroll = QScrollArea()
        scroll.setWidgetResizable(True)
        scroll.setFrameShape(QScrollArea.Shape.NoFrame)
        scroll.setWidget(self.tiles)
        layout = QVBoxLayout(self)
        layout.addWidget(self.header)
        layout.addWidget(scroll, 1)
        model.samplesChanged.connect(self.show_samples)

    def tile_count(self) -> int:
        return self.grid.count()

    def show_samples(self, sample: Sample | None) -> None:
        while self.grid.count():
            item = self.grid.takeAt(0)
            if item.widget() is not None:
                item.widget().deleteLater()
        if sample is None:
            self.header.setText(PLACEHOLDER)
            return
        what = "the base model, before training" if sample.step == 0 else f"step {sample.step:,}"
        self.header.setText(f"Samples at {what}")
        seeds_per_prompt = max(1, len(set(sample.seeds)))
        for index, (path, prompt, seed) in enumerate(zip(sample.paths, sample.prompts, sample.seeds, strict=True)):
            self.grid.addWidget(self._tile(Path(path), prompt, seed), index // seeds_per_prompt,
                                index % seeds_per_prompt)

    def _tile(self, path: Path, prompt: str, seed: int) -> QWidget:
        tile = QWidget()
        image = QLabel()
        image.setAlignment(Qt.AlignmentFlag.AlignCenter)
        pixmap = QPixmap(str(path))
        if pixmap.isNull():
            image.setText(f"(cannot read {path.name})")
        else:
            image.setPixmap(pixmap.scaled(TILE, TILE, Qt.AspectRatioMode.KeepAspectRatio,
                                          Qt.TransformationMode.SmoothTransformation))
        caption = QLabel(f"{prompt}\nseed {seed}")
        caption.setAlignment(Qt.AlignmentFlag.AlignCenter)
        caption.setWordWrap(True)
        caption.setMaximumWidth(TILE)
        caption.setToolTip(str(path))
        layout = QVBoxLayout(tile)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(image)
        layout.addWidget(caption)
        return tile

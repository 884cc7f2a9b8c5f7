"""The Dataset panel: which images the run learns from.

For now it chooses the image folder (``dataset.path``) and lists what is in it; the dataset
issue turns it into a full curation view.  The toy network learns a synthetic task, so in toy
mode the panel says so instead of asking for images.
"""

from __future__ import annotations

from pathlib import Path

from PySide6.QtCore import Qt
from PySide6.QtWidgets import (
    QFileDialog,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QListWidget,
    QPushButton,
    QStackedWidget,
    QVBoxLayout,
    QWidget,
)

from desktop_app.config_model import ConfigModel
from desktop_app.field_meta import meta_for

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".webp", ".bmp"}
LISTED_AT_MOST = 2000  # the dataset issue brings a background scan and thumbnails
REFRESH_ON = {"mode", "model.architecture", "dataset.path", "dataset.caption_extension", "toy.samples",
              "toy.holdout_fraction"}


def scan_folder(folder: Path, caption_extension: str) -> tuple[list[str], int]:
    """(image file names, how many have a caption file beside them)."""
    images = sorted(p.name for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())
    captioned = sum(1 for name in images if (folder / name).with_suffix(caption_extension).is_file())
    return images, captioned


class DatasetPanel(QWidget):
    def __init__(self, model: ConfigModel, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("datasetPanel")
        self.model = model
        title = QLabel("Dataset")
        title.setProperty("role", "panelTitle")

        self.toy_note = QLabel()
        self.toy_note.setObjectName("toyDatasetNote")
        self.toy_note.setWordWrap(True)
        self.toy_note.setProperty("role", "note")
        self.toy_note.setAlignment(Qt.AlignmentFlag.AlignTop)

        self.folder = QLineEdit()
        self.folder.setPlaceholderText("Choose a folder of images…")
        self.folder.setToolTip(meta_for("dataset.path").tooltip)
        self.folder.editingFinished.connect(lambda: self.model.set_value("dataset.path", self.folder.text().strip()))
        browse = QPushButton("Choose folder…")
        browse.clicked.connect(self._browse)
        folder_row = QHBoxLayout()
        folder_row.addWidget(browse)
        folder_row.addStretch(1)
        self.error = QLabel()
        self.error.setObjectName("error:dataset.path")
        self.error.setProperty("role", "fieldError")
        self.error.setWordWrap(True)
        self.error.hide()
        self.counts = QLabel()
        self.counts.setObjectName("datasetCounts")
        self.counts.setWordWrap(True)
        self.images = QListWidget()
        self.images.setObjectName("datasetImages")
        images_page = QWidget()
        images_layout = QVBoxLayout(images_page)
        images_layout.setContentsMargins(0, 0, 0, 0)
        images_layout.addWidget(QLabel("Image folder"))
        images_layout.addWidget(self.folder)
        images_layout.addLayout(folder_row)
        images_layout.addWidget(self.error)
        images_layout.addWidget(self.counts)
        images_layout.addWidget(self.images, 1)
        images_layout.addStretch(0)

        toy_page = QWidget()
        toy_layout = QVBoxLayout(toy_page)
        toy_layout.setContentsMargins(0, 0, 0, 0)
        toy_layout.addWidget(self.toy_note)
        toy_layout.addStretch(1)
        self.pages = QStackedWidget()
        self.pages.addWidget(toy_page)
        self.pages.addWidget(images_page)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(8, 8, 4, 8)
        layout.addWidget(title)
        layout.addWidget(self.pages, 1)

        model.valueChanged.connect(self._on_value_changed)
        model.errorsChanged.connect(self._show_error)
        self._refresh()
        self._show_error()

    def _show_error(self) -> None:
        message = self.model.error_for("dataset.path")
        self.error.setText(message or "")
        self.error.setVisible(bool(message))

    def _browse(self) -> None:
        folder = QFileDialog.getExistingDirectory(self, "Image folder", self.folder.text())
        if folder:
            self.model.set_value("dataset.path", folder)

    def _on_value_changed(self, name: str, _value: object) -> None:
        if name in REFRESH_ON:
            self._refresh()

    def _refresh(self) -> None:
        toy = self.model.value("model.architecture") == "toy"
        self.pages.setCurrentIndex(0 if toy else 1)
        if toy:
            samples = self.model.value("toy.samples")
            share = self.model.value("toy.holdout_fraction")
            held_out = f"{share:.0%}" if isinstance(share, float) else "some"
            self.toy_note.setText(
                "<p><b>No images needed.</b></p>"
                "<p>The toy network (10 → 50 → 50 → 1, the guide's first lesson) trains on synthetic data: "
                f"{samples:,} random points with 10 features each and a smooth target to learn.</p>"
                f"<p>{held_out} of them are held out and never trained on; the held-out loss shows how well "
                "the network generalises.</p>"
                "<p>Switch <i>What to train</i> to LoRA or DreamBooth to train on your own images.</p>")
            return
        path = str(self.model.value("dataset.path"))
        if self.folder.text() != path:
            self.folder.setText(path)
        self.images.clear()
        self.images.hide()
        folder = Path(path).expanduser() if path else None
        if folder is None:
            self.counts.setText("No folder chosen yet. Pick one with images and a same-named .txt caption "
                                "beside each (the kohya_ss / OneTrainer layout).")
        elif not folder.is_dir():
            self.counts.setText(f"Folder not found: {folder}")
        else:
            try:
                images, captioned = scan_folder(folder, str(self.model.value("dataset.caption_extension")))
            except OSError as exc:
                self.counts.setText(f"Cannot read the folder: {exc.strerror}")
                return
            self.counts.setText(f"{len(images):,} images, {captioned:,} with captions")
            self.images.addItems(images[:LISTED_AT_MOST])
            self.images.setVisible(bool(images))

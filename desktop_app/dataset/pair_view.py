"""The selected image as a before/after pair: its control images → the target, above its caption.

Shown on the Caption tab while one image of a concept of pairs is selected (or of any concept when the
model family trains on pairs), so the instruction caption is edited with both pictures in view.  Each
control image sits in a *slot*; an image file dropped on a slot becomes that control image, copied in
beside the target by the suffix convention (``DatasetModel.set_control``: the dropped file is only
read); an empty slot after the last one takes another reference image where the family takes more.
A folder outside the project shows its pairs read-only.

Thumbnails come from the page's ``ThumbnailLoader`` (worker processes, the disk cache), like the grid's.
GUI thread only.
"""

from __future__ import annotations

from pathlib import Path

from PySide6.QtCore import Qt, Signal
from PySide6.QtGui import QDragEnterEvent, QDropEvent, QImage, QPixmap
from PySide6.QtWidgets import QHBoxLayout, QLabel, QVBoxLayout, QWidget

from desktop_app.dataset.model import DatasetModel
from desktop_app.dataset.thumbnails import THUMB_SIZE, ThumbnailLoader
from trainer.dataset.pairs import is_control_name
from trainer.dataset.scan import is_image_name

SMALL_SIDE = 96  # a slot's side when there are more pictures than fit at full size
_SLOT_STYLE = ("QLabel#{name} {{ background: #f5f7fa; border: 1px {line} {edge}; border-radius: 6px; "
               "color: #52606d; font-size: 9pt; }}")


def dropped_image(event: QDragEnterEvent | QDropEvent) -> Path | None:
    """The one local image file a drag carries (a control image of another pair too), or None."""
    urls = event.mimeData().urls() if event.mimeData().hasUrls() else []
    paths = [Path(url.toLocalFile()) for url in urls if url.isLocalFile()]
    if len(paths) != 1 or not (is_image_name(paths[0].name) or is_control_name(paths[0].name)):
        return None
    return paths[0]


class PictureSlot(QLabel):
    """One picture of the pair; a control slot takes a dropped image file (``dropped(number, path)``)."""

    dropped = Signal(int, Path)

    def __init__(self, number: int, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.number = number  # the control's reference number; 0 for the target
        self.path: Path | None = None
        self.setObjectName("targetSlot" if number == 0 else f"controlSlot{number}")
        self.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self.setWordWrap(True)
        self.set_side(THUMB_SIZE)

    def set_side(self, side: int) -> None:
        self.setFixedSize(side + 8, side + 8)

    def show_picture(self, path: Path | None, image: QImage | None, empty_text: str) -> None:
        self.path = path
        side = self.width() - 8
        if image is not None and not image.isNull():
            self.setPixmap(QPixmap.fromImage(image).scaled(side, side, Qt.AspectRatioMode.KeepAspectRatio,
                                                           Qt.TransformationMode.SmoothTransformation))
        else:
            self.setPixmap(QPixmap())
            self.setText("…" if path is not None else empty_text)
        dashed = path is None
        self.setStyleSheet(_SLOT_STYLE.format(name=self.objectName(), line="dashed" if dashed else "solid",
                                              edge="#9aa5b1" if dashed else "#d9e2ec"))

    def set_accepting(self, on: bool) -> None:
        self.setAcceptDrops(on and self.number > 0)

    def dragEnterEvent(self, event: QDragEnterEvent) -> None:
        if dropped_image(event) is not None:
            event.acceptProposedAction()

    def dropEvent(self, event: QDropEvent) -> None:
        path = dropped_image(event)
        if path is not None:
            event.acceptProposedAction()
            self.dropped.emit(self.number, path)


class PairView(QWidget):
    """Control images → target of the selected image (see the module docstring)."""

    def __init__(self, dataset: DatasetModel, loader: ThumbnailLoader, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("pairView")
        self.dataset = dataset
        self.loader = loader
        self.row: int | None = None
        self.title = QLabel("<b>Before/after pair</b>")
        self.slots_row = QHBoxLayout()
        self.slots_row.setSpacing(6)
        self.controls: list[PictureSlot] = []
        self.arrow = QLabel("→")
        self.arrow.setStyleSheet("color: #7b8794; font-size: 16pt;")
        self.target = PictureSlot(0)
        self.hint = QLabel()
        self.hint.setObjectName("pairHint")
        self.hint.setProperty("role", "subtle")
        self.hint.setWordWrap(True)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 6)
        layout.addWidget(self.title)
        layout.addLayout(self.slots_row)
        layout.addWidget(self.hint)
        loader.ready.connect(self._thumbnail_ready)
        dataset.controlsChanged.connect(lambda row: self.show_row(row) if row == self.row else None)
        dataset.reset.connect(lambda: self.show_row(None))
        self.show_row(None)

    def _slot_count(self, controls: int) -> int:
        """The control slots to show: one per control image, and an empty one for another where it can be used."""
        use = self.dataset.settings.pairs
        room = controls == 0 or (use is not None and use.control_images > controls)
        return controls + (1 if self.dataset.editable and room else 0)

    def wanted(self, row: int | None) -> bool:
        """Whether the view shows for ``row``: one image of a concept of pairs, or of an edit family's concept."""
        entry = self.dataset.entry(row)
        use = self.dataset.settings.pairs
        return entry is not None and (self.dataset.paired or (use is not None and use.edit))

    def show_row(self, row: int | None) -> None:
        self.row = row
        self.setVisible(self.wanted(row))
        entry = self.dataset.entry(row)
        if entry is None or not self.wanted(row):
            return
        count = self._slot_count(len(entry.controls))
        while len(self.controls) < count:
            slot = PictureSlot(len(self.controls) + 1)
            slot.dropped.connect(self._dropped)
            self.controls.append(slot)
        side = THUMB_SIZE if count <= 1 else SMALL_SIDE
        while self.slots_row.count():
            self.slots_row.takeAt(0)
        for number, slot in enumerate(self.controls, start=1):
            slot.setVisible(number <= count)
            if number <= count:
                slot.set_side(side)
                slot.set_accepting(self.dataset.editable)
                self.slots_row.addWidget(slot)
        self.slots_row.addWidget(self.arrow)
        self.target.set_side(side)
        self.slots_row.addWidget(self.target)
        self.slots_row.addStretch(1)
        for number, slot in enumerate(self.controls[:count], start=1):
            path = entry.controls[number - 1] if number <= len(entry.controls) else None
            slot.show_picture(path, None, "Drop the control (before) image here" if self.dataset.editable
                              else "no control image")
            if path is not None:
                self.loader.request(str(path))
        self.target.show_picture(entry.path, None, "")
        self.loader.request(str(entry.path))
        names = " + ".join(path.name for path in entry.controls) or "no control image"
        self.hint.setText(f"{names} → {entry.path.name}. " + (
            "Drop an image on a control slot to set it (it is copied in; the file you drop is not changed)."
            if self.dataset.editable else "A folder outside the project is read-only."))

    def _thumbnail_ready(self, path: str, image: QImage) -> None:
        for slot in [*self.controls, self.target]:
            if not slot.isHidden() and slot.path is not None and str(slot.path) == path:
                slot.show_picture(slot.path, image, "")

    def _dropped(self, number: int, path: Path) -> None:
        if self.row is not None:
            self.dataset.set_control(self.row, number, path)

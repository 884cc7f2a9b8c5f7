"""The bucket preview: which aspect-ratio bucket each image lands in, as a histogram.

Buckets come from ``trainer.dataset.buckets`` — the very function training uses — applied to
each image's oriented size, or to its crop when it has one.  The selected image's bucket is
drawn in the accent colour.  Painted by hand (a few dozen bars), GUI thread only.
"""

from __future__ import annotations

from PySide6.QtCore import QRectF, QSize, Qt
from PySide6.QtGui import QColor, QPainter, QPaintEvent
from PySide6.QtWidgets import QLabel, QVBoxLayout, QWidget

from desktop_app.dataset.model import DatasetModel, Entry
from trainer.dataset import Severity, assign_bucket

Bucket = tuple[int, int]


def bucket_of(entry: Entry, buckets: list[Bucket]) -> Bucket | None:
    if entry.size is None:
        return None
    if entry.crop is not None:
        left, top, right, bottom = entry.crop.box
        return assign_bucket(right - left, bottom - top, buckets)
    return assign_bucket(*entry.size, buckets)


class Histogram(QWidget):
    ROW = 20

    def __init__(self) -> None:
        super().__init__()
        self.setObjectName("bucketHistogram")
        self.counts: dict[Bucket, int] = {}
        self.highlight: Bucket | None = None

    def set_counts(self, counts: dict[Bucket, int], highlight: Bucket | None) -> None:
        self.counts, self.highlight = counts, highlight
        self.setMinimumHeight(self.ROW * max(1, len(counts)) + 8)
        self.updateGeometry()
        self.update()

    def sizeHint(self) -> QSize:
        return QSize(300, self.ROW * max(1, len(self.counts)) + 8)

    def paintEvent(self, _event: QPaintEvent) -> None:
        painter = QPainter(self)
        if not self.counts:
            painter.setPen(QColor("#7b8794"))
            painter.drawText(self.rect(), Qt.AlignmentFlag.AlignCenter, "No image sizes yet.")
            return
        label_w, count_w = 84, 44
        bar_w = max(10, self.width() - label_w - count_w - 8)
        most = max(self.counts.values())
        for i, (bucket, count) in enumerate(self.counts.items()):
            y = 4 + i * self.ROW
            painter.setPen(QColor("#323f4b"))
            painter.drawText(QRectF(0, y, label_w - 6, self.ROW), Qt.AlignmentFlag.AlignRight
                             | Qt.AlignmentFlag.AlignVCenter, f"{bucket[0]}×{bucket[1]}")
            width = bar_w * count / most
            colour = QColor("#7c5cff") if bucket == self.highlight else QColor("#84caff")
            painter.fillRect(QRectF(label_w, y + 3, max(2.0, width), self.ROW - 6), colour)
            painter.drawText(QRectF(label_w + width + 4, y, count_w, self.ROW), Qt.AlignmentFlag.AlignVCenter,
                             str(count))


class BucketsView(QWidget):
    def __init__(self, dataset: DatasetModel, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("bucketsView")
        self.dataset = dataset
        self.row: int | None = None
        self.summary = QLabel()
        self.summary.setObjectName("bucketSummary")
        self.summary.setWordWrap(True)
        self.histogram = Histogram()
        layout = QVBoxLayout(self)
        layout.setContentsMargins(8, 8, 8, 8)
        layout.addWidget(self.summary)
        layout.addWidget(self.histogram)
        layout.addStretch(1)
        for signal in (dataset.reset, dataset.sizesChanged):
            signal.connect(self.refresh)
        dataset.cropChanged.connect(lambda _row: self.refresh())
        self.refresh()

    def show_row(self, row: int | None) -> None:
        self.row = row
        self.refresh()

    def counts(self) -> dict[Bucket, int]:
        buckets = self.dataset.settings.buckets()
        found: dict[Bucket, int] = {}
        for entry in self.dataset.entries:
            if entry.worst is Severity.ERROR:
                continue  # training skips it, so it takes no place in a bucket
            bucket = bucket_of(entry, buckets)
            if bucket is not None:
                found[bucket] = found.get(bucket, 0) + 1
        return dict(sorted(found.items(), key=lambda item: (item[0][0] / item[0][1], item[0][0])))

    def refresh(self) -> None:
        counts = self.counts()
        buckets = self.dataset.settings.buckets()
        entry = self.dataset.entry(self.row)
        mine = bucket_of(entry, buckets) if entry is not None else None
        self.histogram.set_counts(counts, mine)
        sized = sum(counts.values())
        plural = "s" if len(counts) != 1 else ""
        text = (f"{sized:,} usable images in {len(counts)} bucket{plural} at {self.dataset.settings.resolution} px "
                "(tall at the top, wide at the bottom).")
        if mine is not None and entry is not None:
            text += f" <b>{entry.path.name}</b> → {mine[0]}×{mine[1]}."
        self.summary.setText(text if counts else "Bucket sizes appear once the images' headers are read.")

"""What the Dataset page knows about each image (``Entry``), the concept's settings, and the two
reads that fill them in a worker process: the listing (captions and edits) and the image sizes.

No Qt: ``list_entries`` and ``read_sizes`` run in the worker processes of ``DatasetModel`` (``jobs``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from trainer.dataset import Caption, CropRecord, DatasetCache, Finding, Severity, list_images, read_caption, read_header
from trainer.dataset.buckets import training_buckets
from trainer.dataset.caption_ops import CaptionVariation
from trainer.dataset.pair_health import PairUse


@dataclass(frozen=True)
class DatasetSettings:
    """What the concept's config says about its images (from ``dataset.*``)."""

    resolution: int = 512
    token: str = "sks"
    template: str = "a photo of {token}"
    caption_extension: str = ".txt"
    min_bucket_side: int = 256
    max_bucket_side: int = 1024
    bucketing: bool = True
    variation: CaptionVariation = field(default_factory=CaptionVariation)  # how training varies each caption
    masked_loss: bool = False  # whether training reads the loss masks
    pairs: PairUse | None = None  # what the concept's model family does with control images

    def buckets(self) -> list[tuple[int, int]]:
        """Exactly the buckets training will use (``trainer.dataset.buckets.training_buckets``)."""
        return training_buckets(self.resolution, self.min_bucket_side, self.max_bucket_side, self.bucketing)


@dataclass
class Entry:
    path: Path
    original: Caption  # the caption file beside the image, as read
    edited: str | None = None  # the caption edited in Kamaal, if any
    size: tuple[int, int] | None = None  # oriented size, once the headers are read
    crop: CropRecord | None = None
    findings: list[Finding] = field(default_factory=list)
    mask: Path | None = None  # its loss mask, NAME.mask.png beside it (``trainer.dataset.masks``)
    controls: tuple[Path, ...] = ()  # its control images when it is a before/after pair (``trainer.dataset.pairs``)

    @property
    def caption(self) -> str:
        return self.edited if self.edited is not None else self.original.text

    @property
    def worst(self) -> Severity | None:
        return min((f.severity for f in self.findings), key=lambda s: s.rank, default=None)


def list_entries(folder: Path, edits: DatasetCache, extension: str) -> tuple[list[Entry], int]:
    """Worker thread: the folder's entries (captions read, removed ones left out) and how many were removed."""
    removed = edits.removed()
    captions, crops = edits.all_captions(), edits.all_crops()  # one walk each, not three lookups per image
    entries = []
    for item in list_images(folder, caption_extension=extension).items:
        if item.image in removed:
            continue
        edited = captions.get(item.image)
        entries.append(Entry(item.image, read_caption(item.caption), edited.text if edited else None,
                             crop=crops.get(item.image), mask=item.mask, controls=item.controls))
    return entries, len(removed)


def read_sizes(paths: list[Path]) -> dict[Path, tuple[int, int]]:
    sizes = {}
    for path in paths:
        try:
            sizes[path] = read_header(path).oriented_size
        except Exception:  # the health check names what is wrong with it
            continue
    return sizes

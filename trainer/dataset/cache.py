"""The project's dataset cache: edited captions and crop records, kept apart from the originals.

Originals are never modified.  When the user edits a caption or chooses a crop in Kamaal, the
result is written here, under the project's cache folder, mirroring the dataset's layout::

    CACHE/captions/sub/photo.jpg.txt     the edited caption of DATASET/sub/photo.jpg
    CACHE/crops/sub/photo.jpg.json       {"box": [left, top, right, bottom], "size": [w, h]}

The image's full name (extension included) is kept so ``a.jpg`` and ``a.png`` never collide.
Every write is atomic (``trainer.fsutil``): a crash never leaves half a caption behind.

Standard library only.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from trainer.dataset.captions import Caption, CaptionStatus, read_caption
from trainer.fsutil import atomic_write_text

Box = tuple[int, int, int, int]  # left, top, right, bottom in the oriented image's pixels


@dataclass(frozen=True)
class CropRecord:
    box: Box
    size: tuple[int, int]  # the oriented image size the box refers to; a changed image invalidates it


@dataclass(frozen=True)
class DatasetCache:
    """Edited captions and crops of the dataset at ``dataset``, stored under ``root``."""

    root: Path
    dataset: Path

    def _key(self, image: Path) -> Path:
        try:
            return Path(image).resolve().relative_to(Path(self.dataset).resolve())
        except ValueError:
            raise ValueError(f"{image} is not inside the dataset folder {self.dataset}") from None

    def caption_path(self, image: Path) -> Path:
        key = self._key(image)
        return self.root / "captions" / key.parent / f"{key.name}.txt"

    def crop_path(self, image: Path) -> Path:
        key = self._key(image)
        return self.root / "crops" / key.parent / f"{key.name}.json"

    def read_caption(self, image: Path) -> Caption | None:
        """The edited caption, or ``None`` when the user has not edited this image's caption."""
        caption = read_caption(self.caption_path(image))
        return None if caption.status is CaptionStatus.MISSING else caption

    def write_caption(self, image: Path, text: str) -> Path:
        path = self.caption_path(image)
        atomic_write_text(path, text.strip() + "\n")
        return path

    def forget_caption(self, image: Path) -> None:
        """Go back to the caption beside the image (or the template)."""
        self.caption_path(image).unlink(missing_ok=True)

    def read_crop(self, image: Path) -> CropRecord | None:
        try:
            data = json.loads(self.crop_path(image).read_text(encoding="utf-8"))
            left, top, right, bottom = (int(v) for v in data["box"])
            width, height = (int(v) for v in data["size"])
        except FileNotFoundError:
            return None
        except (OSError, ValueError, KeyError, TypeError):
            return None  # a damaged record means "no crop", never a crash; the user can crop again
        return CropRecord((left, top, right, bottom), (width, height))

    def write_crop(self, image: Path, record: CropRecord) -> Path:
        left, top, right, bottom = record.box
        width, height = record.size
        if not (0 <= left < right <= width and 0 <= top < bottom <= height):
            raise ValueError(f"crop box {record.box} does not fit inside a {width}×{height} image")
        path = self.crop_path(image)
        atomic_write_text(path, json.dumps({"box": list(record.box), "size": list(record.size)}) + "\n")
        return path

"""The project's dataset edits: edited captions, crop records and removed images, apart from the originals.

Originals are never modified.  When the user edits a caption, chooses a crop or removes an image
in Kamaal, the result is written here, mirroring the dataset's layout::

    CACHE/captions/sub/photo.jpg.txt     the edited caption of DATASET/sub/photo.jpg
    CACHE/crops/sub/photo.jpg.json       {"box": [left, top, right, bottom], "size": [w, h]}
    CACHE/removed.json                   {"removed": ["sub/photo.jpg", ...]} (left out of training)

The panel imports images into a folder of the project, and keeps that folder's edits in a hidden
``.kamaal`` folder inside it (``DatasetCache.for_folder``), where the trainer finds them with
nothing but the dataset path: the run trains on exactly what the panel shows.

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

EDITS_FOLDER = ".kamaal"  # hidden: list_images skips dot folders, so edits are never taken for images
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

    @classmethod
    def for_folder(cls, folder: Path) -> DatasetCache:
        """The edits that belong to dataset ``folder`` (kept in ``folder/.kamaal``; may not exist yet)."""
        return cls(Path(folder) / EDITS_FOLDER, Path(folder))

    def _key(self, image: Path) -> Path:
        # The image's own name in the folder, not where a symbolic link leads: a linked image (even one
        # outside the folder, or a dangling link) has its edits under the name the folder shows.
        image = Path(image)
        try:
            return (image.parent.resolve() / image.name).relative_to(Path(self.dataset).resolve())
        except (ValueError, RuntimeError, OSError):
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

    # -------------------------------------------------------------- everything at once

    def _walk(self, kind: str, suffix: str) -> dict[Path, Path]:
        """Image path → record file, for every record of ``kind`` (one directory walk, no per-image stat)."""
        base = self.root / kind
        if not base.is_dir():
            return {}
        found = {}
        for record in base.rglob(f"*{suffix}"):
            relative = record.relative_to(base).as_posix()[: -len(suffix)]
            found[Path(self.dataset) / relative] = record
        return found

    def all_captions(self) -> dict[Path, Caption]:
        """Every edited caption, keyed by image path (as ``Path(dataset) / relative``): fast for big folders."""
        captions = {image: read_caption(path) for image, path in self._walk("captions", ".txt").items()}
        return {image: caption for image, caption in captions.items() if caption.status is not CaptionStatus.MISSING}

    def all_crops(self) -> dict[Path, CropRecord]:
        """Every readable crop record, keyed like ``all_captions``."""
        crops = {image: self.read_crop(image) for image in self._walk("crops", ".json")}
        return {image: crop for image, crop in crops.items() if crop is not None}

    # -------------------------------------------------------------- removed images

    @property
    def removed_path(self) -> Path:
        return self.root / "removed.json"

    def removed(self) -> set[Path]:
        """Images the user removed from the dataset (still on disk; training leaves them out)."""
        try:
            names = json.loads(self.removed_path.read_text(encoding="utf-8"))["removed"]
        except FileNotFoundError:
            return set()
        except (OSError, ValueError, KeyError, TypeError):
            return set()  # a damaged list removes nothing: better one image too many than a lost dataset
        return {Path(self.dataset) / name for name in names if isinstance(name, str)}

    def set_removed(self, images: list[Path], removed: bool = True) -> set[Path]:
        """Remove ``images`` from the dataset (or put them back); returns the new removed set."""
        current = {self._key(path).as_posix() for path in self.removed()}
        changed = {self._key(path).as_posix() for path in images}
        current = current | changed if removed else current - changed
        atomic_write_text(self.removed_path, json.dumps({"removed": sorted(current)}, ensure_ascii=False) + "\n")
        return {Path(self.dataset) / name for name in current}

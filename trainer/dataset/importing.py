"""Importing images into a project: copies, never moves, and never touches the originals.

Decision (what a serious trainer does): the project owns its training data.  Importing a
folder, files or a drag-and-drop *copies* the images — and their same-named caption files and loss masks —
into the concept's folder inside the project (``PROJECT/datasets/<concept>/``), so the
project stays complete when the originals move, and a later edit in another program cannot
silently change a finished run's data.  Copies, not hard links: an editor that saves in place
would change a hard-linked "copy" too.  Edits Kamaal makes (captions, crops, removals) go to
the folder's ``.kamaal`` edits (``DatasetCache``), so even the copies stay byte-identical to
the originals; a mask painted on the Dataset page is a file of its own beside the copy.  A
folder already inside the project is used where it is.

A name already taken gets a ``-2``, ``-3``… suffix; an identical file already present is
skipped.  Every copy is atomic (temp file, fsync, rename).  Runs on whatever thread calls it
(the GUI calls it on a worker thread); ``progress(done, total)`` is called on that thread and
setting ``cancel`` stops it between files.

Standard library and the dataset library's listing (Pillow).
"""

from __future__ import annotations

import filecmp
import os
import shutil
import tempfile
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

from trainer.dataset.masks import mask_path_for
from trainer.dataset.scan import CAPTION_EXTENSION, is_image_name, list_images


@dataclass
class ImportResult:
    copied: list[Path] = field(default_factory=list)  # the new files in the destination
    skipped: list[Path] = field(default_factory=list)  # sources that were not images, or already there
    cancelled: bool = False


Found = tuple[Path, Path | None, Path | None]  # an image, its caption file, its loss mask


def expand_sources(sources: Iterable[Path], caption_extension: str = CAPTION_EXTENSION) -> list[Found]:
    """(image, caption or None, mask or None) for every image among ``sources``; folders are listed (not
    recursively).  A mask chosen on its own is not an image: it comes with its image or not at all."""
    found: list[Found] = []
    for source in sources:
        source = Path(source)
        if source.is_dir():
            found += [(item.image, item.caption, item.mask)
                      for item in list_images(source, caption_extension=caption_extension).items]
        elif is_image_name(source.name) and source.exists():
            caption = source.with_suffix(caption_extension)
            mask = mask_path_for(source)
            found.append((source, caption if caption.is_file() else None, mask if mask.is_file() else None))
    return found


def _free_name(folder: Path, name: str) -> Path:
    stem, suffix = os.path.splitext(name)
    candidate, n = folder / name, 1
    while candidate.exists():
        n += 1
        candidate = folder / f"{stem}-{n}{suffix}"
    return candidate


def _atomic_copy(source: Path, target: Path) -> None:
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    os.close(fd)
    try:
        shutil.copyfile(source, tmp)
        with open(tmp, "rb") as handle:
            os.fsync(handle.fileno())
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def import_images(sources: Iterable[Path], destination: Path, *, caption_extension: str = CAPTION_EXTENSION,
                  progress: Callable[[int, int], None] | None = None,
                  cancel: threading.Event | None = None) -> ImportResult:
    """Copy the images of ``sources`` (files and folders) with their captions and masks into ``destination``."""
    destination = Path(destination)
    destination.mkdir(parents=True, exist_ok=True)
    pairs = expand_sources(sources, caption_extension)
    result = ImportResult()
    for done, (image, caption, mask) in enumerate(pairs, start=1):
        if cancel is not None and cancel.is_set():
            result.cancelled = True
            break
        same = destination / image.name
        if image.resolve().parent == destination.resolve() or (
                same.is_file() and filecmp.cmp(image, same, shallow=False)):
            result.skipped.append(image)
        else:
            target = _free_name(destination, image.name)
            _atomic_copy(image, target)
            if caption is not None and caption.is_file():
                _atomic_copy(caption, target.with_suffix(caption_extension))
            if mask is not None and mask.is_file():  # renamed with its image (photo-2.jpg → photo-2.mask.png)
                _atomic_copy(mask, mask_path_for(target))
            result.copied.append(target)
        if progress is not None:
            progress(done, len(pairs))
    return result

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

Before/after pairs (``trainer.dataset.pairs``) stay pairs: a target's control images come with it,
from either layout, and land beside the copy by the suffix convention (``target/cat.png`` +
``control/cat.jpg`` → ``cat.png`` + ``cat_control.jpg``), so a project's concept folder is one flat
folder whatever the source looked like; a control chosen on its own is not an image (it comes with
its target or not at all).  ``import_found`` copies pairs made by hand (two images dropped together),
``add_control`` puts a control beside an image already in the project.

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
from typing import NamedTuple

from trainer.dataset.masks import mask_path_for
from trainer.dataset.pairs import (
    control_name,
    control_path,
    control_paths_for,
    controls_of,
    is_control_name,
    numbered_controls,
)
from trainer.dataset.scan import CAPTION_EXTENSION, is_image_name, list_images


@dataclass
class ImportResult:
    copied: list[Path] = field(default_factory=list)  # the new files in the destination
    skipped: list[Path] = field(default_factory=list)  # sources that were not images, or already there
    cancelled: bool = False


class Found(NamedTuple):
    """An image to import and the files that go with it."""

    image: Path
    caption: Path | None
    mask: Path | None
    controls: tuple[Path, ...] = ()  # its control images, in reference order


def found_file(image: Path, caption_extension: str = CAPTION_EXTENSION,
               controls: tuple[Path, ...] | None = None) -> Found:
    """An image file with its caption and mask beside it, and its controls (``None``: the ones it has)."""
    caption = image.with_suffix(caption_extension)
    mask = mask_path_for(image)
    return Found(image, caption if caption.is_file() else None, mask if mask.is_file() else None,
                 control_paths_for(image) if controls is None else controls)


def expand_sources(sources: Iterable[Path], caption_extension: str = CAPTION_EXTENSION) -> list[Found]:
    """Every image among ``sources`` with its caption, mask and controls; folders are listed (not
    recursively).  A mask or control chosen on its own is not an image: it comes with its image or not
    at all."""
    found: list[Found] = []
    sources = [Path(source) for source in sources]
    files = [source for source in sources if not source.is_dir() and is_image_name(source.name) and source.exists()]
    controls = controls_of(files)  # each folder listed once, however many of its files were chosen
    for source in sources:
        if source.is_dir():
            found += [Found(item.image, item.caption, item.mask, item.controls)
                      for item in list_images(source, caption_extension=caption_extension).items]
        elif source in controls:
            found.append(found_file(source, caption_extension, controls[source]))
    return found


def _free_name(folder: Path, name: str, controls: tuple[Path, ...]) -> Path:
    """``name`` in ``folder``, or ``NAME-2``, ``NAME-3`` …: the first whose image and control names are all free."""
    stem, suffix = os.path.splitext(name)
    candidate, n = stem, 1

    def taken(stem: str) -> bool:
        names = [stem + suffix] + [control_name(stem, number, control.suffix)
                                   for number, control in enumerate(controls, start=1)]
        return any((folder / name).exists() for name in names)

    while taken(candidate):
        n += 1
        candidate = f"{stem}-{n}"
    return folder / (candidate + suffix)


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
    """Copy the images of ``sources`` (files and folders) with their captions, masks and control images
    into ``destination``."""
    return import_found(expand_sources(sources, caption_extension), destination,
                        caption_extension=caption_extension, progress=progress, cancel=cancel)


def import_found(found: list[Found], destination: Path, *, caption_extension: str = CAPTION_EXTENSION,
                 progress: Callable[[int, int], None] | None = None,
                 cancel: threading.Event | None = None) -> ImportResult:
    """Copy each image of ``found`` with the files that go with it into ``destination``: a control as
    ``NAME_control.EXT``, ``NAME_control_2.EXT`` … after its image's new name, numbered in its order."""
    destination = Path(destination)
    destination.mkdir(parents=True, exist_ok=True)
    result = ImportResult()
    for done, (image, caption, mask, controls) in enumerate(found, start=1):
        if cancel is not None and cancel.is_set():
            result.cancelled = True
            break
        same = destination / image.name
        if image.resolve().parent == destination.resolve() or (
                same.is_file() and filecmp.cmp(image, same, shallow=False)):
            result.skipped.append(image)
        else:
            controls = tuple(control for control in controls if control.is_file())  # never a FIFO or a dead link
            target = _free_name(destination, image.name, controls)
            _atomic_copy(image, target)
            if caption is not None and caption.is_file():
                _atomic_copy(caption, target.with_suffix(caption_extension))
            if mask is not None and mask.is_file():  # renamed with its image (photo-2.jpg → photo-2.mask.png)
                _atomic_copy(mask, mask_path_for(target))
            for number, control in enumerate(controls, start=1):  # renamed along: cat-2.png → cat-2_control.jpg
                _atomic_copy(control, target.with_name(control_name(target.stem, number, control.suffix)))
            result.copied.append(target)
        if progress is not None:
            progress(done, len(found))
    return result


def add_control(image: Path, source: Path, number: int = 1) -> Path:
    """Copy ``source`` in as control number ``number`` of ``image``, an image of a project folder (beside it
    by the suffix convention, or into its control folder in a folders layout); returns the new file.

    The slot's old file, whatever its suffix, is deleted once the copy is in place: a slot holds one
    control.  Raises ``ValueError`` naming ``source`` when it is not an image file.
    """
    image, source = Path(image), Path(source)
    if not source.is_file() or not (is_image_name(source.name) or is_control_name(source.name)):
        raise ValueError(f"{source.name} is not an image file (looked for .jpg, .png, .webp, ...)")
    old = numbered_controls(image).get(number)
    target = control_path(image, number, source.suffix.lower())
    if old is not None and old.resolve() == source.resolve():
        return old  # dropped onto its own slot
    if source.resolve() == image.resolve():
        raise ValueError(f"{source.name} is the image itself; a control image is the picture before the edit")
    target.parent.mkdir(parents=True, exist_ok=True)
    _atomic_copy(source, target)
    if old is not None and old != target:
        old.unlink(missing_ok=True)
    return target

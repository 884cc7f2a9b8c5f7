"""Finding the images of a dataset folder, their caption files, and what their headers say.

A dataset folder follows the kohya_ss / OneTrainer convention: ``photo.jpg`` with its caption
in ``photo.txt`` beside it.  Everything here reads headers only (Pillow's ``Image.open`` is
lazy), so listing a folder of thousands of images takes a moment, not a minute; decoding the
pixels is the health check's job (``trainer.dataset.health``).

Pillow + standard library only: the GUI process imports this.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from PIL import Image

from trainer.dataset.imaging import NAMED_SUFFIXES, READABLE_SUFFIXES, DatasetImageError, has_alpha, open_image
from trainer.dataset.masks import MASK_SUFFIX, is_mask_name
from trainer.dataset.pairs import (
    control_folder_number,
    control_folders,
    has_folders_layout,
    image_files_by_stem,
    is_control_name,
    is_target_folder,
    name_key,
    suffix_controls,
    target_folder,
)

# Listed as images: the suffixes Kamaal reads and those it names as unreadable (with what to do), so
# the check and the grid show a JPEG XL or a camera RAW file instead of skipping it without a word.
IMAGE_EXTENSIONS = frozenset(READABLE_SUFFIXES) | frozenset(NAMED_SUFFIXES)
CAPTION_EXTENSION = ".txt"
EXIF_ORIENTATION_TAG = 0x0112


@dataclass(frozen=True)
class DatasetItem:
    """One image file, the caption file and the loss mask that belong to it (``None`` when there is none),
    and its control images when it is the target of a before/after pair."""

    image: Path
    caption: Path | None
    mask: Path | None = None  # ``NAME.mask.png`` beside it (``trainer.dataset.masks``)
    controls: tuple[Path, ...] = ()  # in reference order (``trainer.dataset.pairs``)


@dataclass(frozen=True)
class Listing:
    """What a folder holds: images (sorted by path), and caption files, masks and control images that
    belong to no image."""

    folder: Path
    items: tuple[DatasetItem, ...]
    orphan_captions: tuple[Path, ...]
    orphan_masks: tuple[Path, ...] = ()
    orphan_controls: tuple[Path, ...] = ()


@dataclass(frozen=True)
class ImageHeader:
    """What an image's header says, read without decoding its pixels."""

    path: Path
    width: int
    height: int
    mode: str
    format: str
    orientation: int  # EXIF orientation, 1 when absent; 5–8 swap width and height
    frames: int
    has_transparency: bool

    @property
    def oriented_size(self) -> tuple[int, int]:
        """The size as the image will be trained on, after the EXIF rotation is applied."""
        return (self.height, self.width) if self.orientation in (5, 6, 7, 8) else (self.width, self.height)


def is_image_name(name: str) -> bool:
    # Dot files are skipped: macOS writes "._photo.jpg" resource forks beside real images,
    # and our own atomic writes use ".name.tmp" temporary files.
    # A loss mask (photo.mask.png) and a control image (photo_control.png) are read with their image,
    # never trained as images of their own.
    return (not name.startswith(".") and os.path.splitext(name)[1].lower() in IMAGE_EXTENSIONS
            and not is_mask_name(name) and not is_control_name(name))


def _walk(folder: Path, recursive: bool) -> Iterator[tuple[Path, list[os.DirEntry[str]]]]:
    """The entries of ``folder`` (and, when recursive, of its non-hidden subfolders), one list per folder.

    The control folders of a folders-layout pair are not walked: their files are read with their targets.
    """
    with os.scandir(folder) as it:
        entries = sorted(it, key=lambda e: e.name)
    yield folder, entries
    if recursive:
        paired = has_folders_layout(folder)
        for entry in entries:
            if (not entry.name.startswith(".") and entry.is_dir(follow_symlinks=False)
                    and not (paired and control_folder_number(entry.name) is not None)):
                yield from _walk(Path(entry.path), recursive)


def _folder_controls(target: Path) -> tuple[list[dict[str, Path]], list[Path]]:
    """For the ``target/`` folder of a folders layout: each control folder's images by stem key, in
    reference order, and every control image (to tell which have no target)."""
    by_folder = [image_files_by_stem(folder) for folder in control_folders(target.parent)]
    return by_folder, [path for files in by_folder for path in files.values()]


def _is_dir(entry: os.DirEntry[str]) -> bool:
    try:
        return entry.is_dir()
    except OSError:  # a symbolic link loop: not a folder; the check names it as a broken link
        return False


def list_images(folder: Path, *, recursive: bool = False, caption_extension: str = CAPTION_EXTENSION) -> Listing:
    """List the images of ``folder`` with their caption files, masks and control images.

    A folder with the pairs' folders layout (``target/`` and ``control/`` inside) lists its targets.
    Raises ``NotADirectoryError`` / ``FileNotFoundError`` / ``PermissionError`` for a bad folder.
    A caption "file" that is a directory is still returned as the caption path; the health check
    reports it rather than this function hiding it.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise (NotADirectoryError if folder.exists() else FileNotFoundError)(f"not a folder: {folder}")
    items: list[DatasetItem] = []
    orphans: list[Path] = []
    orphan_masks: list[Path] = []
    orphan_controls: list[Path] = []
    for directory, entries in _walk(target_folder(folder), recursive):
        captions = {name_key(e.name): Path(e.path) for e in entries
                    if e.name.lower().endswith(caption_extension.lower()) and not e.name.startswith(".")}
        masks = {name_key(e.name): Path(e.path) for e in entries
                 if is_mask_name(e.name) and not e.name.startswith(".") and not _is_dir(e)}
        files = [e.name for e in entries if not _is_dir(e)]
        beside = suffix_controls(files, directory)  # NAME_control*.png
        by_folder, in_folders = _folder_controls(directory) if is_target_folder(directory) else ([], [])
        used: set[str] = set()
        used_masks: set[str] = set()
        stems: set[str] = set()
        for entry in entries:
            # Not-a-directory rather than is-a-file: a broken symlink should be reported, not skipped.
            if not is_image_name(entry.name) or _is_dir(entry):
                continue
            stem = os.path.splitext(entry.name)[0]
            key = name_key(stem + caption_extension)
            caption = captions.get(key)
            if caption is not None:
                used.add(key)
            mask_key = name_key(stem + MASK_SUFFIX)
            mask = masks.get(mask_key)
            if mask is not None:
                used_masks.add(mask_key)
            stem_key = name_key(stem)
            stems.add(stem_key)
            # In a folders layout the folders decide; a suffix-named file in target/ is nobody's control.
            controls = (tuple(c for found in by_folder if (c := found.get(stem_key)) is not None)
                        if by_folder else tuple(beside.get(stem_key, {}).values()))
            items.append(DatasetItem(Path(entry.path), caption, mask, controls))
        orphans.extend(path for key, path in sorted(captions.items()) if key not in used and path.is_file())
        orphan_masks.extend(path for key, path in sorted(masks.items()) if key not in used_masks)
        orphan_controls.extend(path for key, numbered in beside.items() if by_folder or key not in stems
                               for path in numbered.values())
        orphan_controls.extend(path for path in in_folders
                               if name_key(os.path.splitext(path.name)[0]) not in stems)
    items.sort(key=lambda item: item.image)
    return Listing(folder, tuple(items), tuple(sorted(orphans)), tuple(sorted(orphan_masks)),
                   tuple(sorted(orphan_controls)))


def orientation_of(image: Image.Image) -> int:
    """EXIF orientation without decoding: PNG keeps EXIF after the pixels, so only look when it is known."""
    if image.format == "PNG" and "exif" not in image.info:
        return 1  # PngImageFile.getexif() would decode the whole image to find a late eXIf chunk
    try:
        value = image.getexif().get(EXIF_ORIENTATION_TAG, 1)
    except (OSError, ValueError, SyntaxError, TypeError):
        return 1  # a malformed EXIF block must not make a good image unusable
    return value if isinstance(value, int) and 1 <= value <= 8 else 1


def read_header(path: Path, *, max_pixels: int | None = None) -> ImageHeader:
    """Read size, mode and orientation from the header; raises ``DatasetImageError`` (bomb included)."""
    with open_image(path, max_pixels=max_pixels) as image:
        return header_of(image, Path(path))


def header_of(image: Image.Image, path: Path) -> ImageHeader:
    """The header facts of an image already opened with ``open_image``."""
    return ImageHeader(
        path=path,
        width=image.width,
        height=image.height,
        mode=image.mode,
        format=image.format or "",
        orientation=orientation_of(image),
        # is_animated looks at one frame; n_frames walks the whole file, so only ask when it matters.
        frames=image.n_frames if getattr(image, "is_animated", False) else 1,
        has_transparency=has_alpha(image),
    )


HeaderResult = ImageHeader | DatasetImageError


def scan_headers(
    paths: list[Path],
    *,
    max_pixels: int | None = None,
    workers: int | None = None,
    on_result: Callable[[int, HeaderResult], None] | None = None,
) -> list[HeaderResult]:
    """Read many headers in a thread pool (useful on network drives); errors come back, not raised.

    ``on_result(index, result)`` runs on the calling thread as results arrive, in input order.
    """
    def one(path: Path) -> HeaderResult:
        try:
            return read_header(path, max_pixels=max_pixels)
        except DatasetImageError as error:
            return error

    results: list[HeaderResult] = []
    with ThreadPoolExecutor(max_workers=workers or min(8, (os.cpu_count() or 2) + 2)) as pool:
        for index, result in enumerate(pool.map(one, paths)):
            results.append(result)
            if on_result is not None:
                on_result(index, result)
    return results

"""Before/after pairs: the control images that go with a target image, for edit LoRAs (issue 28).

An edit model (Flux.1 Kontext, Qwen-Image-Edit, Flux.2 with references) learns from a *target*
image, one or more *control* images it was made from, and an instruction caption beside the
target.  Two layouts that users already have from ai-toolkit, musubi-tuner and OneTrainer are read:

1. **Folders**: a concept folder holding ``target/`` and ``control/`` (and ``control_2/``,
   ``control_3/`` … for more references), the same stem in each: ``target/NAME.png`` +
   ``control/NAME.jpg``; the caption is ``target/NAME.txt``.  A concept may point at the parent
   folder or at its ``target/`` folder: both list the targets (``target_folder``).
2. **Suffix**: ``NAME.png`` with ``NAME_control.png`` beside it (``NAME_control_2.png``,
   ``NAME_control_3.png`` … for more references).

Names match as captions do: any image suffix, case- and Unicode-normalisation-insensitive
(``Café.PNG`` finds ``café_CONTROL.jpg``).  In a folders layout the folders decide; a suffix-named
file inside ``target/`` there is nobody's control.  A control file is never listed or trained as an
image of its own (like a loss mask); ``list_images`` fills ``DatasetItem.controls`` and names the
controls without a target in ``Listing.orphan_controls``.

Training (``trainer.diffusion.data.load_pair``) resizes a control to its target's size and then sends it
through the target's own steps (the user's crop, the bucket's resize and crop, the flip), so each control
pixel stays on its target pixel.  A control of the target's aspect ratio (within 1 %) is only scaled; one of
another aspect ratio is stretched, as ai-toolkit does, and the health check says by how much (``stretch``).

Standard library and the dataset library's light modules only: the GUI process imports this.
"""

from __future__ import annotations

import os
import re
import unicodedata
from collections.abc import Iterable
from pathlib import Path

from trainer.dataset.imaging import NAMED_SUFFIXES, READABLE_SUFFIXES
from trainer.dataset.masks import is_mask_name

TARGET_FOLDER = "target"
CONTROL_FOLDER = "control"
CONTROL_SUFFIX = "_control"
# The first reference has no number; the next ones count from 2, as ai-toolkit's control_path_2/_3.
_NUMBER = r"(?:_(?P<number>[2-9]|[1-9][0-9]+))?"
_CONTROL_STEM = re.compile(rf"^(?P<target>.+){CONTROL_SUFFIX}{_NUMBER}$")
_CONTROL_FOLDER_NAME = re.compile(rf"^{CONTROL_FOLDER}{_NUMBER}$")
_IMAGE_SUFFIXES = frozenset(READABLE_SUFFIXES) | frozenset(NAMED_SUFFIXES)
ASPECT_TOLERANCE = 0.01  # as a loss mask's: a control saved from a resized copy still lines up


def name_key(name: str) -> str:
    """How file names are compared: case-insensitively and whatever the Unicode normalisation, so
    ``Café.JPG`` (macOS writes decomposed accents) finds ``café.txt`` (Windows writes composed ones)."""
    return unicodedata.normalize("NFC", name).casefold()


def _is_image_file_name(name: str) -> bool:
    return not name.startswith(".") and os.path.splitext(name)[1].lower() in _IMAGE_SUFFIXES


def control_reference(name: str) -> tuple[str, int] | None:
    """For a suffix-convention control file name, the key of its target's stem and its reference
    number (1 for ``NAME_control``, 2 for ``NAME_control_2`` …); ``None`` for any other name."""
    if not _is_image_file_name(name) or is_mask_name(name):
        return None
    match = _CONTROL_STEM.match(name_key(os.path.splitext(name)[0]))
    if match is None:
        return None
    return match["target"], int(match["number"] or 1)


def is_control_name(name: str) -> bool:
    """``NAME_control.png``, ``NAME_control_2.jpg`` … (any case): a control image, never an image of its own."""
    return control_reference(name) is not None


def reference_number(control: Path) -> int:
    """Which reference a control file is: its suffix's number (``NAME_control_2`` → 2), else its folder's
    (``control_2/NAME`` → 2); 1 for ``NAME_control`` and ``control/NAME``."""
    control = Path(control)
    reference = control_reference(control.name)
    return reference[1] if reference is not None else control_folder_number(control.parent.name) or 1


def control_folder_number(name: str) -> int | None:
    """1 for a ``control`` folder, 2 for ``control_2`` …; ``None`` for any other folder name."""
    match = _CONTROL_FOLDER_NAME.match(name_key(name))
    return None if match is None else int(match["number"] or 1)


def _subfolders(folder: Path) -> list[os.DirEntry[str]]:
    try:
        with os.scandir(folder) as it:
            entries = sorted(it, key=lambda e: e.name)
    except OSError:
        return []
    folders = []
    for entry in entries:
        try:
            if not entry.name.startswith(".") and entry.is_dir():
                folders.append(entry)
        except OSError:  # a symbolic link loop: not a folder
            continue
    return folders


def control_folders(folder: Path) -> tuple[Path, ...]:
    """The control folders of a folders-layout concept, in reference order (``control``, ``control_2`` …)."""
    numbered = [(number, Path(entry.path)) for entry in _subfolders(Path(folder))
                if (number := control_folder_number(entry.name)) is not None]
    return tuple(path for _, path in sorted(numbered))


def _target_subfolder(folder: Path) -> Path | None:
    return next((Path(e.path) for e in _subfolders(folder) if name_key(e.name) == TARGET_FOLDER), None)


def has_folders_layout(folder: Path) -> bool:
    """Whether ``folder`` holds a ``target/`` folder and at least one ``control`` folder beside it."""
    folder = Path(folder)
    return _target_subfolder(folder) is not None and bool(control_folders(folder))


def target_folder(folder: Path) -> Path:
    """``folder/target`` when ``folder`` has the folders layout, else ``folder`` itself."""
    folder = Path(folder)
    target = _target_subfolder(folder)
    return target if target is not None and control_folders(folder) else folder


def is_target_folder(folder: Path) -> bool:
    """Whether ``folder`` is the ``target/`` folder of a folders layout (its controls live beside it)."""
    folder = Path(folder)
    return name_key(folder.name) == TARGET_FOLDER and bool(control_folders(folder.parent))


def image_files_by_stem(folder: Path) -> dict[str, Path]:
    """The image files of ``folder`` by the key of their stem (the first by name when stems repeat)."""
    try:
        with os.scandir(folder) as it:
            names = sorted(entry.name for entry in it if _is_image_file_name(entry.name))
    except OSError:
        return {}
    by_stem: dict[str, Path] = {}
    for name in names:
        by_stem.setdefault(name_key(os.path.splitext(name)[0]), Path(folder) / name)
    return by_stem


def suffix_controls(names: Iterable[str], folder: Path) -> dict[str, dict[int, Path]]:
    """The suffix-convention controls among ``names`` (files of ``folder``) by their target's stem key, each
    target's by reference number in order (of two files with one number, ``cat_control.jpg`` and
    ``cat_control.png``, the first by name)."""
    found: dict[str, dict[int, Path]] = {}
    for name in sorted(names):
        reference = control_reference(name)
        if reference is not None:
            found.setdefault(reference[0], {}).setdefault(reference[1], Path(folder) / name)
    return {stem: dict(sorted(numbered.items())) for stem, numbered in found.items()}


def numbered_controls_of(images: Iterable[Path]) -> dict[Path, dict[int, Path]]:
    """The existing control files of each target image by reference number (1 for ``control``), in order.

    In a folders layout (the image inside ``target/`` with ``control/`` beside it) the file of the same stem
    in each control folder; otherwise the ``NAME_control*`` files beside the image.  Each folder is listed
    once: a folder of thousands of files takes milliseconds to list, which once per image would make an
    import of many chosen files take seconds (``list_images`` uses the listings it already has).
    """
    by_folder: dict[Path, list[Path]] = {}
    for image in map(Path, images):
        by_folder.setdefault(image.parent, []).append(image)
    found: dict[Path, dict[int, Path]] = {}
    for folder, members in by_folder.items():
        stems = {image: name_key(os.path.splitext(image.name)[0]) for image in members}
        if is_target_folder(folder):
            per_folder = [(control_folder_number(control.name) or 1, image_files_by_stem(control))
                          for control in control_folders(folder.parent)]
            found.update({image: {number: files[stem] for number, files in per_folder if stem in files}
                          for image, stem in stems.items()})
            continue
        try:
            with os.scandir(folder) as it:
                names = [entry.name for entry in it]
        except OSError:
            names = []
        beside = suffix_controls(names, folder)
        found.update({image: beside.get(stem, {}) for image, stem in stems.items()})
    return found


def numbered_controls(image: Path) -> dict[int, Path]:
    """``numbered_controls_of`` for one image."""
    return numbered_controls_of([Path(image)])[Path(image)]


def control_paths_for(image: Path) -> tuple[Path, ...]:
    """The existing control files of target ``image`` under either layout, in reference order
    (``control``, ``control_2`` …); for many images, ``controls_of``."""
    return tuple(numbered_controls(image).values())


def controls_of(images: Iterable[Path]) -> dict[Path, tuple[Path, ...]]:
    """``control_paths_for`` of many images, each folder listed once (``numbered_controls_of``)."""
    return {image: tuple(numbered.values()) for image, numbered in numbered_controls_of(images).items()}


def control_name(stem: str, number: int, suffix: str) -> str:
    """The suffix-convention name of a target's control number ``number``: ``cat_control.png``,
    ``cat_control_2.jpg`` …"""
    return f"{stem}{CONTROL_SUFFIX}{'' if number == 1 else f'_{number}'}{suffix}"


def control_path(image: Path, number: int, suffix: str) -> Path:
    """Where control number ``number`` of target ``image`` goes, with file suffix ``suffix``: in its control
    folder in a folders layout (``control``, ``control_2`` … made when missing), else beside the image."""
    image = Path(image)
    stem = os.path.splitext(image.name)[0]
    if not is_target_folder(image.parent):
        return image.with_name(control_name(stem, number, suffix))
    folders = {control_folder_number(folder.name): folder for folder in control_folders(image.parent.parent)}
    made = image.parent.parent / (CONTROL_FOLDER if number == 1 else f"{CONTROL_FOLDER}_{number}")
    return folders.get(number, made) / f"{stem}{suffix}"


def same_aspect(control_size: tuple[int, int], target_size: tuple[int, int]) -> bool:
    """Whether a control of ``control_size`` has the target's aspect ratio (within 1 %)."""
    (cw, ch), (tw, th) = control_size, target_size
    return abs((cw / ch) / (tw / th) - 1.0) <= ASPECT_TOLERANCE


def stretch(control_size: tuple[int, int], target_size: tuple[int, int]) -> float:
    """How much resizing a control to its target's size widens it relative to its height: 1.33 for a 4:3
    control of a 16:9 target… 1 for the same shape, below 1 when it is made taller."""
    (cw, ch), (tw, th) = control_size, target_size
    return (tw / th) / (cw / ch)

"""The health check's findings about before/after pairs (``trainer.dataset.pairs``).

Per pair (``control_findings``, on the check's worker threads): each control image decoded once —
unreadable, another aspect ratio (how much resizing it to the target's size stretches it), another size
of the same shape, more controls than the family takes, a second reference without a first.  Per concept
(``concept_findings``, once all images are in): targets without a control, controls without a target,
controls a text-to-image family does not use.

What counts as wrong depends on the family the concept trains (``PairUse``, from the registry): an edit
family cannot train a target without its control, so that target is an error (a run refuses to start
until it has one or is removed from the dataset), and a pair whose control cannot be read is left out;
with no family given (``kamaal-train dataset check`` without ``--architecture``) a concept whose
images are partly paired gets warnings; a text-to-image family ignores control images, and one
warning says so.

Pillow + standard library only: the GUI process imports this.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from trainer.dataset import messages
from trainer.dataset.imaging import DatasetImageError, decode_error, open_image
from trainer.dataset.pairs import (
    CONTROL_FOLDER,
    CONTROL_SUFFIX,
    TARGET_FOLDER,
    control_reference,
    is_target_folder,
    reference_number,
    same_aspect,
    stretch,
)
from trainer.dataset.report import Code, Finding, ImageInfo, Severity
from trainer.dataset.scan import orientation_of
from trainer.families import FAMILIES

_SUFFIXED = re.compile(rf"{CONTROL_SUFFIX}(_[0-9]+)?$", re.IGNORECASE)
PREVIEW_SIDE = 64  # a JPEG control decodes at 1/8 scale: every byte is still read, the pixels are not needed
Add = Callable[[Code, Severity, str, Path | None], None]


@dataclass(frozen=True)
class PairUse:
    """What the concept's model family does with control images (its registry entry says)."""

    family: str  # its display name, for the messages
    control_images: int  # how many it takes per target; 0: it trains on images alone

    @property
    def edit(self) -> bool:
        return self.control_images > 0

    @classmethod
    def for_family(cls, architecture: str) -> PairUse | None:
        """The registry's facts for ``model.architecture`` (``Family.control_images``, issue 28's training
        side; a registry without it trains no family on pairs); ``None`` for the toy, which reads no images,
        and for a name the registry does not know (the config's own check names it)."""
        chosen = FAMILIES.get(architecture)
        if chosen is None or chosen.is_toy:
            return None
        return cls(chosen.display_name, getattr(chosen, "control_images", 0))


def expected_control(image: Path) -> str:
    """Where the control of ``image`` is looked for, as the messages say it."""
    stem = os.path.splitext(image.name)[0]
    if is_target_folder(image.parent):
        return f"{CONTROL_FOLDER}/{stem}.png or .jpg beside {image.parent.name}/"
    return f"{stem}{CONTROL_SUFFIX}.png or .jpg beside it"


def _expected_target(control: Path) -> str:
    stem = os.path.splitext(control.name)[0]
    if control_reference(control.name) is None:  # in a control folder: the same stem in target/
        return f"{TARGET_FOLDER}/{stem}.png, .jpg, ... beside {control.parent.name}/"
    return f"{_SUFFIXED.sub('', stem)}.png, .jpg, ... beside it"


def _control_size(path: Path, max_pixels: int | None) -> tuple[int, int]:
    """The control's size as trained (EXIF rotation applied), after decoding every byte of it."""
    with open_image(path, max_pixels=max_pixels) as image:
        try:
            width, height = image.size
            image.draft(None, (PREVIEW_SIDE, PREVIEW_SIDE))
            image.load()  # where a truncated or corrupt file fails
            orientation = orientation_of(image)
        except Exception as error:
            raise decode_error(path, error) from error
    return (height, width) if orientation in (5, 6, 7, 8) else (width, height)


def control_findings(controls: Sequence[Path], size: tuple[int, int], use: PairUse | None,
                     max_pixels: int | None, add: Add) -> None:
    """The control images of one target of ``size`` (as trained); nothing for a text-to-image family."""
    if use is not None and not use.edit:
        return
    numbers = [reference_number(control) for control in controls]
    moved = next((place for place, number in enumerate(numbers, start=1) if number != place), None)
    if moved is not None:  # control_2 without control: it moves up a place
        control = controls[moved - 1]
        add(Code.CONTROL_GAP, Severity.WARNING, messages.control_gap(control, numbers[moved - 1], moved), control)
    if use is not None and len(controls) > use.control_images:
        add(Code.EXTRA_CONTROLS, Severity.INFO,
            messages.extra_controls(list(controls[use.control_images:]), use.family, use.control_images), None)
        controls = controls[: use.control_images]
    family = use.family if use is not None else None
    for control in controls:
        try:
            control_size = _control_size(control, max_pixels)
        except DatasetImageError as error:
            severity = Severity.ERROR if use is not None else Severity.WARNING
            add(Code.CONTROL_UNREADABLE, severity, messages.control_unreadable(control, error.reason, family), control)
            continue
        if not same_aspect(control_size, size):
            add(Code.CONTROL_ASPECT, Severity.WARNING,
                messages.control_aspect(control, control_size, size, stretch(control_size, size)), control)
        elif control_size != size:
            add(Code.CONTROL_SCALED, Severity.INFO, messages.control_scaled(control, control_size, size), control)


def concept_findings(folder: Path, images: Sequence[ImageInfo], orphans: Sequence[Path],
                     use: PairUse | None) -> list[Finding]:
    """Findings that need every image of the concept: missing partners, and controls nobody uses."""
    findings = [Finding(path, Code.ORPHAN_CONTROL, Severity.WARNING,
                        messages.orphan_control(path, _expected_target(path))) for path in orphans]
    usable = [image for image in images if image.usable]
    paired = [image for image in usable if image.controls]
    if use is not None and not use.edit:
        if paired:
            findings.append(Finding(folder, Code.CONTROLS_IGNORED, Severity.WARNING,
                                    messages.controls_ignored(use.family, len(paired))))
        return findings
    if not paired and use is None:
        return findings  # plain images: nothing to pair
    unpaired = [image for image in usable if not image.controls]
    severity = Severity.ERROR if use is not None else Severity.WARNING
    family = use.family if use is not None else None
    findings += [Finding(image.path, Code.MISSING_CONTROL, severity,
                         messages.missing_control(image.path, expected_control(image.path), family))
                 for image in unpaired]
    if paired and unpaired:
        findings.append(Finding(folder, Code.PARTLY_PAIRED, Severity.WARNING,
                                messages.partly_paired(len(unpaired), len(usable))))
    return findings


"""The health report of a dataset folder: findings with stable codes, and facts per image.

A finding says which file, what is wrong and what to do about it.  Its ``code`` is a stable
string that the GUI, the CLI's ``--json`` and scripts can rely on; its ``severity`` says whether
the image can still be trained on (``error``: it cannot).  ``Report.to_json()`` is the format
of ``kamaal-train dataset check --json``.

Standard library only.
"""

from __future__ import annotations

import enum
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


class Severity(enum.StrEnum):
    ERROR = "error"  # the image cannot be used; training leaves it out
    WARNING = "warning"  # usable, but probably not what you want
    INFO = "info"  # noted and handled; nothing to do

    @property
    def rank(self) -> int:
        return {"error": 0, "warning": 1, "info": 2}[self.value]


class Code(enum.StrEnum):
    """Stable, machine-readable finding codes.  Never rename one; add new ones instead."""

    NO_IMAGES = "no_images"
    ZERO_BYTE = "zero_byte"
    NOT_AN_IMAGE = "not_an_image"
    UNSUPPORTED_FORMAT = "unsupported_format"  # an image format Kamaal cannot read (JPEG XL, camera RAW, ...)
    UNREADABLE = "unreadable"
    NOT_A_FILE = "not_a_file"  # a FIFO, device or socket named like an image: never opened
    BROKEN_LINK = "broken_link"  # a symbolic link to nothing, or a link loop
    LINK_OUTSIDE = "link_outside"  # a symbolic link to an image outside the dataset folder
    TRUNCATED = "truncated"
    DECOMPRESSION_BOMB = "decompression_bomb"
    TINY = "tiny"
    TOO_SMALL = "too_small"
    EXTREME_ASPECT = "extreme_aspect"
    DUPLICATE = "duplicate"
    NEAR_DUPLICATE = "near_duplicate"
    EXIF_ORIENTATION = "exif_orientation"
    CMYK = "cmyk"
    PALETTE = "palette"
    TRANSPARENCY = "transparency"
    HIGH_BIT_DEPTH = "high_bit_depth"
    GRAYSCALE = "grayscale"
    ANIMATED = "animated"
    MISSING_CAPTION = "missing_caption"
    EMPTY_CAPTION = "empty_caption"
    CAPTION_ENCODING = "caption_encoding"
    CAPTION_IS_DIRECTORY = "caption_is_directory"
    CAPTION_UNREADABLE = "caption_unreadable"
    CAPTION_NOT_A_FILE = "caption_not_a_file"  # a FIFO, device or socket: never read
    CAPTION_TOO_LARGE = "caption_too_large"  # over captions.MAX_CAPTION_BYTES: not read
    CAPTION_TOO_LONG = "caption_too_long"
    SHARED_CAPTION = "shared_caption"
    ORPHAN_CAPTION = "orphan_caption"
    MASK_UNREADABLE = "mask_unreadable"  # NAME.mask.png cannot be decoded
    MASK_SIZE = "mask_size"  # the mask's aspect ratio is not its image's
    MASK_SCALED = "mask_scaled"  # same aspect, another size: scaled to the image
    MASK_EMPTY = "mask_empty"  # black everywhere: with masked loss the image teaches nothing
    MASK_COLOUR = "mask_colour"  # a colour mask: read by its brightness
    ORPHAN_MASK = "orphan_mask"  # NAME.mask.png with no image NAME.*
    MISSING_CONTROL = "missing_control"  # a target without a control image in a paired concept (or edit family)
    PARTLY_PAIRED = "partly_paired"  # the folder: some targets have control images, others not
    CONTROL_UNREADABLE = "control_unreadable"  # a control image cannot be decoded
    CONTROL_ASPECT = "control_aspect"  # a control of another aspect ratio: cropped to its target's shape
    CONTROL_SCALED = "control_scaled"  # same aspect, another size: scaled to the target
    EXTRA_CONTROLS = "extra_controls"  # more control images than the family takes
    CONTROL_GAP = "control_gap"  # control_2 (or _3 …) without the references before it
    CONTROLS_IGNORED = "controls_ignored"  # the folder: control images a text-to-image family does not use
    ORPHAN_CONTROL = "orphan_control"  # a control image with no target


@dataclass(frozen=True)
class Finding:
    file: Path
    code: Code
    severity: Severity
    message: str  # what is wrong, then what to do
    related: Path | None = None  # the other file of a duplicate or shared-caption pair, or the control image


@dataclass(frozen=True)
class ImageInfo:
    """What the check learned about one image; sizes are as trained (EXIF rotation applied)."""

    path: Path
    caption_path: Path | None
    usable: bool
    width: int = 0
    height: int = 0
    mode: str = ""
    format: str = ""
    caption: str = ""  # the text training will use (the template when there is no caption)
    caption_tokens: int = 0
    sha256: str = ""
    controls: tuple[Path, ...] = ()  # its control images, when it is the target of a before/after pair


def _relative(path: Path | None, folder: Path) -> str | None:
    if path is None:
        return None
    try:
        return path.relative_to(folder).as_posix()
    except ValueError:
        return str(path)


@dataclass(frozen=True)
class Report:
    folder: Path
    resolution: int
    images: tuple[ImageInfo, ...]
    findings: tuple[Finding, ...]
    seconds: float = 0.0
    settings: dict[str, Any] = field(default_factory=dict)

    @property
    def usable_images(self) -> list[Path]:
        """The images training can use: every image without an error finding."""
        return [image.path for image in self.images if image.usable]

    @property
    def usable(self) -> bool:
        return bool(self.usable_images)

    @property
    def pairs(self) -> int:
        """How many images are targets with at least one control image."""
        return sum(1 for image in self.images if image.controls)

    def count(self, severity: Severity) -> int:
        return sum(1 for finding in self.findings if finding.severity is severity)

    def findings_for(self, path: Path) -> list[Finding]:
        return [finding for finding in self.findings if finding.file == Path(path)]

    def codes_for(self, path: Path) -> set[str]:
        return {finding.code.value for finding in self.findings_for(path)}

    def sorted_findings(self) -> list[Finding]:
        """Errors first, then warnings, then notes; by file within each."""
        return sorted(self.findings, key=lambda f: (f.severity.rank, str(f.file), f.code.value))

    def summary(self) -> str:
        def counted(number: int, word: str) -> str:
            return f"{number} {word}{'' if number == 1 else 's'}"

        pairs = f" ({counted(self.pairs, 'before/after pair')})" if self.pairs else ""
        return (f"{counted(len(self.images), 'image')}{pairs}, {len(self.usable_images)} usable: "
                f"{counted(self.count(Severity.ERROR), 'error')}, {counted(self.count(Severity.WARNING), 'warning')}, "
                f"{counted(self.count(Severity.INFO), 'note')}")

    def to_dict(self) -> dict[str, Any]:
        """Paths relative to the folder (POSIX slashes), so the JSON is the same on every OS."""
        rel = self.relative
        return {
            "folder": str(self.folder),
            "resolution": self.resolution,
            "usable": self.usable,
            "counts": {"images": len(self.images), "usable": len(self.usable_images), "pairs": self.pairs,
                       **{s.value: self.count(s) for s in Severity}},
            "settings": self.settings,
            "seconds": round(self.seconds, 3),
            "usable_images": [rel(path) for path in self.usable_images],
            "findings": [{"file": rel(f.file), "code": f.code.value, "severity": f.severity.value,
                          "message": f.message, "related": rel(f.related)} for f in self.sorted_findings()],
            "images": [{"file": rel(i.path), "caption_file": rel(i.caption_path), "usable": i.usable,
                        "width": i.width, "height": i.height, "mode": i.mode, "format": i.format,
                        "caption": i.caption, "caption_tokens": i.caption_tokens, "sha256": i.sha256,
                        "controls": [rel(path) for path in i.controls]}
                       for i in self.images],
        }

    def relative(self, path: Path | None) -> str | None:
        """``path`` relative to the folder, with POSIX slashes (``None`` stays ``None``)."""
        return _relative(path, self.folder)

    def to_json(self, indent: int | None = 2) -> str:
        # ensure_ascii keeps the output valid on any terminal encoding, odd file names included.
        return json.dumps(self.to_dict(), indent=indent, ensure_ascii=True)

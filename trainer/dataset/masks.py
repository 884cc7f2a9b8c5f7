"""Loss masks: a grayscale picture beside an image that says where training should look.

``photo.jpg`` trains with ``photo.mask.png`` beside it, when ``dataset.masked_loss`` is on: white
pixels train fully, black pixels not at all (or at ``dataset.unmasked_weight``), gray in between —
the meaning kohya_ss's ``masked_loss`` and OneTrainer's ``-masklabel.png`` files give them.  Only
the one spelling beside the image is read: no ``masks/`` folder (kohya's ``conditioning_data_dir``
is a second folder to keep in step with the first; one file beside the image moves with it), and
the mask is never listed as an image of its own.

A mask must have its image's shape: the same size, or the same aspect ratio at another size (a
mask drawn on a smaller copy is scaled to the image).  Colour masks are read by their brightness;
transparent parts count as black (a layer exported from an editor is white only where painted).
Sizes here are as trained, after the image's EXIF rotation.

Pillow + numpy only: the GUI process imports this.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from trainer.dataset.imaging import (
    SIXTEEN_BIT_MODES,
    DatasetImageError,
    apply_orientation,
    decode_error,
    has_alpha,
    open_image,
)

MASK_SUFFIX = ".mask.png"
ASPECT_TOLERANCE = 0.01  # a mask scaled from a copy of another size keeps its aspect within 1 %


def is_mask_name(name: str) -> bool:
    """``photo.mask.png`` (any case): a mask, never an image of its own."""
    return name.lower().endswith(MASK_SUFFIX) and len(name) > len(MASK_SUFFIX)


def mask_path_for(image: Path) -> Path:
    """Where the mask of ``image`` lives: ``photo.jpg`` → ``photo.mask.png`` beside it."""
    return image.with_name(Path(image.name).stem + MASK_SUFFIX)


def image_stem_of(mask: Path) -> str:
    """The stem of the image a mask belongs to: ``photo.mask.png`` → ``photo``."""
    return mask.name[: -len(MASK_SUFFIX)]


class MaskError(DatasetImageError):
    """A mask that cannot be used for its image; the message names the mask file."""


@dataclass(frozen=True)
class MaskFacts:
    """What the health check learns from a mask, for the image of ``image_size``."""

    size: tuple[int, int]
    fits: bool  # same size, or same aspect ratio
    coloured: bool  # RGB with channels that differ: read by brightness
    lit_share: float  # share of the picture's weight above zero (0: the mask trains nothing)


def _read_gray(path: Path) -> tuple[Image.Image, bool]:
    """The mask as 8-bit grayscale (EXIF rotation applied), and whether it had colour in it."""
    with open_image(path) as image:
        try:
            image.load()
            image = apply_orientation(image)
            coloured = False
            if image.mode in ("RGB", "RGBA", "P", "PA", "CMYK"):
                rgb = np.asarray(image.convert("RGB"))
                coloured = bool((rgb.max(axis=2) != rgb.min(axis=2)).any())
            if image.mode in SIXTEEN_BIT_MODES:
                gray = Image.fromarray((np.asarray(image, dtype=np.float64) / 257.0).round().clip(0, 255)
                                       .astype(np.uint8))
            elif has_alpha(image):  # transparent = nothing painted there = ignored: as if on black
                pair = np.asarray(image.convert("LA"), dtype=np.uint16)
                gray = Image.fromarray(((pair[..., 0] * pair[..., 1] + 127) // 255).astype(np.uint8))
            else:
                gray = image.convert("L")
            return gray, coloured
        except Exception as error:
            raise decode_error(path, error) from error


def _fits(mask_size: tuple[int, int], image_size: tuple[int, int]) -> bool:
    (mw, mh), (iw, ih) = mask_size, image_size
    if (mw, mh) == (iw, ih):
        return True
    return abs((mw / mh) / (iw / ih) - 1.0) <= ASPECT_TOLERANCE


def _wrong_shape(path: Path, mask_size: tuple[int, int], image_size: tuple[int, int]) -> str:
    return (f"the mask is {mask_size[0]}×{mask_size[1]} but its image is {image_size[0]}×{image_size[1]} "
            f"(another aspect ratio); draw it again on the image, or delete {path.name}")


def load_mask(path: Path, image_size: tuple[int, int]) -> Image.Image:
    """The mask of an image of ``image_size`` (as trained): mode ``L``, that size.

    Raises :class:`MaskError` naming the file when it cannot be read or has another shape.
    """
    path = Path(path)
    try:
        gray, _ = _read_gray(path)
    except DatasetImageError as error:
        raise MaskError(path, "mask_unreadable", error.reason) from None
    if not _fits(gray.size, image_size):
        raise MaskError(path, "mask_size", _wrong_shape(path, gray.size, image_size))
    if gray.size != image_size:
        gray = gray.resize(image_size, Image.Resampling.LANCZOS)
    return gray


def mask_facts(path: Path, image_size: tuple[int, int]) -> MaskFacts:
    """What the health check says about a mask (raises :class:`MaskError` when unreadable)."""
    path = Path(path)
    try:
        gray, coloured = _read_gray(path)
    except DatasetImageError as error:
        raise MaskError(path, "mask_unreadable", error.reason) from None
    lit = float((np.asarray(gray) > 0).mean())
    return MaskFacts(gray.size, _fits(gray.size, image_size), coloured, lit)

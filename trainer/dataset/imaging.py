"""Opening dataset images safely and turning every kind of image into 8-bit RGB.

One place decides what an "image" is for Kamaal: ``open_image`` (lazy, header only, refuses
decompression bombs before a single pixel is decoded), ``load_rgb`` (what training sees:
EXIF rotation applied, CMYK / palette / alpha / 16-bit / grayscale converted) and
``load_thumbnail`` (the same, fast and small, for the GUI).  Every failure becomes a
``DatasetImageError`` that names the file and says what kind of failure it was.

Formats, by suffix: ``READABLE_SUFFIXES`` are read (Pillow's own decoders; AVIF through the libavif
in Pillow's wheels; HEIC/HEIF, the iPhone's default, through pi-heif, registered with Pillow the
first time ``open_image`` runs in a process, so every reader — scan, check, training, the GUI's
worker processes — gets it).  ``NAMED_SUFFIXES`` are the other image files people bring (JPEG XL,
camera RAW, editor documents, ...): they are listed like images and refused with an
``unsupported_format`` error that says how to convert them, so no picture in a folder is skipped
without a word.

Pillow + numpy (+ pi-heif, a Pillow plugin) only: the GUI process imports this.
"""

from __future__ import annotations

import functools
import io
import re
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError, features

from trainer.dataset.safe_files import broken_link_reason, special_kind

# Only the formats a dataset folder may hold.  Without this list Pillow would also identify,
# say, an EPS file renamed .png and run Ghostscript on it when loading.  AVIF goes before HEIF:
# both containers may say "mif1", and only Pillow's AVIF decoder gives up at open() (then HEIF gets
# its turn), where pi-heif would accept an AV1 file and fail later, in load().
PILLOW_FORMATS = ("JPEG", "PNG", "WEBP", "AVIF", "HEIF", "BMP", "GIF", "TIFF")  # JPEG includes MPO
# The suffixes Kamaal reads, most common first (the health check shows them in this order).
READABLE_SUFFIXES = (".jpg", ".jpeg", ".png", ".webp", ".heic", ".heif", ".avif", ".bmp", ".gif", ".tif",
                     ".tiff", ".jpe", ".jfif", ".hif")  # .jpe/.jfif: JPEG; .hif: Canon's and Fujifilm's HEIF
_CAMERA_RAW = ("a camera RAW file", "Export it as JPEG or PNG from your photo software (Lightroom, darktable, the "
               "camera maker's app); if the camera also saved a JPEG of this shot, use that and remove this file")
_DOCUMENT = ("an image editor's document", "Export it from that editor as PNG or JPEG (flattened)")
# Image files Kamaal cannot read: suffix -> (what the file is, what to do), for the health check's message.
NAMED_SUFFIXES: dict[str, tuple[str, str]] = {
    ".jxl": ("a JPEG XL image", "Convert it to PNG or JPEG (libjxl's `djxl photo.jxl photo.png`, or an image "
                                "editor that opens JPEG XL, such as GIMP or Krita)"),
    ".jp2": ("a JPEG 2000 image", "Convert it to PNG or JPEG in an image editor"),
    ".j2k": ("a JPEG 2000 image", "Convert it to PNG or JPEG in an image editor"),
    ".svg": ("a vector drawing", "Render it to a PNG at the size you train at (Inkscape: Export PNG Image)"),
    ".exr": ("an HDR image", "Tone-map it to an 8-bit PNG or JPEG in an image editor"),
    ".hdr": ("an HDR image", "Tone-map it to an 8-bit PNG or JPEG in an image editor"),
    ".psd": _DOCUMENT, ".psb": _DOCUMENT, ".xcf": _DOCUMENT, ".kra": _DOCUMENT,
    **{suffix: _CAMERA_RAW for suffix in (".dng", ".cr2", ".cr3", ".crw", ".nef", ".nrw", ".arw", ".srf",
                                          ".sr2", ".orf", ".rw2", ".raf", ".pef", ".srw", ".x3f", ".3fr", ".iiq")},
}
SIXTEEN_BIT_MODES = frozenset({"I;16", "I;16L", "I;16B", "I;16N", "I"})
ALPHA_MODES = frozenset({"RGBA", "LA", "PA", "RGBa"})
FALLBACK_MAX_PIXELS = 89_478_485  # Pillow's default, for when an application switched its check off


class DatasetImageError(Exception):
    """An image that cannot be used.  ``code`` is the health check's finding code."""

    def __init__(self, path: Path, code: str, reason: str) -> None:
        super().__init__(f"{path}: {reason}")
        self.path = Path(path)
        self.code = code
        self.reason = reason

    def __reduce__(self) -> tuple[object, ...]:  # pickles (the GUI's worker processes send it back)
        return type(self), (self.path, self.code, self.reason), self.__dict__


class DecompressionBomb(DatasetImageError):
    """An image whose header claims more pixels than the limit; refused without decoding."""

    def __init__(self, path: Path, width: int, height: int, limit: int) -> None:
        megapixels = width * height / 1e6
        super().__init__(path, "decompression_bomb",
                         f"its header claims {width}×{height} pixels ({megapixels:,.0f} megapixels), "
                         f"over the {limit / 1e6:,.0f} megapixel limit")
        self.width, self.height, self.limit = width, height, limit

    def __reduce__(self) -> tuple[object, ...]:
        return type(self), (self.path, self.width, self.height, self.limit), self.__dict__


_HEIF_SUFFIXES = frozenset({".heic", ".heif", ".hif"})
_NO_AVIF = ("an AVIF image", "This installation's Pillow has no AVIF decoder: install Pillow 11.3 or newer "
                             "(its wheels read AVIF), or convert the image to PNG or JPEG")
_NO_HEIF = ("a HEIC/HEIF photo", "This installation cannot load its HEIF decoder (the pi-heif package): "
                                 "reinstall Kamaal, or convert the photo to JPEG or PNG (on an iPhone: "
                                 "Settings > Camera > Formats > Most Compatible takes JPEGs)")


@functools.cache
def heif_available() -> bool:
    """Teach Pillow HEIC/HEIF through pi-heif, once per process; ``False`` when pi-heif cannot load.

    Called by ``open_image`` rather than at import: the GUI process imports this module but never
    decodes an image itself (its worker processes do), so it never loads libheif.  A broken install
    (or a packaged app without libheif) costs the HEIC files only, each named by the health check,
    rather than making every image unreadable.  Registering twice is harmless, so a race is too.
    """
    try:
        from pi_heif import register_heif_opener

        # Training wants the main picture only: skip the thumbnails, depth maps and other auxiliary
        # images an iPhone stores beside it.  libheif applies the rotation (irot/imir) and pi-heif
        # resets the EXIF orientation to 1 to match, so nothing is rotated twice.
        register_heif_opener(thumbnails=False, depth_images=False, aux_images=False)
    except ImportError:
        return False
    return True


def named_format(suffix: str) -> tuple[str, str] | None:
    """(what the file is, what to do) for an image suffix Kamaal cannot read; ``None`` when it can."""
    suffix = suffix.lower()
    if suffix == ".avif" and not features.check_module("avif"):
        return _NO_AVIF
    if suffix in _HEIF_SUFFIXES and not heif_available():
        return _NO_HEIF
    return NAMED_SUFFIXES.get(suffix)


def _formats() -> tuple[str, ...]:
    return PILLOW_FORMATS if heif_available() else tuple(f for f in PILLOW_FORMATS if f != "HEIF")


def default_max_pixels() -> int:
    # Read at call time: an application may have raised Pillow's limit on purpose.
    return Image.MAX_IMAGE_PIXELS or FALLBACK_MAX_PIXELS


def decode_error(path: Path, error: BaseException) -> DatasetImageError:
    """Classify an exception raised while decoding; Pillow reports truncation only in the message."""
    if isinstance(error, DatasetImageError):
        return error
    text = str(error) or type(error).__name__
    if isinstance(error, OSError) and "truncated" in text:
        return DatasetImageError(path, "truncated", f"the file ends early ({text})")
    return DatasetImageError(path, "unreadable", f"it cannot be decoded ({text})")


def _pillow_bomb_reason(error: Image.DecompressionBombError) -> str:
    numbers = [int(n) for n in re.findall(r"\d+", str(error))]
    if len(numbers) >= 2:
        return (f"its header claims {numbers[0] / 1e6:,.0f} megapixels, over the "
                f"{numbers[1] / 1e6:,.0f} megapixel limit")
    return str(error).rstrip(".")


@contextmanager
def open_image(path: Path, *, max_pixels: int | None = None) -> Iterator[Image.Image]:
    """Open lazily (header only) and refuse empty files, non-images and decompression bombs."""
    path = Path(path)
    try:
        info = path.stat()
    except (OSError, ValueError) as error:  # ValueError: a NUL in the name
        link = broken_link_reason(path)
        if link is not None:
            raise DatasetImageError(path, "broken_link", link) from None
        reason = error.strerror if isinstance(error, OSError) and error.strerror else str(error)
        raise DatasetImageError(path, "unreadable", f"it cannot be read ({reason})") from error
    # Regular files only, decided before opening: Pillow's open() of a FIFO waits for a writer forever,
    # and a link to /dev/zero never ends.  (A file swapped for a FIFO between here and open() is not
    # guarded against; that needs someone racing the check on purpose.)
    kind = special_kind(info.st_mode)
    if kind is not None:
        raise DatasetImageError(path, "not_a_file", f"it is {kind}, not a regular file")
    size = info.st_size
    if size == 0:
        raise DatasetImageError(path, "zero_byte", "the file is empty (0 bytes)")
    named = named_format(path.suffix)
    if named is not None:
        kind, advice = named
        raise DatasetImageError(path, "unsupported_format", f"it is {kind} ({path.suffix}), which Kamaal "
                                                            f"cannot read; {advice[0].lower()}{advice[1:]}")
    # A max_pixels above twice Pillow's limit changes nothing: Pillow refuses those itself, in open().
    limit = max_pixels or default_max_pixels()
    try:
        image = Image.open(path, formats=_formats())
    except Image.DecompressionBombError as error:
        # Pillow's own refusal (over twice its limit) happens inside open(), also before decoding.
        raise DatasetImageError(path, "decompression_bomb", _pillow_bomb_reason(error)) from error
    except UnidentifiedImageError as error:
        raise DatasetImageError(path, "not_an_image", "it is not an image Kamaal can read") from error
    except Exception as error:
        # Pillow's plugins raise a zoo of types on malformed headers (SyntaxError, struct.error, ...).
        raise decode_error(path, error) from error
    with image:
        if image.width * image.height > limit:
            raise DecompressionBomb(path, image.width, image.height, limit)
        yield image


def _sixteen_bit_to_l(image: Image.Image) -> Image.Image:
    values = np.asarray(image).astype(np.float32)
    # I;16 is 0..65535 by definition.  Mode I is ambiguous (32-bit TIFFs may hold 0..255), so
    # only rescale it when the values show it is really 16-bit.
    if image.mode != "I" or values.max(initial=0) > 255:
        values = values / 257.0
    return Image.fromarray(np.clip(values + 0.5, 0, 255).astype(np.uint8), mode="L")


def _float_to_l(image: Image.Image) -> Image.Image:
    values = np.asarray(image).astype(np.float32)
    if values.max(initial=0) <= 1.0:  # float images are usually 0..1
        values = values * 255.0
    return Image.fromarray(np.clip(values + 0.5, 0, 255).astype(np.uint8), mode="L")


def _cmyk_to_rgb(image: Image.Image) -> Image.Image:
    profile = image.info.get("icc_profile")
    if profile:
        # The embedded profile gives the real colours; Pillow's plain formula is noticeably off.
        from PIL import ImageCms  # lazy: loads littlecms, only needed for CMYK

        try:
            converted = ImageCms.profileToProfile(image, ImageCms.ImageCmsProfile(io.BytesIO(profile)),
                                                  ImageCms.createProfile("sRGB"), outputMode="RGB")
            if converted is not None:
                return converted
        except (ImageCms.PyCMSError, OSError, ValueError):
            pass  # a broken profile: the plain conversion below is still a usable image
    return image.convert("RGB")


def has_alpha(image: Image.Image) -> bool:
    return image.mode in ALPHA_MODES or "transparency" in image.info


def to_rgb8(image: Image.Image) -> Image.Image:
    """Convert any Pillow image to 8-bit RGB, the one format training uses.

    Transparent areas are composited on white (what a viewer shows, and what kohya_ss does).
    """
    if image.mode in SIXTEEN_BIT_MODES:
        return _sixteen_bit_to_l(image).convert("RGB")
    if image.mode == "F":
        return _float_to_l(image).convert("RGB")
    if image.mode == "CMYK":
        return _cmyk_to_rgb(image)
    if has_alpha(image):
        rgba = image.convert("RGBA")
        flat = Image.new("RGB", rgba.size, (255, 255, 255))
        flat.paste(rgba, mask=rgba.getchannel("A"))
        return flat
    return image if image.mode == "RGB" else image.convert("RGB")


def apply_orientation(image: Image.Image) -> Image.Image:
    """Apply the EXIF orientation (a new image); a malformed EXIF block leaves the image as it is."""
    try:
        return ImageOps.exif_transpose(image)
    except (OSError, ValueError, SyntaxError, TypeError, KeyError):
        return image  # broken metadata must not make good pixels unusable


def load_rgb(path: Path, *, max_pixels: int | None = None) -> Image.Image:
    """Load an image as training sees it: first frame, EXIF rotation applied, 8-bit RGB.

    Raises ``DatasetImageError`` naming the file when it is empty, not an image, truncated,
    corrupt or a decompression bomb.
    """
    with open_image(path, max_pixels=max_pixels) as image:
        try:
            image.load()
            return to_rgb8(apply_orientation(image))
        except Exception as error:
            raise decode_error(Path(path), error) from error


def load_thumbnail(path: Path, size: int = 128, *, max_pixels: int | None = None) -> Image.Image:
    """A small RGB preview (longest side ``size``), oriented like ``load_rgb``.

    JPEGs are decoded at reduced scale (``draft``), which is what makes a grid of hundreds fast.
    """
    with open_image(path, max_pixels=max_pixels) as image:
        try:
            image.draft(None, (size, size))  # JPEG only: DCT scaling to at least size×size
            image.load()
            thumb = to_rgb8(apply_orientation(image))
            thumb.thumbnail((size, size), Image.Resampling.BICUBIC)
            return thumb
        except Exception as error:
            raise decode_error(Path(path), error) from error

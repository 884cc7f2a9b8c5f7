"""The words of the health check: for every finding, what is wrong and then what to do.

Kept apart from the checking logic so the wording can be reviewed (and one day translated) in
one place.  Messages name other files by their name only; the finding itself carries the path.

Standard library only.
"""

from __future__ import annotations

from pathlib import Path

from trainer.dataset.captions import CLIP_MAX_TOKENS, CLIP_USABLE_TOKENS, MAX_CAPTION_BYTES
from trainer.dataset.imaging import READABLE_SUFFIXES, DatasetImageError, named_format
from trainer.dataset.pairs import is_control_name
from trainer.dataset.safe_files import format_size

_SHOWN_EXTENSIONS = ", ".join(READABLE_SUFFIXES)

NO_IMAGES = (f"No images found (looked for {_SHOWN_EXTENSIONS}). Put the training images in this folder, "
             "each with its caption in a .txt file of the same name.")
CMYK = ("CMYK image (print colours); converted to RGB for training, through its colour profile when it has one. "
        "Nothing to do, unless the colours look wrong: then convert it to sRGB in an image editor.")
PALETTE = "Palette (indexed-colour) image; converted to RGB for training. Nothing to do."
TRANSPARENCY = ("Image with transparent areas; they are filled with white for training. Nothing to do if a "
                "white background is fine; otherwise flatten it onto the background you want.")
GRAYSCALE = ("Grayscale image; trained as gray RGB, which teaches the model gray pictures. Fine if intended; "
             "otherwise use a colour version.")


def _looks_like_text(path: Path) -> bool:
    try:
        with open(path, "rb") as handle:
            head = handle.read(512)
        head.decode("utf-8")
    except (OSError, UnicodeDecodeError):
        return False
    return bool(head) and all(byte >= 32 or byte in b"\t\r\n" for byte in head)


def image_error(path: Path, error: DatasetImageError) -> str:
    """The message for an image that cannot be used at all."""
    if error.code == "decompression_bomb":
        return (f"Refused without decoding: {error.reason} (a decompression bomb, or a huge scan). "
                "Downscale it to a few thousand pixels in an image editor, or remove it.")
    if error.code == "zero_byte":
        return ("The file is empty (0 bytes), usually an interrupted copy or download. "
                "Copy it again from the original, or remove it.")
    if error.code == "not_an_image":
        kind = "a text file" if _looks_like_text(path) else "not an image"
        return (f"The file is {kind}, although its name ends in {path.suffix}. "
                "Remove it from the dataset folder, or replace it with the real image.")
    if error.code == "unsupported_format":
        kind, advice = named_format(path.suffix) or ("a kind of image", "Convert it to PNG or JPEG")
        return f"The file is {kind} ({path.suffix}), which Kamaal cannot read; training leaves it out. {advice}."
    if error.code == "not_a_file":
        return (f"Not an image file: {error.reason}, so it was not opened; training leaves it out. "
                "Remove it from the dataset folder, or put the real image in its place.")
    if error.code == "broken_link":
        return (f"The image cannot be found: {error.reason}; training leaves it out. "
                "Remove the link, or point it at the image.")
    if error.code == "truncated":
        return ("The image is cut off: the file ends before all its pixels (an interrupted download or copy). "
                "Copy it again from the original, or remove it.")
    return (f"The image cannot be used: {error.reason}. "
            "Open it in an image editor and save it again as PNG or JPEG, or remove it.")


def tiny(width: int, height: int, minimum: int) -> str:
    return (f"The image is only {width}×{height} pixels, too small to learn anything from "
            f"(at least {minimum} on each side). Replace it with a larger version, or remove it.")


def too_small(width: int, height: int, bucket: tuple[int, int], resolution: int) -> str:
    # Say which side falls short: "2000×200" against a 1024×256 bucket is wide enough but not tall enough.
    short = [f"{side} {have} < {need}" for side, have, need in (("width", width, bucket[0]),
                                                               ("height", height, bucket[1])) if have < need]
    return (f"The image is {width}×{height}, smaller than its {bucket[0]}×{bucket[1]} training bucket at "
            f"resolution {resolution} ({' and '.join(short) or 'after cropping'}); it will be upscaled and look "
            "soft. Use a larger version if you have one, or lower the resolution.")


def extreme_aspect(width: int, height: int, bucket: tuple[int, int], limit: float) -> str:
    ratio = max(width, height) / min(width, height)
    return (f"The aspect ratio is {ratio:.1f}:1 ({width}×{height}), more than {limit:g}:1; training fits it to "
            f"a {bucket[0]}×{bucket[1]} bucket and crops away much of it. Crop it to a less extreme shape, "
            "or split it into several images.")


def exif_orientation(orientation: int, width: int, height: int) -> str:
    return (f"The camera's orientation tag ({orientation}) rotates or flips it to {width}×{height}; "
            "applied when training. Nothing to do.")


def high_bit_depth(mode: str) -> str:
    return f"High bit depth image (mode {mode}); reduced to 8 bits per channel for training. Nothing to do."


def animated(frames: int) -> str:
    return f"Animated or multi-page image ({frames} frames); only the first frame is used. Nothing to do."


def missing_caption(image: Path, used: str) -> str:
    return (f"No caption file ({image.stem}.txt); the template caption \"{used}\" is used. "
            f"Write a caption in {image.stem}.txt if this image needs its own description.")


def empty_caption(used: str) -> str:
    return (f"The caption file is empty; the template caption \"{used}\" is used. "
            "Write a caption in it, or delete it to make the template deliberate.")


def caption_is_directory(caption: Path, used: str) -> str:
    return (f"\"{caption.name}\" is a folder, not a caption file; the template caption \"{used}\" is used. "
            "Rename or move that folder, and put the caption in a text file.")


def caption_unreadable(reason: str, used: str) -> str:
    return (f"The caption file cannot be read ({reason}); the template caption \"{used}\" is used. "
            "Check the file's permissions.")


def caption_not_a_file(caption: Path, kind: str, used: str) -> str:
    return (f"\"{caption.name}\" is {kind}, not a caption file, so it was not read; the template caption "
            f"\"{used}\" is used. Remove it and put the caption in a text file.")


def caption_too_large(caption: Path, size: str, used: str) -> str:
    return (f"\"{caption.name}\" is {size}, over the {format_size(MAX_CAPTION_BYTES)} limit for a caption (the "
            f"text encoder reads only {CLIP_USABLE_TOKENS} tokens), so it was not read; the template caption "
            f"\"{used}\" is used. Shorten it to a sentence or two, or move the file out of the dataset folder "
            "if it is not a caption.")


def link_outside(target: Path) -> str:
    return (f"This is a link to {target}, outside the dataset folder. It is trained on, but the dataset is not "
            "self-contained: moving or deleting that file breaks it. Copy the image into the folder to keep it.")


def caption_encoding(encoding: str, text: str) -> str:
    shown = text if len(text) <= 60 else text[:57] + "..."
    return (f"The caption is not UTF-8; it was read as {encoding}: \"{shown}\". "
            "Check the text looks right, then save the file as UTF-8.")


def caption_too_long(tokens: int, exact: bool) -> str:
    count = f"{tokens}" if exact else f"about {tokens} (estimated)"
    return (f"The caption is {count} tokens; the text encoder reads only {CLIP_USABLE_TOKENS} "
            f"({CLIP_MAX_TOKENS} with start and end), so the rest is ignored. "
            "Shorten it, with the important words first.")


def duplicate(original: Path) -> str:
    return (f"Byte-for-byte identical to {original.name}, which doubles its weight in training. "
            "Remove one of the two copies.")


def near_duplicate(original: Path, distance: int) -> str:
    return (f"Looks almost identical to {original.name} (perceptual hash distance {distance} of 64), "
            "e.g. the same photo resized or edited. Keep only the better of the two, unless both are intended.")


def shared_caption(other: Path, caption: Path) -> str:
    return (f"This image and {other.name} have the same name, so both use {caption.name}. "
            "Rename one of them and give it its own caption file.")


def orphan_caption(caption: Path) -> str:
    return (f"Caption file with no image of the same name ({caption.stem}.jpg, .png, ...). "
            "Add the image, or delete the caption if the image was removed on purpose.")


# Loss masks (``trainer.dataset.masks``).  They matter only with dataset.masked_loss on; the check says so.
_MASKED_ONLY = "It matters only with masked loss on (dataset.masked_loss)"


def mask_unreadable(mask: Path, reason: str) -> str:
    return (f"The loss mask {mask.name} cannot be read: {reason}. {_MASKED_ONLY}, and then training leaves this "
            "image out. Save the mask again as a grayscale PNG (white = train), or delete it.")


def mask_size(mask: Path, mask_size: tuple[int, int], image_size: tuple[int, int]) -> str:
    return (f"The loss mask {mask.name} is {mask_size[0]}×{mask_size[1]} but the image is "
            f"{image_size[0]}×{image_size[1]}, another aspect ratio, so it cannot line up. {_MASKED_ONLY}, and then "
            "training leaves this image out. Paint the mask again on the image, or delete it.")


def mask_scaled(mask: Path, mask_size: tuple[int, int], image_size: tuple[int, int]) -> str:
    return (f"The loss mask {mask.name} is {mask_size[0]}×{mask_size[1]}, the image {image_size[0]}×"
            f"{image_size[1]}: same shape, so it is scaled to the image. Nothing to do.")


def mask_empty(mask: Path) -> str:
    return (f"The loss mask {mask.name} is black everywhere: with masked loss this image teaches nothing (only "
            "dataset.unmasked_weight of it). Paint the part to learn white, or delete the mask to train all of it.")


def mask_colour(mask: Path) -> str:
    return (f"The loss mask {mask.name} has colours; its brightness is used (white = train, black = not). "
            "Nothing to do if that is what you meant.")


def orphan_mask(mask: Path, stem: str) -> str:
    return (f"Loss mask with no image named {stem} beside it ({stem}.jpg, .png, ...): it is not used. "
            "Add the image, or delete the mask.")


# Before/after pairs (``trainer.dataset.pairs``): a target image, its control images, an instruction caption.
def _percent(share: float) -> str:
    return f"{share * 100:.0f} %"


def _control(control: Path) -> str:
    """A control's name, with its folder when it shares its target's name (``control/cat.jpg``)."""
    return control.name if is_control_name(control.name) else f"{control.parent.name}/{control.name}"


def missing_control(image: Path, expected: str, family: str | None) -> str:
    if family is not None:
        return (f"{image.name} has no control image ({expected}): {family} trains on before/after pairs, so a run "
                "will not start while it has none. Add its control image, or remove the image from the dataset.")
    return (f"{image.name} has no control image ({expected}), while other images of this concept have one: an edit "
            "model would learn it without its before picture. Add its control image, or move it to another concept.")


def partly_paired(unpaired: int, total: int) -> str:
    return (f"{unpaired} of {total} images have no control image; the others have one. A concept is either before/"
            "after pairs or plain images: add the missing control images, or move those images to a concept of "
            "their own.")


def control_unreadable(control: Path, reason: str, family: str | None) -> str:
    outcome = ("training leaves this pair out" if family is not None
               else "an edit model cannot train this pair")
    return (f"The control image {_control(control)} cannot be read: {reason}; {outcome}. "
            "Save it again as PNG or JPEG, or replace it.")


def control_aspect(control: Path, control_size: tuple[int, int], image_size: tuple[int, int],
                   stretch: float) -> str:
    how = f"{_percent(stretch - 1)} wider" if stretch > 1 else f"{_percent(1 / stretch - 1)} taller"
    return (f"The control image {_control(control)} is {control_size[0]}×{control_size[1]} but its target is "
            f"{image_size[0]}×{image_size[1]}, another aspect ratio: training resizes it to the target's size, which "
            f"stretches it {how} than it is, so the pair may no longer line up. Crop both pictures alike, or give the "
            "control the target's shape.")


def control_scaled(control: Path, control_size: tuple[int, int], image_size: tuple[int, int]) -> str:
    return (f"The control image {_control(control)} is {control_size[0]}×{control_size[1]}, its target "
            f"{image_size[0]}×{image_size[1]}: same shape, so it is scaled to the target. Nothing to do.")


def control_gap(control: Path, number: int, place: int) -> str:
    return (f"The control image {_control(control)} is reference {number}, but reference {place} is missing: control "
            f"images are used in order, so it is taken as reference {place}. Add the missing control image, or rename "
            "this one.")


def extra_controls(ignored: list[Path], family: str, most: int) -> str:
    names = ", ".join(_control(path) for path in ignored)
    return (f"{family} takes {most} control image{'' if most == 1 else 's'} per pair, so {names} "
            f"{'is' if len(ignored) == 1 else 'are'} not used. Nothing to do, unless you meant another family.")


def controls_ignored(family: str, paired: int) -> str:
    return (f"{paired} image{'' if paired == 1 else 's'} of this concept {'has' if paired == 1 else 'have'} control "
            f"images, which {family} does not use: it trains on the target images alone. Choose an edit model "
            "family to train before/after pairs.")


def orphan_control(control: Path, expected: str) -> str:
    return f"Control image with no target ({expected}): it is not used. Add the target image, or delete the control."

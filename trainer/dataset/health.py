"""The dataset health check: decode every image once and report what would go wrong in training.

``check_dataset`` is what ``kamaal-train dataset check`` runs and what the GUI runs in its
thread pool before training.  Threads: the per-image work (hash, full decode, fingerprint,
caption) runs in a ``ThreadPoolExecutor`` (Pillow's decoders and hashlib release the GIL);
``progress(done, total)`` is called on the thread that called ``check_dataset``, never on a
worker; setting ``cancel`` stops it soon after with ``CheckCancelled``.  The comparisons
between images (duplicates, shared captions) run once all images are in.

Truncated files are found by decoding every pixel with Pillow's default
``ImageFile.LOAD_TRUNCATED_IMAGES = False``; nothing in Kamaal changes that global.

Pillow + numpy + standard library only: the GUI process imports this.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor, as_completed
from dataclasses import dataclass, field, replace
from pathlib import Path

from trainer.dataset import messages
from trainer.dataset.buckets import Bucket, assign_bucket, make_buckets, upscale_factor
from trainer.dataset.cache import DatasetCache
from trainer.dataset.captions import (
    DEFAULT_TEMPLATE,
    DEFAULT_TOKEN,
    Caption,
    CaptionStatus,
    Tokenizer,
    caption_text,
    count_tokens,
    read_caption,
    too_long,
)
from trainer.dataset.hashing import DEFAULT_MAX_DISTANCE, Fingerprint, exact_duplicates, near_duplicates, sha256_file
from trainer.dataset.imaging import (
    SIXTEEN_BIT_MODES,
    DatasetImageError,
    apply_orientation,
    decode_error,
    default_max_pixels,
    has_alpha,
    open_image,
    to_rgb8,
)
from trainer.dataset.masks import MaskError, image_stem_of, mask_facts
from trainer.dataset.pair_health import PairUse, concept_findings, control_findings
from trainer.dataset.report import Code, Finding, ImageInfo, Report, Severity
from trainer.dataset.scan import CAPTION_EXTENSION, DatasetItem, list_images, orientation_of

DEFAULT_MAX_ASPECT = 4.0
TINY_SIDE = 64  # below this an image is 8 latent pixels or fewer: nothing to learn from
PREVIEW_SIDE = 64  # decoded size for fingerprints; JPEGs decode at 1/8 scale to get there
GRAYSCALE_MODES = frozenset({"1", "L", "LA", "F"} | SIXTEEN_BIT_MODES)
Progress = Callable[[int, int], None]


class CheckCancelled(Exception):
    """Raised by ``check_dataset`` when its ``cancel`` event was set."""


@dataclass(frozen=True)
class _Options:
    folder: Path  # resolved: links that lead out of it are named
    resolution: int
    buckets: list[Bucket]
    template: str
    token: str
    max_aspect: float
    max_pixels: int | None
    tokenizer: Tokenizer | None
    cache: DatasetCache | None
    pairs: PairUse | None


@dataclass
class _Checked:
    """One image's result, before the comparisons between images."""

    info: ImageInfo
    caption: Caption
    findings: list[Finding] = field(default_factory=list)
    fingerprint: Fingerprint | None = None


def _read_caption(item: DatasetItem, options: _Options) -> Caption:
    edited = options.cache.read_caption(item.image) if options.cache is not None else None
    return edited if edited is not None else read_caption(item.caption)


def _check_image(item: DatasetItem, options: _Options) -> _Checked:
    path = item.image
    caption = _read_caption(item, options)
    try:
        with open_image(path, max_pixels=options.max_pixels) as image:
            mode, fmt, width, height = image.mode, image.format or "", image.width, image.height
            frames = image.n_frames if getattr(image, "is_animated", False) else 1
            image.draft(None, (PREVIEW_SIDE, PREVIEW_SIDE))
            image.load()  # every pixel: this is where truncated and corrupt files fail
            orientation = orientation_of(image)  # after load(), so a PNG's late EXIF chunk counts too
            oriented = apply_orientation(image)
            transparent = has_alpha(oriented) and oriented.convert("RGBA").getchannel("A").getextrema()[0] < 255
            preview = to_rgb8(oriented)
        digest = sha256_file(path)
    except DatasetImageError as error:
        return _failed(item, caption, error)
    except Exception as error:  # any decoder failure is the file's fault; decode_error names it
        return _failed(item, caption, decode_error(path, error))

    if orientation in (5, 6, 7, 8):
        width, height = height, width
    text = caption_text(caption, options.template, options.token)
    tokens = count_tokens(text, options.tokenizer)
    usable = min(width, height) >= TINY_SIDE
    info = ImageInfo(path, caption.path, usable, width, height, mode, fmt, text, tokens, digest, item.controls)
    checked = _Checked(info, caption, fingerprint=Fingerprint.of(preview))
    found = checked.findings

    def add(code: Code, severity: Severity, message: str, related: Path | None = None) -> None:
        found.append(Finding(path, code, severity, message, related))

    if not usable:
        add(Code.TINY, Severity.ERROR, messages.tiny(width, height, TINY_SIDE))
        return checked
    bucket = assign_bucket(width, height, options.buckets)
    if upscale_factor(width, height, bucket) > 1.0:
        add(Code.TOO_SMALL, Severity.WARNING, messages.too_small(width, height, bucket, options.resolution))
    if max(width, height) / min(width, height) > options.max_aspect:
        add(Code.EXTREME_ASPECT, Severity.WARNING, messages.extreme_aspect(width, height, bucket, options.max_aspect))
    outside = _link_outside(path, options.folder)
    if outside is not None:
        add(Code.LINK_OUTSIDE, Severity.WARNING, messages.link_outside(outside))
    if orientation != 1:
        add(Code.EXIF_ORIENTATION, Severity.INFO, messages.exif_orientation(orientation, width, height))
    if mode == "CMYK":
        add(Code.CMYK, Severity.INFO, messages.CMYK)
    if mode in ("P", "PA"):
        add(Code.PALETTE, Severity.INFO, messages.PALETTE)
    if transparent:
        add(Code.TRANSPARENCY, Severity.INFO, messages.TRANSPARENCY)
    if mode in SIXTEEN_BIT_MODES or mode == "F":
        add(Code.HIGH_BIT_DEPTH, Severity.INFO, messages.high_bit_depth(mode))
    if mode in GRAYSCALE_MODES:
        add(Code.GRAYSCALE, Severity.INFO, messages.GRAYSCALE)
    if frames > 1 and fmt != "MPO":  # MPO "frames" are a camera's embedded previews, not animation
        add(Code.ANIMATED, Severity.INFO, messages.animated(frames))
    _caption_findings(checked, options)
    if item.mask is not None:
        _mask_findings(item.mask, (width, height), add)
    if item.controls:
        control_findings(item.controls, (width, height), options.pairs, options.max_pixels, add)
    return checked


def _mask_findings(mask: Path, size: tuple[int, int], add: Callable[[Code, Severity, str], None]) -> None:
    """The loss mask beside an image: readable, of the image's shape, not black everywhere."""
    try:
        facts = mask_facts(mask, size)
    except MaskError as error:
        add(Code.MASK_UNREADABLE, Severity.WARNING, messages.mask_unreadable(mask, error.reason))
        return
    if not facts.fits:
        add(Code.MASK_SIZE, Severity.WARNING, messages.mask_size(mask, facts.size, size))
        return
    if facts.size != size:
        add(Code.MASK_SCALED, Severity.INFO, messages.mask_scaled(mask, facts.size, size))
    if facts.lit_share == 0.0:
        add(Code.MASK_EMPTY, Severity.WARNING, messages.mask_empty(mask))
    if facts.coloured:
        add(Code.MASK_COLOUR, Severity.INFO, messages.mask_colour(mask))


def _link_outside(path: Path, folder: Path) -> Path | None:
    """Where a symbolically linked image really is, when that is outside the dataset folder."""
    if not path.is_symlink():
        return None
    try:
        target = path.resolve()
    except (OSError, RuntimeError):  # a loop never gets here: opening it failed first
        return None
    return None if target.is_relative_to(folder) else target


def _caption_findings(checked: _Checked, options: _Options) -> None:
    caption, path = checked.caption, checked.info.path
    template = checked.info.caption if caption.status is not CaptionStatus.OK else ""
    if caption.status is CaptionStatus.DIRECTORY and caption.path is not None:
        checked.findings.append(Finding(path, Code.CAPTION_IS_DIRECTORY, Severity.WARNING,
                                        messages.caption_is_directory(caption.path, template)))
    elif caption.status is CaptionStatus.NOT_A_FILE and caption.path is not None:
        checked.findings.append(Finding(path, Code.CAPTION_NOT_A_FILE, Severity.WARNING,
                                        messages.caption_not_a_file(caption.path, caption.error or "", template)))
    elif caption.status is CaptionStatus.TOO_LARGE and caption.path is not None:
        checked.findings.append(Finding(path, Code.CAPTION_TOO_LARGE, Severity.WARNING,
                                        messages.caption_too_large(caption.path, caption.error or "", template)))
    elif caption.status is CaptionStatus.UNREADABLE:
        checked.findings.append(Finding(path, Code.CAPTION_UNREADABLE, Severity.WARNING,
                                        messages.caption_unreadable(caption.error or "", template)))
    elif caption.status is CaptionStatus.EMPTY:
        checked.findings.append(Finding(path, Code.EMPTY_CAPTION, Severity.WARNING,
                                        messages.empty_caption(template)))
    if caption.fallback_encoding:
        checked.findings.append(Finding(path, Code.CAPTION_ENCODING, Severity.WARNING,
                                        messages.caption_encoding(caption.encoding or "", caption.text)))
    if caption.status is CaptionStatus.OK and too_long(checked.info.caption_tokens):
        checked.findings.append(Finding(path, Code.CAPTION_TOO_LONG, Severity.WARNING,
                                        messages.caption_too_long(checked.info.caption_tokens,
                                                                  exact=options.tokenizer is not None)))


def _failed(item: DatasetItem, caption: Caption, error: DatasetImageError) -> _Checked:
    finding = Finding(item.image, Code(error.code), Severity.ERROR, messages.image_error(item.image, error))
    return _Checked(ImageInfo(item.image, caption.path, usable=False, controls=item.controls), caption, [finding])


def _compare(results: list[_Checked]) -> list[Finding]:
    """Findings that need all images: missing captions, duplicates, shared captions."""
    findings: list[Finding] = []
    usable = [r for r in results if r.info.usable]
    # A dataset with no captions at all relies on the template on purpose; one missing among
    # many captioned images is probably a forgotten file.
    any_captions = any(r.caption.status is CaptionStatus.OK for r in usable)
    severity = Severity.WARNING if any_captions else Severity.INFO
    for r in usable:
        if r.caption.status is CaptionStatus.MISSING:
            findings.append(Finding(r.info.path, Code.MISSING_CAPTION, severity,
                                    messages.missing_caption(r.info.path, r.info.caption)))
    copies = exact_duplicates([r.info.sha256 for r in usable])
    for index, original in copies.items():
        findings.append(Finding(usable[index].info.path, Code.DUPLICATE, Severity.WARNING,
                                messages.duplicate(usable[original].info.path), usable[original].info.path))
    skip = [index in copies for index in range(len(usable))]
    for index, (original, distance) in near_duplicates([r.fingerprint for r in usable], skip=skip).items():
        findings.append(Finding(usable[index].info.path, Code.NEAR_DUPLICATE, Severity.WARNING,
                                messages.near_duplicate(usable[original].info.path, distance),
                                usable[original].info.path))
    first_user: dict[Path, Path] = {}
    for r in results:
        caption_path = r.info.caption_path
        # A camera's RAW beside its JPEG is never trained, so it shares no caption with it.
        if caption_path is None or any(f.code is Code.UNSUPPORTED_FORMAT for f in r.findings):
            continue
        if caption_path in first_user:
            findings.append(Finding(r.info.path, Code.SHARED_CAPTION, Severity.WARNING,
                                    messages.shared_caption(first_user[caption_path], caption_path),
                                    first_user[caption_path]))
        else:
            first_user[caption_path] = r.info.path
    return findings


def check_dataset(
    folder: Path,
    resolution: int = 512,
    *,
    token: str = DEFAULT_TOKEN,
    template: str = DEFAULT_TEMPLATE,
    max_aspect: float = DEFAULT_MAX_ASPECT,
    max_pixels: int | None = None,
    tokenizer: Tokenizer | None = None,
    recursive: bool = False,
    caption_extension: str = CAPTION_EXTENSION,
    cache: DatasetCache | None = None,
    pairs: PairUse | None = None,
    workers: int | None = None,
    progress: Progress | None = None,
    cancel: threading.Event | None = None,
) -> Report:
    """Check every image of ``folder`` (see the module docstring for threads and cancellation).

    Raises ``FileNotFoundError`` / ``NotADirectoryError`` / ``PermissionError`` for a bad folder
    and ``CheckCancelled`` when cancelled; everything wrong inside the folder is a finding.
    ``pairs`` says what the concept's model family does with control images (``pair_health``); without
    it, a concept partly paired gets warnings.  An error finding about a pair makes its target unusable.
    """
    started = time.perf_counter()
    folder = Path(folder)
    listing = list_images(folder, recursive=recursive, caption_extension=caption_extension)
    options = _Options(folder.resolve(), resolution, make_buckets(resolution), template, token, max_aspect,
                       max_pixels, tokenizer, cache, pairs)
    removed = cache.removed() if cache is not None else set()
    items = tuple(item for item in listing.items if item.image not in removed)  # removed by the user: not checked
    results: list[_Checked | None] = [None] * len(items)
    if progress is not None:
        progress(0, len(items))
    if cancel is not None and cancel.is_set():
        raise CheckCancelled(f"dataset check of {folder} cancelled")
    with ThreadPoolExecutor(max_workers=workers or os.cpu_count() or 2, thread_name_prefix="dataset-check") as pool:
        futures: dict[Future[_Checked], int] = {pool.submit(_check_image, item, options): i
                                                 for i, item in enumerate(items)}
        try:
            for done, future in enumerate(as_completed(futures), start=1):
                if cancel is not None and cancel.is_set():
                    raise CheckCancelled(f"dataset check of {folder} cancelled")
                results[futures[future]] = future.result()
                if progress is not None:
                    progress(done, len(items))
        except BaseException:
            pool.shutdown(wait=True, cancel_futures=True)  # images already being decoded finish first
            raise
    checked = [r for r in results if r is not None]
    findings = [f for r in checked for f in r.findings] + _compare(checked)
    findings += concept_findings(folder, [r.info for r in checked], listing.orphan_controls, pairs)
    findings += [Finding(p, Code.ORPHAN_CAPTION, Severity.INFO, messages.orphan_caption(p))
                 for p in listing.orphan_captions]
    findings += [Finding(p, Code.ORPHAN_MASK, Severity.WARNING, messages.orphan_mask(p, image_stem_of(p)))
                 for p in listing.orphan_masks]
    if not items:
        findings.append(Finding(folder, Code.NO_IMAGES, Severity.ERROR, messages.NO_IMAGES))
    settings = {"token": token, "template": template, "max_aspect": max_aspect, "recursive": recursive,
                "max_pixels": max_pixels or default_max_pixels(), "exact_token_count": tokenizer is not None,
                "near_duplicate_distance": DEFAULT_MAX_DISTANCE,
                "pairs": None if pairs is None else {"family": pairs.family, "control_images": pairs.control_images}}
    # Only pair findings can make an image unusable here: an image's own errors already did.
    unpairable = {f.file for f in findings if f.severity is Severity.ERROR}
    images = tuple(replace(r.info, usable=False) if r.info.usable and r.info.path in unpairable else r.info
                   for r in checked)
    return Report(folder, resolution, images, tuple(findings), time.perf_counter() - started, settings)

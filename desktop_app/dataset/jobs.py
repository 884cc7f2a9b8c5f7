"""The work the Dataset page sends to its worker processes (:class:`~desktop_app.dataset.processes.Processes`).

No Qt: every function here runs in a worker process.  Each takes its own arguments first and
``(report, cancelled)`` last, so the panel sends ``functools.partial(function, *arguments)``,
which pickles; and each returns something that pickles (entries, a report, a Pillow image).

Thumbnail disk cache: ``CACHE/ab/<sha1>.png``, the hash covering the image's path, size and
modification time and the thumbnail size, so a changed file gets a new thumbnail and nothing
goes stale.  Written through a temp file and a rename, without fsync: it is only a cache.
"""

from __future__ import annotations

import functools
import hashlib
import io
import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from PIL import Image, features

from desktop_app.dataset.entries import DatasetSettings, Entry, list_entries, read_sizes
from trainer.dataset import DatasetCache, Finding, check_dataset, list_images, load_thumbnail
from trainer.dataset.imaging import heif_available
from trainer.dataset.importing import ImportResult, found_file, import_found, import_images
from trainer.dataset.masks import load_mask
from trainer.dataset.tokens import load_clip_tokenizer
from trainer.fsutil import atomic_write_bytes

Report = Callable[[int, int], None]
THUMB_SIZE = 128


def throttled(report: Report, every_s: float = 0.1) -> Report:
    """Pass on at most one progress report per ``every_s`` (and the last): each one costs the GUI thread a slot."""
    last = [0.0]

    def throttle(done: int, total: int) -> None:
        now = time.monotonic()
        if done >= total or now - last[0] >= every_s:
            last[0] = now
            report(done, total)

    return throttle


# ---------------------------------------------------------------- listing and checking


def listing(folder: Path, edits: DatasetCache, extension: str, _report: Report,
            _cancelled: threading.Event) -> tuple[list[Entry], int]:
    return list_entries(folder, edits, extension)


def sizes(paths: list[Path], _report: Report, _cancelled: threading.Event) -> dict[Path, tuple[int, int]]:
    return read_sizes(paths)


@functools.cache
def _clip_tokenizer() -> Callable[[str], list[int]] | None:
    return load_clip_tokenizer()  # once per worker process


def check_threads() -> int:
    """Decoding threads for the panel's health check: one CPU fewer than there are, so the other worker
    process (thumbnails) and the GUI keep one; ``kamaal-train dataset check`` uses them all."""
    return max(1, (os.cpu_count() or 2) - 1)


@dataclass(frozen=True)
class Checked:
    """What the page shows of a health check: the findings (errors first) and the summary line.

    Not the whole report: its per-image facts for 1,000 images take ~25 ms to unpickle, and the C
    unpickler holds the GIL all along, a stall of the GUI thread for nothing it would show."""

    findings: list[Finding]
    summary: str
    images: int
    usable: int


def check(folder: Path, settings: DatasetSettings, edits: DatasetCache | None, exact_tokens: bool,
          report: Report, cancelled: threading.Event) -> Checked:
    """The health check of ``folder`` with the concept's settings; CLIP's own tokenizer when ``exact_tokens``."""
    result = check_dataset(folder, settings.resolution, token=settings.token, template=settings.template,
                           caption_extension=settings.caption_extension,
                           tokenizer=_clip_tokenizer() if exact_tokens else None, cache=edits,
                           pairs=settings.pairs, workers=check_threads(), progress=throttled(report), cancel=cancelled)
    return Checked(result.sorted_findings(), result.summary(), len(result.images), len(result.usable_images))


def count_usable(folder: Path, _report: Report, _cancelled: threading.Event) -> int | None:
    """Images a concept's folder holds, less the ones removed on the Dataset page (``None``: no folder)."""
    if not folder.is_dir():
        return None
    removed = DatasetCache.for_folder(folder).removed()
    return sum(1 for item in list_images(folder).items if item.image not in removed)


def count_images(folder: Path | None, _report: Report, _cancelled: threading.Event) -> int:
    """Images in a class-image folder (0 when it does not exist yet)."""
    if folder is None or not folder.is_dir():
        return 0
    return len(list_images(folder).items)


def decoders(_report: Report, _cancelled: threading.Event) -> dict[str, bool]:
    """Whether this worker process can decode HEIC and AVIF (the self-test asks: a bundle may lack the libraries)."""
    return {"HEIC": heif_available(), "AVIF": features.check_module("avif")}


def copy_in(paths: list[Path], destination: Path, extension: str, report: Report,
            cancelled: threading.Event) -> ImportResult:
    """Copy images (files or folders) into the project: :func:`trainer.dataset.importing.import_images`."""
    return import_images(paths, destination, caption_extension=extension, progress=throttled(report),
                         cancel=cancelled)


def copy_pair(target: Path, control: Path, destination: Path, extension: str, report: Report,
              cancelled: threading.Event) -> ImportResult:
    """Copy two images in as one before/after pair: ``target`` with ``control`` as its control image."""
    return import_found([found_file(target, extension, (control,))], destination, caption_extension=extension,
                        progress=report, cancel=cancelled)


# ---------------------------------------------------------------- thumbnails


def cache_file(cache_dir: Path, image: Path, size: int = THUMB_SIZE) -> Path:
    stat = image.stat()
    key = hashlib.sha1(f"{image.resolve()}|{stat.st_size}|{stat.st_mtime_ns}|{size}".encode()).hexdigest()
    return cache_dir / key[:2] / f"{key}.png"


def _cached(path: Path) -> Image.Image | None:
    try:
        with Image.open(path) as cached:
            return cached.convert("RGB")
    except (OSError, ValueError, Image.DecompressionBombError):
        return None  # half-written by a crash, or not ours: made again


def mask_image(mask: Path, size: tuple[int, int], _report: Report, _cancelled: threading.Event) -> Image.Image:
    """The loss mask of an image of ``size`` (as trained), grayscale at that size; raises ``MaskError`` naming
    the file when it cannot be read or has another shape."""
    return load_mask(mask, size)


def thumbnail(image: Path, cache_dir: Path | None, size: int, _report: Report,
              _cancelled: threading.Event) -> Image.Image:
    """The RGB thumbnail of ``image`` (longest side ``size``), from the disk cache when it is there;
    raises ``DatasetImageError``/``OSError`` for an image that cannot be shown."""
    cached = cache_file(cache_dir, image, size) if cache_dir is not None else None
    if cached is not None and cached.is_file():
        loaded = _cached(cached)
        if loaded is not None:
            return loaded
    thumb = load_thumbnail(image, size)
    if cached is not None:
        buffer = io.BytesIO()
        thumb.save(buffer, format="PNG", compress_level=1)
        try:
            atomic_write_bytes(cached, buffer.getvalue(), durable=False)
        except OSError:
            pass  # a read-only or full disk costs speed next time, nothing else
    return thumb if thumb.mode == "RGB" else thumb.convert("RGB")

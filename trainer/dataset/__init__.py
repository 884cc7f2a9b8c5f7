"""Kamaal's dataset library: scan, load, caption, health-check and bucket a folder of images.

Shared by the GUI's dataset panel, the trainer and ``kamaal-train dataset``.  Pillow, numpy and
the standard library only — no torch, no Qt — so the GUI process can import it (a test checks).

    from trainer.dataset import check_dataset, load_rgb
    report = check_dataset("photos/", resolution=512)
    images = [load_rgb(path) for path in report.usable_images]

Modules: ``scan`` (listing, headers), ``imaging`` (safe opening, RGB conversion, thumbnails),
``captions``, ``hashing`` (duplicates), ``health`` (the check), ``report``, ``messages``,
``buckets`` (aspect-ratio buckets), ``cache`` (edited captions and crops), ``masks`` (loss masks
beside images), ``pairs`` (the control images of before/after pairs), ``cli``.

The names below are imported on first use (PEP 562), so ``import trainer.dataset.captions`` (the
settings' token counts, the concept checks) does not also load the health check and Pillow.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

_WHERE = {
    "assign_bucket": "trainer.dataset.buckets",
    "bucket_histogram": "trainer.dataset.buckets",
    "make_buckets": "trainer.dataset.buckets",
    "resize_and_crop": "trainer.dataset.buckets",
    "upscale_factor": "trainer.dataset.buckets",
    "CropRecord": "trainer.dataset.cache",
    "DatasetCache": "trainer.dataset.cache",
    "CLIP_MAX_TOKENS": "trainer.dataset.captions",
    "CLIP_USABLE_TOKENS": "trainer.dataset.captions",
    "Caption": "trainer.dataset.captions",
    "CaptionStatus": "trainer.dataset.captions",
    "caption_text": "trainer.dataset.captions",
    "count_tokens": "trainer.dataset.captions",
    "estimate_clip_tokens": "trainer.dataset.captions",
    "fill_template": "trainer.dataset.captions",
    "read_caption": "trainer.dataset.captions",
    "CheckCancelled": "trainer.dataset.health",
    "check_dataset": "trainer.dataset.health",
    "DatasetImageError": "trainer.dataset.imaging",
    "DecompressionBomb": "trainer.dataset.imaging",
    "load_rgb": "trainer.dataset.imaging",
    "load_thumbnail": "trainer.dataset.imaging",
    "to_rgb8": "trainer.dataset.imaging",
    "Code": "trainer.dataset.report",
    "Finding": "trainer.dataset.report",
    "ImageInfo": "trainer.dataset.report",
    "Report": "trainer.dataset.report",
    "Severity": "trainer.dataset.report",
    "IMAGE_EXTENSIONS": "trainer.dataset.scan",
    "DatasetItem": "trainer.dataset.scan",
    "ImageHeader": "trainer.dataset.scan",
    "list_images": "trainer.dataset.scan",
    "read_header": "trainer.dataset.scan",
    "scan_headers": "trainer.dataset.scan",
}

__all__ = [
    "CLIP_MAX_TOKENS",
    "CLIP_USABLE_TOKENS",
    "IMAGE_EXTENSIONS",
    "Caption",
    "CaptionStatus",
    "CheckCancelled",
    "Code",
    "CropRecord",
    "DatasetCache",
    "DatasetImageError",
    "DatasetItem",
    "DecompressionBomb",
    "Finding",
    "ImageHeader",
    "ImageInfo",
    "Report",
    "Severity",
    "assign_bucket",
    "bucket_histogram",
    "caption_text",
    "check_dataset",
    "count_tokens",
    "estimate_clip_tokens",
    "fill_template",
    "list_images",
    "load_rgb",
    "load_thumbnail",
    "make_buckets",
    "read_caption",
    "read_header",
    "resize_and_crop",
    "scan_headers",
    "to_rgb8",
    "upscale_factor",
]


def __getattr__(name: str) -> Any:
    module = _WHERE.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_WHERE))


if TYPE_CHECKING:
    from trainer.dataset.buckets import assign_bucket, bucket_histogram, make_buckets, resize_and_crop, upscale_factor
    from trainer.dataset.cache import CropRecord, DatasetCache
    from trainer.dataset.captions import (
        CLIP_MAX_TOKENS,
        CLIP_USABLE_TOKENS,
        Caption,
        CaptionStatus,
        caption_text,
        count_tokens,
        estimate_clip_tokens,
        fill_template,
        read_caption,
    )
    from trainer.dataset.health import CheckCancelled, check_dataset
    from trainer.dataset.imaging import DatasetImageError, DecompressionBomb, load_rgb, load_thumbnail, to_rgb8
    from trainer.dataset.report import Code, Finding, ImageInfo, Report, Severity
    from trainer.dataset.scan import IMAGE_EXTENSIONS, DatasetItem, ImageHeader, list_images, read_header, scan_headers

"""Kamaal's dataset library: scan, load, caption, health-check and bucket a folder of images.

Shared by the GUI's dataset panel, the trainer and ``kamaal-train dataset``.  Pillow, numpy and
the standard library only — no torch, no Qt — so the GUI process can import it (a test checks).

    from trainer.dataset import check_dataset, load_rgb
    report = check_dataset("photos/", resolution=512)
    images = [load_rgb(path) for path in report.usable_images]

Modules: ``scan`` (listing, headers), ``imaging`` (safe opening, RGB conversion, thumbnails),
``captions``, ``hashing`` (duplicates), ``health`` (the check), ``report``, ``messages``,
``buckets`` (aspect-ratio buckets), ``cache`` (edited captions and crops), ``cli``.
"""

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

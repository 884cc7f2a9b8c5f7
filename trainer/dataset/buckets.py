"""Aspect-ratio buckets: train on landscape and portrait images without squashing or square crops.

Same scheme as kohya_ss (NovelAI's bucketing): every bucket has sides that are multiples of
``step`` (64, so the latents divide cleanly) and an area of at most ``resolution²``; an image
goes to the bucket whose aspect ratio is closest to its own, is scaled to cover the bucket and
centre-cropped to it.  Used by the trainer, by the health check (how much an image would be
upscaled) and by the GUI's bucket preview.

Standard library only.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterable, Sequence

Bucket = tuple[int, int]  # (width, height)


def make_buckets(resolution: int = 512, step: int = 64, min_side: int | None = None,
                 max_side: int | None = None) -> list[Bucket]:
    """All buckets for ``resolution``, sorted from tallest to widest.

    ``min_side`` defaults to half the resolution and ``max_side`` to twice it (256 and 1024 at
    512, kohya_ss's defaults), both rounded to ``step``.  For each width the tallest height that
    keeps the area within ``resolution²`` is taken, so every bucket uses the pixel budget fully.
    """
    if resolution < step or step <= 0:
        raise ValueError(f"resolution must be at least step ({step}), got {resolution}")
    min_side = max(step, (min_side if min_side is not None else resolution // 2) // step * step)
    max_side = (max_side if max_side is not None else resolution * 2) // step * step
    if max_side < min_side:
        raise ValueError(f"max_side ({max_side}) must be at least min_side ({min_side})")
    max_area = resolution * resolution
    buckets: set[Bucket] = {(resolution // step * step,) * 2}
    for width in range(min_side, max_side + 1, step):
        height = min(max_side, max_area // width // step * step)
        if height >= min_side:
            buckets.add((width, height))
            buckets.add((height, width))
    return sorted(buckets, key=lambda b: (b[0] / b[1], b[0]))


def training_buckets(resolution: int, min_side: int = 256, max_side: int = 1024,
                     bucketing: bool = True) -> list[Bucket]:
    """The buckets a run uses for ``dataset.*`` (one square bucket when bucketing is off)."""
    if not bucketing:
        return [(resolution, resolution)]
    return make_buckets(resolution, 64, min(min_side, resolution), max(max_side, resolution))


def _ratio_error(width: int, height: int, bucket: Bucket) -> float:
    # In log space, so 2:1 and 1:2 are equally far from 1:1.
    return abs(math.log(width / height) - math.log(bucket[0] / bucket[1]))


def assign_bucket(width: int, height: int, buckets: Sequence[Bucket], no_upscale: bool = False) -> Bucket:
    """The bucket for a ``width``×``height`` image: the closest aspect ratio (ties: the larger area).

    With ``no_upscale`` (kohya_ss's ``bucket_no_upscale``) an image smaller than the largest
    bucket is not enlarged: it gets its own size rounded down to the bucket step instead.
    """
    if width <= 0 or height <= 0:
        raise ValueError(f"image size must be positive, got {width}×{height}")
    if not buckets:
        raise ValueError("no buckets to choose from")
    if no_upscale:
        step = math.gcd(*(side for bucket in buckets for side in bucket))
        if width * height <= max(w * h for w, h in buckets):
            return (max(step, width // step * step), max(step, height // step * step))
    return min(buckets, key=lambda b: (_ratio_error(width, height, b), -b[0] * b[1]))


def upscale_factor(width: int, height: int, bucket: Bucket) -> float:
    """How much the image is enlarged to cover its bucket (≤ 1 means it is only shrunk)."""
    return max(bucket[0] / width, bucket[1] / height)


def resize_and_crop(width: int, height: int, bucket: Bucket) -> tuple[tuple[int, int], tuple[int, int, int, int]]:
    """Size to resize to (covering the bucket) and the centred crop box ``(left, top, right, bottom)``."""
    scale = upscale_factor(width, height, bucket)
    resized = (max(bucket[0], round(width * scale)), max(bucket[1], round(height * scale)))
    left = (resized[0] - bucket[0]) // 2
    top = (resized[1] - bucket[1]) // 2
    return resized, (left, top, left + bucket[0], top + bucket[1])


def bucket_histogram(sizes: Iterable[tuple[int, int]], buckets: Sequence[Bucket],
                     no_upscale: bool = False) -> dict[Bucket, int]:
    """How many images land in each bucket, ordered by aspect ratio (for the GUI preview)."""
    counts = Counter(assign_bucket(w, h, buckets, no_upscale) for w, h in sizes)
    return dict(sorted(counts.items(), key=lambda item: (item[0][0] / item[0][1], item[0][0])))

"""Aspect-ratio buckets: kohya_ss-compatible sizes, closest-ratio assignment, the histogram."""

from __future__ import annotations

import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from trainer.dataset import assign_bucket, bucket_histogram, make_buckets, resize_and_crop


@pytest.mark.parametrize("resolution", [512, 768, 1024])
def test_buckets_respect_the_pixel_budget(resolution: int) -> None:
    buckets = make_buckets(resolution)
    assert (resolution, resolution) in buckets
    for width, height in buckets:
        assert width % 64 == 0 and height % 64 == 0
        assert width * height <= resolution * resolution
        assert resolution // 2 <= min(width, height) and max(width, height) <= resolution * 2
    ratios = [w / h for w, h in buckets]
    assert ratios == sorted(ratios)


def test_buckets_at_512_match_kohya_defaults() -> None:
    buckets = make_buckets(512, step=64, min_side=256, max_side=1024)
    assert (256, 1024) in buckets and (1024, 256) in buckets and (640, 384) in buckets
    assert len(buckets) == len(set(buckets))


def test_assignment_picks_the_closest_ratio() -> None:
    buckets = make_buckets(512)
    assert assign_bucket(1000, 1000, buckets) == (512, 512)
    wide = assign_bucket(1920, 1080, buckets)
    assert wide[0] > wide[1] and assign_bucket(1080, 1920, buckets) == wide[::-1]
    assert assign_bucket(5000, 100, buckets) == (1024, 256)


def test_no_upscale_keeps_small_images_small() -> None:
    buckets = make_buckets(512)
    assert assign_bucket(300, 200, buckets, no_upscale=True) == (256, 192)
    assert assign_bucket(3000, 2000, buckets, no_upscale=True) == assign_bucket(3000, 2000, buckets)


def test_resize_and_crop_covers_the_bucket() -> None:
    resized, box = resize_and_crop(1920, 1080, (704, 384))
    assert resized[0] >= 704 and resized[1] >= 384
    assert (box[2] - box[0], box[3] - box[1]) == (704, 384)


def test_histogram() -> None:
    buckets = make_buckets(512)
    counts = bucket_histogram([(1000, 1000), (800, 800), (1920, 1080)], buckets)
    assert counts[(512, 512)] == 2 and sum(counts.values()) == 3


@given(st.integers(1, 10_000), st.integers(1, 10_000))
def test_assigned_bucket_has_the_smallest_ratio_error(width: int, height: int) -> None:
    buckets = make_buckets(512)
    chosen = assign_bucket(width, height, buckets)

    def error(bucket: tuple[int, int]) -> float:
        return abs(math.log(width / height) - math.log(bucket[0] / bucket[1]))

    assert error(chosen) <= min(error(b) for b in buckets) + 1e-12


def test_bad_arguments() -> None:
    with pytest.raises(ValueError):
        make_buckets(32)
    with pytest.raises(ValueError):
        assign_bucket(0, 10, make_buckets(512))

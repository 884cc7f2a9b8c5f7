"""Benchmark of the dataset library: health check and thumbnails on 1,000 generated JPEGs.

    python bench/bench_dataset.py [--images N] [--keep DIR]

Measures, side by side in one process (DESIGN.md §6: ratios, not timed assertions):

- listing + header scan of the folder (what the GUI shows first);
- the full health check (every pixel decoded, hashed, fingerprinted) with the default thread
  pool, against the same check on one worker thread (best of two runs each, warm file cache);
- time to the first 50 thumbnails (128 px) with ``load_thumbnail`` (JPEG ``draft``: reduced-scale
  decoding), against a plain full decode + ``thumbnail``.

Prints a table and returns a dict of the numbers, for ``make bench`` to collect.  Not a test.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from trainer.dataset import check_dataset, list_images, load_thumbnail, scan_headers

THUMBNAILS = 50
THUMB_SIZE = 128


def _photo_like(rng: np.random.Generator, width: int, height: int) -> Image.Image:
    """Smooth shapes plus grain: compresses and decodes like a photo, unlike pure noise or flat colour."""
    coarse = Image.fromarray(rng.integers(0, 256, (8, 8, 3), dtype=np.uint8), mode="RGB")
    base = np.asarray(coarse.resize((width, height), Image.Resampling.BICUBIC), dtype=np.int16)
    grain = rng.normal(0, 4, (height, width, 1)).astype(np.int16)
    return Image.fromarray(np.clip(base + grain, 0, 255).astype(np.uint8), mode="RGB")


def _write_one(folder: Path, index: int, seed: int) -> int:
    rng = np.random.default_rng([seed, index])  # one stream per image: the same files on any thread count
    width, height = (int(v) for v in rng.integers(512, 769, 2))
    path = folder / f"img_{index:05d}.jpg"
    _photo_like(rng, width, height).save(path, quality=int(rng.integers(80, 96)))
    (folder / f"img_{index:05d}.txt").write_text(f"a photo of sks, picture {index}", encoding="utf-8")
    return path.stat().st_size


def generate(folder: Path, count: int, seed: int = 0) -> int:
    """Write ``count`` JPEGs of 512–768 px sides with captions; returns the total bytes."""
    folder.mkdir(parents=True, exist_ok=True)
    with ThreadPoolExecutor() as pool:  # JPEG encoding releases the GIL
        return sum(pool.map(lambda index: _write_one(folder, index, seed), range(count)))


def _timed(work: Callable[[], Any], repeat: int = 1) -> tuple[float, Any]:
    """Best of ``repeat`` runs: the least disturbed by other work on a shared machine."""
    best, result = float("inf"), None
    for _ in range(repeat):
        started = time.perf_counter()
        result = work()
        best = min(best, time.perf_counter() - started)
    return best, result


def _settle(folder: Path) -> None:
    """Flush the freshly written files and read them once, so every variant starts from a warm cache."""
    if hasattr(os, "sync"):
        os.sync()  # otherwise write-back of the generated files competes with the first measurement
    for path in folder.iterdir():
        path.read_bytes()


def _plain_thumbnail(path: Path) -> Image.Image:
    with Image.open(path) as image:
        image = image.convert("RGB")
        image.thumbnail((THUMB_SIZE, THUMB_SIZE))
        return image


def _first_thumbnails(folder: Path, make: Callable[[Path], Image.Image]) -> float:
    """What the GUI does on opening a folder: list it, then draw the first screenful."""
    seconds, _ = _timed(lambda: [make(item.image) for item in list_images(folder).items[:THUMBNAILS]])
    return seconds


def run(folder: Path, count: int) -> dict[str, Any]:
    gen_seconds, total_bytes = _timed(lambda: generate(folder, count))
    _settle(folder)
    header_seconds, _ = _timed(lambda: scan_headers([item.image for item in list_images(folder).items]), 2)
    check_seconds, report = _timed(lambda: check_dataset(folder), 2)
    single_seconds, _ = _timed(lambda: check_dataset(folder, workers=1), 2)
    thumbs = min(_first_thumbnails(folder, lambda p: load_thumbnail(p, THUMB_SIZE)) for _ in range(3))
    plain_thumbs = min(_first_thumbnails(folder, _plain_thumbnail) for _ in range(3))
    return {
        "images": count,
        "megabytes": round(total_bytes / 1e6, 1),
        "cpus": os.cpu_count(),
        "generate_s": round(gen_seconds, 2),
        "header_scan_s": round(header_seconds, 3),
        "check_s": round(check_seconds, 3),
        "check_images_per_s": round(count / check_seconds, 1),
        "check_one_worker_s": round(single_seconds, 3),
        "check_thread_speedup": round(single_seconds / check_seconds, 2),
        "first_50_thumbnails_s": round(thumbs, 3),
        "first_50_plain_thumbnails_s": round(plain_thumbs, 3),
        "thumbnail_speedup": round(plain_thumbs / thumbs, 2),
        "usable": len(report.usable_images),
        "findings": len(report.findings),
    }


def print_table(results: dict[str, Any]) -> None:
    rows = [
        ("images (JPEG, 512–768 px)", f"{results['images']} ({results['megabytes']} MB, {results['cpus']} CPUs)"),
        ("listing + header scan", f"{results['header_scan_s']:.3f} s"),
        ("health check, thread pool", f"{results['check_s']:.3f} s  ({results['check_images_per_s']} images/s)"),
        ("health check, one worker", f"{results['check_one_worker_s']:.3f} s  "
                                     f"(pool is {results['check_thread_speedup']}× faster)"),
        ("first 50 thumbnails (draft)", f"{results['first_50_thumbnails_s']:.3f} s"),
        ("first 50 thumbnails (plain)", f"{results['first_50_plain_thumbnails_s']:.3f} s  "
                                        f"(draft is {results['thumbnail_speedup']}× faster)"),
        ("usable / findings", f"{results['usable']} / {results['findings']}"),
    ]
    width = max(len(name) for name, _ in rows)
    for name, value in rows:
        print(f"{name:<{width}}  {value}")


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=1000, help="how many images to generate (default 1000)")
    parser.add_argument("--keep", type=Path, help="generate into this folder and keep it (default: a temp dir)")
    args = parser.parse_args(argv)
    if args.keep is not None:
        results = run(args.keep, args.images)
    else:
        with tempfile.TemporaryDirectory(prefix="kamaal-bench-dataset-") as tmp:
            results = run(Path(tmp), args.images)
    print_table(results)
    return results


if __name__ == "__main__":
    main()

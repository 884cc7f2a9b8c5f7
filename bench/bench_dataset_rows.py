"""``make bench`` rows from :mod:`bench.bench_dataset` (library part only, ``IMAGES`` generated JPEGs;
run ``python -m bench.bench_dataset`` for the full 1,000 images; ``bench_dataset_panel`` has the panel rows)."""

from __future__ import annotations

import tempfile
from pathlib import Path

from bench.bench_dataset import run

IMAGES = 200


def rows() -> list[dict[str, str]]:
    with tempfile.TemporaryDirectory(prefix="kamaal-bench-dataset-") as tmp:
        r = run(Path(tmp) / "images", IMAGES)
    return [
        {"name": f"dataset: health check, {IMAGES} JPEGs", "kamaal": f"{r['check_s']:.2f} s",
         "reference": f"{r['check_one_worker_s']:.2f} s", "ratio": f"{r['check_s'] / r['check_one_worker_s']:.2f}",
         "note": f"thread pool vs one worker ({r['cpus']} CPUs); best of 2; lower is better"},
        {"name": "dataset: first 50 thumbnails", "kamaal": f"{r['first_50_thumbnails_s']:.3f} s",
         "reference": f"{r['first_50_plain_thumbnails_s']:.3f} s",
         "ratio": f"{r['first_50_thumbnails_s'] / r['first_50_plain_thumbnails_s']:.2f}",
         "note": "load_thumbnail (JPEG draft) vs full decode + thumbnail; lower is better"},
    ]

"""``make bench`` rows for the Dataset page on ``IMAGES`` generated JPEGs (issue 5's targets: first
thumbnails within 1 s, the health check within 15 s, the event loop never blocked over 50 ms, on
2 cores), from :func:`bench.bench_dataset.run_gui`: opened cold and warm, then imported into an
empty project while the grid is scrolled to the end and back; the reference is the empty panel
watched as long, on the same machine, right after.  ``python -m bench.bench_dataset`` prints more."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from bench.bench_dataset import _settle, generate, run_gui

IMAGES = 1000


def rows() -> list[dict[str, str]]:
    with tempfile.TemporaryDirectory(prefix="kamaal-bench-panel-") as tmp:
        folder = Path(tmp) / "images"
        generate(folder, IMAGES)
        _settle(folder)
        r = run_gui(folder)
    cpus = os.cpu_count()
    return [
        {"name": f"dataset page, {IMAGES:,} JPEGs: longest event-loop block",
         "kamaal": f"{r['gui_worst_block_ms']:.0f} ms", "reference": f"{r['gui_idle_worst_block_ms']:.0f} ms",
         "ratio": f"{r['gui_worst_block_ms'] / max(r['gui_idle_worst_block_ms'], 1.0):.2f}",
         "note": f"target 50 ms; opening {r['gui_open_worst_block_ms']:.0f} ms, importing + scrolling "
                 f"{r['gui_import_worst_block_ms']:.0f} ms; {r['gui_blocks_over_50ms']} over 50 ms in "
                 f"{r['gui_watched_s']:.0f} s vs {r['gui_idle_blocks_over_50ms']} idle; vs the empty panel idle"},
        {"name": f"dataset page, {IMAGES:,} JPEGs: p99 event-loop block",
         "kamaal": f"{r['gui_p99_block_ms']:.1f} ms", "reference": f"{r['gui_idle_p99_block_ms']:.1f} ms",
         "ratio": f"{r['gui_p99_block_ms'] / max(r['gui_idle_p99_block_ms'], 0.1):.2f}",
         "note": "5 ms timer, stall = gap - 5 ms; the worst of the three scenarios"},
        {"name": f"dataset page, {IMAGES:,} JPEGs: first {r['gui_screenful']} thumbnails",
         "kamaal": f"{r['gui_first_thumbnails_cold_s']:.2f} s", "reference": "1 s (target)",
         "ratio": f"{r['gui_first_thumbnails_cold_s']:.2f}",
         "note": f"cold (no disk cache); warm {r['gui_first_thumbnails_warm_s']:.2f} s; both include starting the "
                 f"page's worker processes (listing shown after {r['gui_listed_cold_s']:.2f} s); {cpus} CPUs"},
        {"name": f"dataset page, {IMAGES:,} JPEGs: health check done", "kamaal": f"{r['gui_health_check_s']:.1f} s",
         "reference": "15 s (target)", "ratio": f"{r['gui_health_check_s'] / 15:.2f}",
         "note": f"from opening, check started at once; after an import: {r['gui_import_health_check_s']:.1f} s "
                 "from the drop (copying included)"},
    ]

"""The GPU rows of ``make bench``: read from the newest ``make gpu-check`` results (``bench/results/gpu-*.json``).

The GPU check trains Kamaal's real trainer on full-size SD 1.5, SDXL, SD 3.5 and Flux for up to 8 minutes
(``bench/gpu_check.py``), too long to repeat inside ``make bench``; its JSON file is the measurement,
and these rows show it beside the others (its date and GPU in the note).  Without such a file: one
``skipped`` row saying how to make one.
"""

from __future__ import annotations

import json
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results"


def newest_result(folder: Path | None = None) -> Path | None:
    """The newest real (not dry-run) GPU check; the names sort by their UTC time."""
    files = sorted(p for p in (folder or RESULTS).glob("gpu-*.json") if not p.name.startswith("gpu-dry-run-"))
    return files[-1] if files else None


def rows(folder: Path | None = None) -> list[dict[str, str]]:
    from bench.gpu_check import table_cells

    path = newest_result(folder)
    if path is None:
        return [{"name": "gpu: Kamaal's trainer on CUDA", "note": "skipped: no bench/results/gpu-*.json yet; "
                 "run make gpu-check on a CUDA GPU"}]
    result = json.loads(path.read_text(encoding="utf-8"))
    gpu = (result.get("machine", {}).get("device") or {}).get("name", "GPU")
    rows = []
    for row in result["rows"]:
        cells = table_cells(row)
        if not cells["it/s"]:
            rows.append({"name": f"gpu: {row['case']}", "note": f"{cells['status']} ({path.name})"})
            continue
        rows.append({"name": f"gpu: {row['case']}, it/s", "kamaal": f"{cells['it/s']} it/s",
                     "reference": f"{cells['ref it/s']} it/s" if cells["ref it/s"] else "",
                     "ratio": cells["ratio"],
                     "note": f"{gpu}, {result['when']}; peak {cells['peak GiB']} GiB allocated, "
                             f"{cells['reserved GiB']} reserved; estimate {cells['estimate GiB']} GiB "
                             f"({cells['est. error']}); loss {cells['loss']}"})
    pytest_result = result.get("pytest", {})
    rows.append({"name": "gpu: pytest -m cuda", "note": f"{pytest_result.get('status', '')} "
                 f"{pytest_result.get('summary', '')}".strip()})
    return rows

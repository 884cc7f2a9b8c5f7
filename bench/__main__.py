"""``make bench``: every benchmark side by side with its reference, one table, one JSON file.

    python -m bench [--only NAME ...] [--mid-size PX] [--mid-rounds N]

Each bench module has ``rows() -> list[dict]``; a row is ``{"name", "kamaal", "reference", "ratio",
"note"}`` (numbers as text with their unit; ``ratio`` is Kamaal ÷ reference in the direction the
note says).  A bench that cannot run here returns a row whose note starts with ``skipped:``; one
that fails returns a ``failed:`` row instead of stopping the others.  The rows are written to
``bench/results/latest.json`` (temp file + ``os.replace``: never a torn file).  Not a test: the
numbers are ratios measured side by side on the same machine, not timed assertions.
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import platform
import tempfile
import time
import traceback
from pathlib import Path
from typing import Any

BENCHES = ("bench_training", "bench_training_mid", "bench_messaging", "bench_gui_start", "bench_dataset_rows",
           "bench_dataset_panel", "bench_gui_stall", "bench_memory", "bench_estimate_rss", "bench_gpu", "bench_threads")
# Run only when named (--only): the first compiled run alone takes minutes on a CPU.
OPTIONAL = ("bench_compile",)
RESULTS = Path(__file__).resolve().parent / "results" / "latest.json"
COLUMNS = ("name", "kamaal", "reference", "ratio", "note")


def _load_average() -> str:
    try:
        return " ".join(f"{v:.2f}" for v in os.getloadavg())
    except (AttributeError, OSError):
        return "n/a"


def run_bench(name: str, options: dict[str, Any] | None = None) -> list[dict[str, str]]:
    """The bench's rows, its ``rows(**options)`` called with the options given for it on the command line."""
    started = time.perf_counter()
    try:
        rows = importlib.import_module(f"bench.{name}").rows(**(options or {}))
    except Exception as exc:  # one broken bench must not hide the others' numbers
        traceback.print_exc()
        rows = [{"name": name, "note": f"failed: {type(exc).__name__}: {exc}"}]
    seconds = time.perf_counter() - started
    return [{**{c: "" for c in COLUMNS}, **row, "bench": name, "bench_s": f"{seconds:.1f}"} for row in rows]


def print_table(rows: list[dict[str, str]]) -> None:
    widths = {c: max(len(c), *(len(str(r.get(c, ""))) for r in rows)) for c in COLUMNS}
    print("  ".join(f"{c:<{widths[c]}}" for c in COLUMNS))
    print("  ".join("-" * widths[c] for c in COLUMNS))
    for row in rows:
        print("  ".join(f"{row.get(c, '')!s:<{widths[c]}}" for c in COLUMNS))


def write_json(path: Path, payload: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".latest-", suffix=".json", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            json.dump(payload, handle, indent=2, ensure_ascii=False)
            handle.write("\n")
        os.chmod(tmp, 0o644)  # mkstemp makes it private; it is a plain results file
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def main(argv: list[str] | None = None) -> list[dict[str, str]]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", nargs="*", choices=BENCHES + OPTIONAL,
                        help=f"run just these benches (also: {', '.join(OPTIONAL)})")
    parser.add_argument("--out", type=Path, default=RESULTS, help=f"JSON file to write (default {RESULTS})")
    parser.add_argument("--mid-size", type=int, default=None, metavar="PX",
                        help="bench_training_mid's resolution (default 128 px, to fit make bench's minutes; the "
                             "issue's 256 px takes about 2 minutes a round on one CPU thread)")
    parser.add_argument("--mid-rounds", type=int, default=None, metavar="N",
                        help="bench_training_mid's interleaved rounds (default 3)")
    args = parser.parse_args(argv)
    mid = {key: value for key, value in (("resolution", args.mid_size), ("rounds", args.mid_rounds))
           if value is not None}
    options = {"bench_training_mid": mid}
    load_before = _load_average()
    rows: list[dict[str, str]] = []
    for name in args.only or BENCHES:
        print(f"... {name}", flush=True)
        rows += run_bench(name, options.get(name))
    print()
    print_table(rows)
    machine = {"platform": platform.platform(), "python": platform.python_version(), "cpus": os.cpu_count(),
               "load_before": load_before, "load_after": _load_average()}
    print(f"\n{machine['cpus']} CPUs, load {load_before} before / {machine['load_after']} after; "
          f"written to {args.out}")
    write_json(args.out, {"when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "machine": machine,
                          "rows": rows})
    return rows


if __name__ == "__main__":
    main()

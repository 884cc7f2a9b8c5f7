"""Training while other work holds the CPU: Kamaal's thread policy against torch's defaults, idle and under load.

    python -m bench --only bench_threads
    python -m bench.bench_threads [--steps 6] [--limit 150] [--load N]

The work: the demo preset's first ``STEPS`` steps (the shapes model, DreamBooth-LoRA with prior
preservation, batch 4 at 64 px, on the CPU) through the real ``measure`` task in a real spawned
``TaskProcess`` child — the app's own path, where ``trainer.threads.apply_policy`` runs before torch
loads.  The reference is the very same child with ``KAMAAL_THREADS=torch``: torch's defaults (one
thread per physical core, OpenMP threads that spin while they wait).  Under load a third child keeps torch's
thread count but takes the policy's passive wait (``KAMAAL_THREADS=<physical cores>``): what the wait
policy alone buys, as on CUDA, where the policy leaves the count alone.  Every child starts with no
``OMP_*``/``KMP_*``/``MKL_NUM_THREADS`` variables, whatever the bench's environment holds.

The load: one busy-loop process per CPU (``os.cpu_count()``, or ``--load``), started by the bench afresh
for each loaded child, each ending itself after ``limit + 60`` seconds at the latest and killed as soon
as that child is measured.  Each measurement is bounded by ``limit`` seconds; one that runs out is
stopped and shown as ``> limit`` with the steps it finished, and its ratio as a bound.

Rows: wall time from spawn to result (starting the child, loading the model, caching latents, the
steps: what a person waits for) and seconds per step (steps 2..N; the child's clock, or the events'
arrival times for a run cut short), idle and under load.  The ratio is Kamaal ÷ reference (below 1:
Kamaal faster).  Not a test: compare each pair, measured one right after the other on the same machine.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

DEMO = Path(__file__).resolve().parents[1] / "resources" / "presets" / "demo.toml"
STEPS, LIMIT_S, POLL_S = 6, 150.0, 0.05
CLEARED = ("KAMAAL_THREADS", "OMP_NUM_THREADS", "OMP_WAIT_POLICY", "KMP_BLOCKTIME", "MKL_NUM_THREADS",
           "GOMP_SPINCOUNT")
BUSY_LOOP = "import time\nend = time.monotonic() + {seconds}\nwhile time.monotonic() < end:\n    pass\n"


def measure_with_policy(args: dict, context: Any) -> dict:
    """A task (runs in the child): the ``measure`` task, plus the threads it ran with."""
    from trainer import threads
    from trainer.tasks.measure import measure

    return {**measure(args, context), "policy": threads.describe()}


@contextlib.contextmanager
def _environment(values: dict[str, str]) -> Iterator[None]:
    """``values`` in os.environ (everything in CLEARED else removed) while a child is spawned; restored after."""
    saved = {name: os.environ.get(name) for name in (*CLEARED, *values)}
    try:
        for name in CLEARED:
            os.environ.pop(name, None)
        os.environ.update(values)
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


@contextlib.contextmanager
def busy_processes(count: int, seconds: float) -> Iterator[None]:
    """``count`` processes spinning on a core each; each ends by itself after ``seconds``, all killed on exit."""
    loops = [subprocess.Popen([sys.executable, "-c", BUSY_LOOP.format(seconds=seconds)]) for _ in range(count)]
    try:
        time.sleep(1.0)  # running and scheduled before the measurement starts
        yield
    finally:
        for loop in loops:
            loop.kill()
        for loop in loops:
            loop.wait(10)


def demo_config() -> dict:
    from trainer.config import load_config

    return load_config(DEMO).to_dict()


def torch_default_threads() -> int:
    """What torch would pick (one thread per physical core), without importing torch here."""
    import psutil

    return psutil.cpu_count(logical=False) or os.cpu_count() or 1


def variant_environment(variant: str) -> dict[str, str]:
    """kamaal: the policy; torch: torch's defaults; passive: torch's thread count with the policy's wait policy."""
    return {"kamaal": {}, "torch": {"KAMAAL_THREADS": "torch"},
            "passive": {"KAMAAL_THREADS": str(torch_default_threads())}}[variant]


def run_once(variant: str, steps: int, limit: float) -> dict[str, Any]:
    """One measuring child; ``{"wall_s", "s_per_step", "steps", "done", "policy"}``."""
    from trainer.process import TaskProcess
    from trainer.protocol import Failed, TaskDone, TaskProgress

    with _environment(variant_environment(variant)):
        child = TaskProcess("bench.bench_threads:measure_with_policy", {"config": demo_config(), "steps": steps})
        started = time.perf_counter()
        child.start()
    at: dict[int, float] = {}  # step → when its progress arrived (for a run cut short)
    try:
        while time.perf_counter() - started < limit:
            for event in child.poll_events():
                if isinstance(event, TaskProgress) and event.done > 0:
                    at[event.done] = time.perf_counter()
                elif isinstance(event, Failed):
                    raise RuntimeError(f"the measuring child failed: {event.message}")
                elif isinstance(event, TaskDone):
                    result = event.result
                    return {"wall_s": time.perf_counter() - started, "s_per_step": 1 / result["it_per_s"],
                            "steps": result["steps"], "done": True, "policy": result["policy"]}
            if not child.is_alive() and not at:
                raise RuntimeError(f"the measuring child exited with {child.exitcode} before any step")
            time.sleep(POLL_S)
    finally:
        child.close()
    done = max(at, default=0)
    per_step = (at[done] - at[1]) / (done - 1) if done >= 2 else float("inf")
    return {"wall_s": limit, "s_per_step": per_step, "steps": done, "done": False, "policy": "?"}


def measure(steps: int = STEPS, limit: float = LIMIT_S, load: int | None = None) -> dict[str, dict[str, Any]]:
    load = load or os.cpu_count() or 1
    results = {f"idle {variant}": run_once(variant, steps, limit) for variant in ("kamaal", "torch")}
    for variant in ("kamaal", "passive", "torch"):
        with busy_processes(load, limit + 60):  # fresh loops for each child: each starts from the same state
            results[f"load {variant}"] = run_once(variant, steps, limit)
    return results


def _measured(result: dict[str, Any], key: str) -> bool:
    """Whether ``result[key]`` is a measurement (not a bound): the run finished, or s/step over ≥ 2 steps."""
    return result["done"] or (key == "s_per_step" and result["steps"] >= 2)


def _seconds(result: dict[str, Any], key: str) -> str:
    if _measured(result, key):
        return f"{result[key]:.2f} s" + ("" if result["done"] else f" (of {result['steps']} steps in the limit)")
    if key == "s_per_step":
        return f"n/a ({result['steps']} step(s) in the limit)"
    return f"> {result[key]:.0f} s ({result['steps']} of the steps)"


def _ratio(kamaal: dict[str, Any], reference: dict[str, Any], key: str) -> str:
    if not _measured(kamaal, key):
        return "n/a"
    if not _measured(reference, key):
        if key == "s_per_step":
            return "n/a"
        return f"< {kamaal[key] / reference[key]:.2f}"  # the reference was cut short: it would have taken longer
    return f"{kamaal[key] / reference[key]:.2f}"


def rows(steps: int = STEPS, limit: float = LIMIT_S, load: int | None = None) -> list[dict[str, str]]:
    load = load or os.cpu_count() or 1
    results = measure(steps, limit, load)
    out = []
    # "idle": no load started by the bench (whatever else runs on the machine still does: see the load average)
    for condition, words in (("idle", "no added load"), ("load", f"+{load} busy-loop processes")):
        kamaal, torch = results[f"{condition} kamaal"], results[f"{condition} torch"]
        out += [{"name": f"threads: demo, {steps} steps, {words}: spawn → result",
                 "kamaal": _seconds(kamaal, "wall_s"), "reference": _seconds(torch, "wall_s"),
                 "ratio": _ratio(kamaal, torch, "wall_s"),
                 "note": f"vs torch's defaults (KAMAAL_THREADS=torch), same child; Kamaal: {kamaal['policy']}"},
                {"name": f"threads: demo, {words}: s/step (2..{steps})",
                 "kamaal": _seconds(kamaal, "s_per_step"), "reference": _seconds(torch, "s_per_step"),
                 "ratio": _ratio(kamaal, torch, "s_per_step"),
                 "note": f"reference: {torch['policy']}; lower is better"}]
    passive, torch = results["load passive"], results["load torch"]
    out.append({"name": f"threads: demo, +{load} busy-loop processes: s/step, torch's thread count + passive wait",
                "kamaal": _seconds(passive, "s_per_step"), "reference": _seconds(torch, "s_per_step"),
                "ratio": _ratio(passive, torch, "s_per_step"),
                "note": f"the wait policy alone (as on CUDA); spawn → result {_seconds(passive, 'wall_s')}; "
                        f"{passive['policy']}"})
    return out


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=STEPS)
    parser.add_argument("--limit", type=float, default=LIMIT_S, help="seconds allowed per measurement")
    parser.add_argument("--load", type=int, default=None, help="busy-loop processes (default: one per CPU)")
    args = parser.parse_args(argv)
    from bench.__main__ import _load_average, print_table

    before = _load_average()
    print_table(rows(args.steps, args.limit, args.load))
    print(f"\nload average {before} before, {_load_average()} after")


if __name__ == "__main__":
    main()

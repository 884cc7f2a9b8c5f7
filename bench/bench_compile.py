"""``training.torch_compile`` on against off: Kamaal's own LoRA step on the tiny SD 1.5 model, caching on.

    python -m bench --only bench_compile

Not in the default ``make bench``: the first compiled run waits for inductor's code generation (about three
minutes on 2 CPU cores for the tiny UNet's forward and backward), which alone is the whole bench's budget.
Later runs of the same shapes reuse inductor's on-disk cache.  Rounds of off, on are interleaved as in
``bench_training``; the rows give the steps/s ratio (on ÷ off: above 1, compiling helped) and the time to the
end of step 1 of the first compiled run, which carries the compilation.
"""

from __future__ import annotations

import os
import statistics
import tempfile
from pathlib import Path

from bench.bench_training import STEPS, WARMUP, _Recorder, _spread, kamaal_config

ROUNDS = 3


def _run(config, run_dir: Path) -> tuple[float, float]:
    """(steps/s over the steps after WARMUP up to the one before the last, seconds to the end of step 1)."""
    from trainer.protocol import Failed, Progress
    from trainer.runfolder import RunFolder
    from trainer.runlog import NoCommands
    from trainer.worker import run_worker

    RunFolder.create(config, run_dir)
    sink = _Recorder()
    code = run_worker(run_dir, NoCommands(), sink)
    failed = [e for e in sink.events if isinstance(e, Failed)]
    if code != 0 or failed:
        raise RuntimeError(f"Kamaal run failed (exit {code}): {failed[:1]}")
    at = {e.step: e.elapsed_s for e in sink.events if isinstance(e, Progress) and e.step > 0}
    last = max(at) - 1
    return (last - WARMUP) / (at[last] - at[WARMUP]), at[1]


def rows() -> list[dict[str, str]]:
    import torch

    from bench.reference_loop import draw_shapes
    from trainer.config import config_from_dict
    from trainer.models.tiny import build_tiny_model
    from trainer.threads import choose_threads, usable_cores

    speeds: dict[bool, list[float]] = {False: [], True: []}
    first_step: dict[bool, list[float]] = {False: [], True: []}
    before = torch.get_num_threads()
    torch.set_num_threads(choose_threads(os.environ, cuda=False, cores=usable_cores()).threads or before)
    try:
        with tempfile.TemporaryDirectory(prefix="kamaal-bench-compile-") as tmp:
            root = Path(tmp)
            model_dir = build_tiny_model(root / "model", "sd15", seed=0)
            dataset_dir = draw_shapes(root / "shapes")
            for round_ in range(ROUNDS):
                for compiled in (False, True):
                    values = kamaal_config(model_dir, dataset_dir, caching=True).model_dump()
                    values["training"]["torch_compile"] = compiled
                    speed, first = _run(config_from_dict(values), root / "runs" / f"{compiled}-{round_}")
                    speeds[compiled].append(speed)
                    first_step[compiled].append(first)
        threads = torch.get_num_threads()
    finally:
        torch.set_num_threads(before)
    load = " ".join(f"{v:.1f}" for v in os.getloadavg()) if hasattr(os, "getloadavg") else "n/a"
    ratios = [on / off for on, off in zip(speeds[True], speeds[False], strict=True)]
    return [
        {"name": "training.torch_compile: LoRA steps/s, caching on", "kamaal": f"{statistics.median(speeds[True]):.2f} "
         f"it/s ({_spread(speeds[True])})", "reference": f"{statistics.median(speeds[False]):.2f} it/s "
         f"({_spread(speeds[False])}) uncompiled", "ratio": f"{statistics.median(ratios):.2f} ({_spread(ratios)})",
         "note": f"tiny sd15, 64 px, batch 2, {STEPS} steps ({WARMUP} warm-up excluded), CPU, {threads} torch "
                 f"thread(s), {ROUNDS} interleaved rounds, load {load} at the end"},
        {"name": "training.torch_compile: end of step 1, first compiled run", "kamaal": f"{first_step[True][0]:.1f} s",
         "reference": f"{statistics.median(first_step[False]):.2f} s uncompiled",
         "ratio": f"{first_step[True][0] / statistics.median(first_step[False]):.0f}",
         "note": "the compilation (inductor's disk cache may hold it from an earlier run: then later rounds' "
                 f"{_spread(first_step[True][1:])} s)"},
    ]

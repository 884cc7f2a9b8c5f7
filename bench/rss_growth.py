"""One short training run in a fresh interpreter, reporting how far its resident memory grew (issue 24's check of
the memory estimate on the CPU; ``tests/diffusion/test_memory_estimate_rss.py`` and ``bench/bench_estimate_rss.py``
run it).

    python -m bench.rss_growth MODEL_DIR DATASET_DIR WORK_DIR ARCH BATCH RESOLUTION

Everything a run imports is imported first and the peak is reset (Linux: ``/proc/self/clear_refs``), so the growth
— the peak during the run (``VmHWM``) less the resident size just before it — is the run's own: the model, the
data and the training steps.  Prints one JSON object: ``growth_bytes`` and the config's ``estimate`` parts.
"""

from __future__ import annotations

import gc
import json
import sys
from pathlib import Path


def resident_and_peak() -> tuple[int, int]:
    """(VmRSS, VmHWM) in bytes, from /proc/self/status: a high-water mark of this process alone (``ru_maxrss``
    would carry the parent's across fork + exec)."""
    values = {}
    with open("/proc/self/status", encoding="ascii") as status:
        for line in status:
            if line.startswith(("VmRSS:", "VmHWM:")):
                values[line.split(":")[0]] = int(line.split()[1]) * 1024
    return values["VmRSS"], values["VmHWM"]


class _Events:
    def __init__(self, events: list) -> None:
        self.events = events

    def emit(self, event: object) -> None:
        self.events.append(event)


def main(model: str, dataset: str, work: str, arch: str, batch: str, resolution: str) -> None:
    import accelerate  # noqa: F401  (imported before the baseline: libraries are not the run's growth)
    import diffusers  # noqa: F401
    import peft  # noqa: F401
    import torch  # noqa: F401
    import transformers  # noqa: F401

    from trainer.config import config_from_dict
    from trainer.memory_estimate import estimate_memory
    from trainer.model_sizes import count_parameters
    from trainer.protocol import EXIT_OK
    from trainer.runfolder import RunFolder
    from trainer.runlog import NoCommands
    from trainer.worker import run_worker

    side = int(resolution)
    config = config_from_dict({
        "mode": "lora", "model": {"architecture": arch, "path": model},
        "dataset": {"path": dataset, "resolution": side, "min_bucket_side": side, "max_bucket_side": side},
        "training": {"steps": 2, "batch_size": int(batch), "learning_rate": 1e-3, "eval_every": 1000, "seed": 1},
        "lora": {"rank": 4, "alpha": 4.0},
        # The final preview, small and the same for every batch: a fixed cost, not the run's batch.
        "sampling": {"prompts": ["a red circle"], "seeds": [7], "inference_steps": 1, "at_start": False,
                     "width": 64, "height": 64},
        "output": {"run_name": "rss", "checkpoint_every": 0}})
    run = RunFolder.create(config, Path(work) / "run")
    gc.collect()
    try:
        Path("/proc/self/clear_refs").write_text("5")  # resets VmHWM to the current size
    except OSError:
        pass  # an older kernel: the peak since start, which the imports may hold (the growth reads high)
    before, _ = resident_and_peak()
    events: list = []
    code = run_worker(run.root, NoCommands(), _Events(events))
    _, peak = resident_and_peak()
    if code != EXIT_OK:
        raise SystemExit(f"the run failed: {events[-1] if events else code}")
    estimate = estimate_memory(config, "cpu", count_parameters(Path(model)))
    print(json.dumps({"growth_bytes": peak - before, "estimate": estimate.parts()}))


if __name__ == "__main__":
    main(*sys.argv[1:])

"""Kamaal's LoRA step against the diffusers-style loop on a full-size SD 1.5 architecture (random weights).

    python -m bench --only bench_training_mid

``bench_training`` times the tiny model, whose VAE and text encoder cost almost nothing, so caching can win
little there.  Here the UNet, VAE and text encoder are SD 1.5's real sizes (``resources/model_configs/sd15``,
860 M + 84 M + 123 M parameters, built with random weights by ``bench.gpu_cases.build_random_model``), so the
share of a step that caching removes is the real model's.  At 128 px, batch 1, LoRA rank 4: a step takes about
2 s on one CPU thread (5.8 s at 256 px), so the three interleaved rounds of reference, caching on and caching off
fit in about three minutes (``make bench``).  The issue's 256 px, or another round count, by hand::

    python -m bench --only bench_training_mid --mid-size 256 --mid-rounds 2

Each Kamaal run is stopped (without saving) after its last timed step, so the rounds do not pay for the final
evaluation, export and samples; the held-out evaluation before step 1 and the latent cache's encoding stay
outside the timed steps, as loading does for both sides.
"""

from __future__ import annotations

import gc
import os
import statistics
import tempfile
from pathlib import Path

from bench.bench_training import _spread, kamaal_config, kamaal_steps_per_s
from bench.reference_loop import ReferenceSpec, draw_shapes, run_reference, steps_per_s

RESOLUTION, BATCH, RANK, IMAGES = 128, 1, 4, 4
WARMUP, LAST = 1, 4  # steps 2–4 are timed on both sides (the first carries one-time allocations)
ROUNDS = 3


def rows(resolution: int = RESOLUTION, rounds: int = ROUNDS) -> list[dict[str, str]]:
    """``rounds`` rounds of reference, caching on, caching off at ``resolution`` px, with the trainer's own thread
    count on both sides (as ``bench_training``); one row per caching setting, in seconds per step, with the median
    ratio of speeds (Kamaal ÷ reference: above 1, Kamaal is faster) and its range over the rounds."""
    import torch

    from bench.gpu_cases import build_random_model
    from trainer.models.info import MODEL_CONFIGS
    from trainer.threads import choose_threads, usable_cores

    speeds: dict[str, list[float]] = {"reference": [], "on": [], "off": []}
    before = torch.get_num_threads()
    torch.set_num_threads(choose_threads(os.environ, cuda=False, cores=usable_cores()).threads or before)
    try:
        with tempfile.TemporaryDirectory(prefix="kamaal-bench-mid-") as tmp:
            root = Path(tmp)
            model_dir = build_random_model(MODEL_CONFIGS / "sd15", root / "model", "sd15", "cpu")
            dataset_dir = draw_shapes(root / "shapes", count=IMAGES, size=resolution)
            for round_ in range(rounds):
                spec = ReferenceSpec(model_dir, dataset_dir, "sd15", resolution, BATCH, RANK, LAST)
                speeds["reference"].append(steps_per_s(run_reference(spec).stamps, WARMUP, LAST))
                gc.collect()
                for caching in ("on", "off"):
                    config = kamaal_config(model_dir, dataset_dir, caching == "on", steps=LAST + 1,
                                           resolution=resolution, batch=BATCH)
                    speeds[caching].append(kamaal_steps_per_s(config, root / "runs" / f"{caching}-{round_}",
                                                              warmup=WARMUP, stop_after=LAST))
                    gc.collect()
        threads = torch.get_num_threads()
    finally:
        torch.set_num_threads(before)
    load = " ".join(f"{v:.1f}" for v in os.getloadavg()) if hasattr(os, "getloadavg") else "n/a"
    shape = (f"full-size SD 1.5 architecture (random weights), {resolution} px, batch {BATCH}, rank {RANK}, "
             f"steps {WARMUP + 1}–{LAST} timed, CPU, {threads} torch thread(s) both sides, {rounds} interleaved "
             f"rounds, load {load} at the end")
    seconds = {name: [1 / s for s in values] for name, values in speeds.items()}
    out = []
    for caching, what in (("on", f"vs diffusers DreamBooth-LoRA loop; {shape}"),
                          ("off", "same work per step as the reference (VAE + text encoder every step)")):
        ratios = [k / r for k, r in zip(speeds[caching], speeds["reference"], strict=True)]
        out.append({"name": f"training, full-size SD 1.5, {resolution} px: LoRA s/step, caching {caching}",
                    "kamaal": f"{statistics.median(seconds[caching]):.2f} s/step ({_spread(seconds[caching])})",
                    "reference": f"{statistics.median(seconds['reference']):.2f} s/step "
                                 f"({_spread(seconds['reference'])})",
                    "ratio": f"{statistics.median(ratios):.2f} ({_spread(ratios)})", "note": what})
    return out

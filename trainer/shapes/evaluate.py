"""Judge a Stable Diffusion pipeline on the shapes world: does "a red star" draw a red star?

    python -m trainer.shapes.evaluate resources/models/shapes-sd [--seeds 3] [--json]

draws every (colour, shape) prompt of the world with a few fixed seeds and reports how often the
judge sees the asked colour, the asked shape, and both — overall and per prompt.  The README's
"Shapes world" table comes from here.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from trainer.shapes.judge import PromptScore, score_samples
from trainer.shapes.world import SHAPE_COLOURS, SHAPES

PROMPT_TEMPLATE = "a {colour} {shape} on a gray background"  # every colour shows on gray


def world_prompts(template: str = PROMPT_TEMPLATE) -> list[str]:
    return [template.format(colour=colour, shape=shape) for shape in SHAPES for colour in SHAPE_COLOURS]


@dataclass(frozen=True)
class Report:
    scores: list[PromptScore]

    def mean(self, what: str) -> float:
        values = [getattr(score, what) for score in self.scores if getattr(score, what) is not None]
        return sum(values) / len(values) if values else 0.0

    def summary(self) -> dict[str, Any]:
        return {"prompts": len(self.scores), "samples": sum(s.samples for s in self.scores),
                "colour": round(self.mean("colour"), 3), "shape": round(self.mean("shape"), 3),
                "both": round(self.mean("both"), 3)}


def draw_samples(pipe: Any, prompt: str, seeds: Sequence[int], steps: int = 20, guidance: float = 5.0,
                 size: int = 64) -> list[Any]:
    """One PIL image per seed (CPU generators, so the same on every machine)."""
    import torch

    generators = [torch.Generator("cpu").manual_seed(seed) for seed in seeds]
    with torch.no_grad():
        return pipe([prompt] * len(seeds), num_inference_steps=steps, guidance_scale=guidance, height=size,
                    width=size, generator=generators).images


def evaluate_pipeline(pipe: Any, prompts: Sequence[str], seeds: Sequence[int], steps: int = 20,
                      guidance: float = 5.0, aliases: dict[str, str] | None = None) -> Report:
    pipe.set_progress_bar_config(disable=True)
    scores = [score_samples(prompt, draw_samples(pipe, prompt, seeds, steps, guidance), aliases)
              for prompt in prompts]
    return Report(scores)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m trainer.shapes.evaluate", description=__doc__.split("\n")[0])
    parser.add_argument("model", help="a diffusers folder (or single file) of an SD 1.x model")
    parser.add_argument("--seeds", type=int, default=3, help="samples per prompt (seeds 0..N-1; default 3)")
    parser.add_argument("--steps", type=int, default=20, help="DDIM steps per sample (default 20)")
    parser.add_argument("--guidance", type=float, default=5.0, help="classifier-free guidance (default 5)")
    parser.add_argument("--json", action="store_true", help="print JSON with per-prompt scores")
    parser.add_argument("--threads", type=int, default=1, help="CPU threads (default 1: see build.py)")
    args = parser.parse_args(argv)

    import torch

    from trainer.models import load_model

    torch.set_num_threads(args.threads)
    pipe = load_model(Path(args.model)).pipeline
    report = evaluate_pipeline(pipe, world_prompts(), list(range(args.seeds)), args.steps, args.guidance)
    if args.json:
        rows = [{"prompt": s.prompt, "colour": s.colour, "shape": s.shape, "both": s.both,
                 "seen": [f"{r.colour} {r.shape}" for r in s.readings]} for s in report.scores]
        print(json.dumps({"summary": report.summary(), "prompts": rows}, indent=2))
    else:
        for score in report.scores:
            seen = ", ".join(f"{r.colour} {r.shape}" for r in score.readings)
            print(f"{score.prompt:<45} colour {score.colour:.2f}  shape {score.shape:.2f}   saw: {seen}")
        print(json.dumps(report.summary()))
    return 0


if __name__ == "__main__":
    sys.exit(main())

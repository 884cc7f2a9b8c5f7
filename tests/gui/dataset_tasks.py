"""A stand-in for the generate-class-images task, for the panel's tests: writes small PNGs, no torch."""

from __future__ import annotations

import time
from pathlib import Path

from PIL import Image

from trainer.concepts import concepts_of
from trainer.config import config_from_dict
from trainer.tasks.runner import TaskContext


def fake_class_images(args: dict, context: TaskContext) -> dict:
    config = config_from_dict(args["config"])
    concept = concepts_of(config)[int(args.get("concept", 0))]
    folder = Path(concept.class_dir)
    folder.mkdir(parents=True, exist_ok=True)
    have = len(list(folder.glob("*.png")))
    missing = max(0, concept.num_class_images - have)
    delay = float(args.get("delay_s", 0.0) or (0.2 if missing > 5 else 0.0))
    for n in range(missing):
        context.check_cancelled()
        time.sleep(delay)
        Image.new("RGB", (64, 64), (n * 40 % 255, 90, 160)).save(folder / f"class-{have + n:05d}.png")
        context.progress(n + 1, missing, f"Class image {n + 1} of {missing}")
    return {"class_dir": str(folder), "generated": missing, "total": have + missing}

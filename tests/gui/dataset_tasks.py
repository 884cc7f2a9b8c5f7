"""Stand-ins for the panel's tasks in tests: the generate-class-images task (writes small PNGs, no torch) and a
captioning task slow enough to cancel."""

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


def slow_captions(args: dict, context: TaskContext) -> dict:
    """The real ``caption-images`` task, pausing after each caption so that a test can cancel it midway."""
    from trainer.captioning.task import caption_images_task

    class Pausing:
        def progress(self, done: int, total: int, message: str = "", data: dict | None = None) -> None:
            context.progress(done, total, message, data)
            if data:
                time.sleep(0.8)  # time for the GUI to see it and send Stop, even on a busy machine

        def __getattr__(self, name: str) -> object:
            return getattr(context, name)

    return caption_images_task(args, Pausing())  # type: ignore[arg-type]

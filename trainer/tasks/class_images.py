"""The ``generate-class-images`` task: DreamBooth's missing class images, made in a trainer process.

The dataset panel starts it (through ``desktop_app.tasks.TaskRunner``) so the user can fill the
class folder before training, with progress and Cancel; training would otherwise generate them
itself at the start of the run (``trainer.diffusion.class_images.ensure_class_images``, the same
code).  Runs in the spawn child: torch and diffusers are imported inside the function.

Arguments: ``config`` — a complete config as a dict, paths absolute (the GUI sends
``resolve_paths(config, project_root).to_dict()``); ``concept`` — which concept's class set
(0 = the first, ``dreambooth.class_*``; n = ``concepts[n - 1]``), 0 when left out.
Result: ``{"class_dir", "generated", "total"}``.
Images already written when the task is cancelled stay; the next run only makes the rest.
"""

from __future__ import annotations

import logging
from pathlib import Path

from trainer.concepts import concepts_of
from trainer.config import config_from_dict
from trainer.errors import InputError
from trainer.tasks.runner import TaskContext


class _ContextLog(logging.Handler):
    """Forwards the engine's log lines to the GUI as ``Log`` events."""

    def __init__(self, context: TaskContext) -> None:
        super().__init__(logging.INFO)
        self.context = context

    def emit(self, record: logging.LogRecord) -> None:
        self.context.log(record.getMessage(), record.levelname.lower())


def generate_class_images(args: dict, context: TaskContext) -> dict:
    from trainer.diffusion.class_images import count_class_images, ensure_class_images
    from trainer.diffusion.components import load_components, pick_device

    config = config_from_dict(args["config"])
    index = int(args.get("concept", 0))
    concepts = concepts_of(config)
    if not 0 <= index < len(concepts):
        raise InputError(f"concepts: there is no concept {index + 1} (this config has {len(concepts)})")
    concept = concepts[index]
    folder = concept.class_dir
    if not folder:
        raise InputError(f"{concept.field('class_dir')}: choose a folder for the class images first")
    logger = logging.getLogger("kamaal.tasks.class_images")
    logger.setLevel(logging.INFO)
    logger.propagate = False
    handler = _ContextLog(context)
    logger.addHandler(handler)
    try:
        have = count_class_images(Path(folder))
        wanted = concept.num_class_images
        if have >= wanted:
            context.progress(1, 1, f"{have} class images already there")
            return {"class_dir": folder, "generated": 0, "total": have}
        context.progress(0, wanted - have, "Loading the base model…")
        context.check_cancelled()
        parts = load_components(config, logger)
        context.check_cancelled()

        def on_image(done: int, missing: int) -> None:
            context.progress(done, missing, f"Class image {done} of {missing}")
            context.check_cancelled()

        generated = ensure_class_images(config, parts, pick_device(), logger, on_image, concept=index)
        return {"class_dir": folder, "generated": generated, "total": count_class_images(Path(folder))}
    finally:
        logger.removeHandler(handler)

"""The ``caption-images`` task: the Dataset page's captioner, run in a trainer process (torch and onnxruntime
never load in the GUI).

The task only *reads*: it opens the captioner, captions each image it is given and hands every caption over
with its progress (``TaskProgress.data``: ``{"image", "caption"}``, or ``{"image", "problem"}`` for an image it
cannot read).  The page decides which images to send (the mode's choice, on the captions the person sees) and
applies each caption as it arrives, like an edit typed in the caption editor, so Cancel keeps every caption
that came before it and one undo takes the batch back.

Arguments: ``model`` (the folder), ``images`` (absolute paths), ``options`` (``CaptionerOptions`` fields:
``prompt``, ``max_new_tokens``, ``general_threshold``, ``character_threshold``, ``blacklist`` as a list,
``keep_underscores``).  Result: ``{"captioner", "captioned", "skipped"}``.
"""

from __future__ import annotations

from pathlib import Path

from trainer.captioning.folder import MODEL_FIELD
from trainer.errors import InputError
from trainer.tasks.runner import TaskContext

OPTION_NAMES = ("prompt", "max_new_tokens", "general_threshold", "character_threshold", "blacklist",
                "keep_underscores")


def caption_images_task(args: dict, context: TaskContext) -> dict:
    from trainer.captioning.models import CaptionerOptions, open_captioner
    from trainer.dataset.imaging import DatasetImageError, load_rgb
    from trainer.diffusion.components import pick_device

    folder = Path(str(args.get("model") or ""))
    if not str(args.get("model") or ""):
        raise InputError(f"{MODEL_FIELD}: choose the folder of a captioning model first")
    images = [Path(path) for path in args.get("images") or []]
    given = dict(args.get("options") or {})
    unknown = sorted(set(given) - set(OPTION_NAMES))
    if unknown:
        raise InputError(f"caption-images: unknown options {', '.join(unknown)}")
    given["blacklist"] = tuple(given.get("blacklist") or ())
    context.progress(0, len(images), f"Loading {folder.name}…")
    captioner = open_captioner(folder, CaptionerOptions(**given, device=pick_device()), MODEL_FIELD)
    context.log(f"Captioning {len(images)} image(s) with {captioner.name}")
    captioned, skipped = 0, []
    for done, image in enumerate(images, start=1):
        context.check_cancelled()
        try:
            text = captioner.caption(load_rgb(image))
        except (DatasetImageError, OSError) as error:
            skipped.append(str(image))
            context.progress(done, len(images), f"Skipped {image.name}", {"image": str(image), "problem": str(error)})
            continue
        captioned += 1
        context.progress(done, len(images), image.name, {"image": str(image), "caption": text})
    return {"captioner": captioner.name, "captioned": captioned, "skipped": skipped}

"""Tasks the GUI needs from the engine: small wrappers that turn plain arguments into engine calls."""

from __future__ import annotations

from pathlib import Path

from trainer.errors import InputError
from trainer.tasks.runner import TaskContext


def inspect_blocks(args: dict, context: TaskContext) -> dict:
    """The UNet and text-encoder block tree of ``args["model"]`` (for the frozen-layer tree in the GUI).

    Arguments: ``model`` (path), ``depth`` (default 2), ``trainable`` (patterns, default none), and for a
    single-file base with separate text encoder and VAE files (Flux) ``text_encoder_files`` and ``vae_file``, and
    for one whose tokenizer is not shipped (Lumina 2) ``tokenizer_folder``.
    Result: ``{"model": path, "blocks": {component: [{"block", "parameters", "trainable"}, ...]}}``.
    """
    from trainer.freezing import model_blocks

    model = str(args.get("model") or "")
    if not model:
        raise InputError("model.path: no model chosen")
    context.progress(0, 1, f"Loading {Path(model).name}…")
    blocks = model_blocks(Path(model), int(args.get("depth", 2)), list(args.get("trainable", ())),
                          text_encoder_files=[str(p) for p in args.get("text_encoder_files") or []],
                          vae_file=str(args.get("vae_file") or ""),
                          tokenizer_folder=str(args.get("tokenizer_folder") or ""))
    context.progress(1, 1, "Done")
    return {"model": model, "blocks": blocks}

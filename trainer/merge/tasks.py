"""The ``merge-*`` tasks the GUI runs in a trainer process: plain data in, plain data out.

Each unpacks its arguments, calls the merge function with the task context as reporter (progress,
log, cancel) and returns paths and numbers the panel can show.  Registered in ``trainer.tasks.TASKS``.
"""

from __future__ import annotations

from typing import Any

from trainer.errors import InputError
from trainer.tasks.runner import TaskContext


def _pairs(value: Any, what: str) -> list[tuple[str, float]]:
    try:
        return [(str(path), float(weight)) for path, weight in value or []]
    except (TypeError, ValueError):
        raise InputError(f"{what}: expected [path, weight] pairs") from None


def _optional(args: dict, key: str) -> str | None:
    value = args.get(key)
    return str(value) if value not in (None, "") else None


def fuse_lora_task(args: dict, context: TaskContext) -> dict:
    from trainer.merge.fuse import fuse_lora

    summary = fuse_lora(str(args.get("model") or ""), _pairs(args.get("loras"), "loras"),
                        output_dir=_optional(args, "output_dir"), output_file=_optional(args, "output_file"),
                        dtype=str(args.get("dtype", "auto")), config_dir=_optional(args, "config_dir"),
                        reporter=context)
    return {"outputs": [str(p) for p in summary.outputs], "modules": summary.modules,
            "architecture": summary.architecture}


def merge_loras_task(args: dict, context: TaskContext) -> dict:
    from trainer.merge.lora_merge import merge_loras

    rank = args.get("rank")
    summary = merge_loras(_pairs(args.get("loras"), "loras"), str(args.get("output") or ""),
                          mode=args.get("mode", "exact"), rank=int(rank) if rank else None,
                          fmt=_optional(args, "format"), reporter=context)
    return {"outputs": [str(summary.output)], "modules": summary.modules, "rank": summary.rank,
            "relative_error": summary.relative_error, "worst_module": summary.worst_module,
            "worst_error": summary.worst_error, "warnings": summary.notes}


def merge_checkpoints_task(args: dict, context: TaskContext) -> dict:
    from trainer.merge.checkpoints import merge_checkpoints

    summary = merge_checkpoints(str(args.get("a") or ""), str(args.get("b") or ""), str(args.get("output") or ""),
                                alpha=float(args.get("alpha", 0.5)), c=_optional(args, "c"),
                                method=args.get("method", "weighted_sum"),
                                block_weights=str(args.get("block_weights", "")),
                                dtype=_optional(args, "dtype"), components=args.get("components", "all"),
                                reporter=context)
    return {"outputs": [str(summary.output)], "tensors": summary.tensors, "block_weights": summary.block_weights,
            "warnings": summary.warnings, "kept_from_a": len(summary.kept_from_a)}


def convert_lora_task(args: dict, context: TaskContext) -> dict:
    from trainer.merge.convert import convert_lora

    context.progress(0, 1, "Converting…")
    out = convert_lora(str(args.get("lora") or ""), str(args.get("output") or ""), to=_optional(args, "to"))
    context.progress(1, 1, "Done")
    return {"outputs": [str(out)]}


def convert_model_task(args: dict, context: TaskContext) -> dict:
    from trainer.merge.convert import convert_model

    out = convert_model(str(args.get("model") or ""), str(args.get("output") or ""), to=_optional(args, "to"),
                        dtype=str(args.get("dtype", "auto")), config_dir=_optional(args, "config_dir"),
                        text_encoder_files=[str(f) for f in args.get("text_encoder_files") or []],
                        vae_file=str(args.get("vae_file") or ""), reporter=context)
    return {"outputs": [str(out)]}


def preview_task(args: dict, context: TaskContext) -> dict:
    from trainer.merge.preview import render_preview

    seeds = [int(s) for s in args.get("seeds") or []]
    size = args.get("size")
    return render_preview(list(args.get("rows") or []), str(args.get("out_dir") or ""),
                          prompts=[str(p) for p in args.get("prompts") or []], seeds=seeds,
                          steps=int(args.get("steps", 20)), size=int(size) if size else None,
                          guidance=float(args.get("guidance", 7.5)), config_dir=_optional(args, "config_dir"),
                          reporter=context)

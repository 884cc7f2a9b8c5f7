"""Preview a merge: the same prompts and seeds drawn by each input and by the result, side by side.

Rows are models (a base model, optionally with LoRAs applied as diffusers adapters at their weights),
columns are (prompt, seed) pairs.  Images are written as PNGs and travel back as paths.  A model used by
several rows is loaded once.
"""

from __future__ import annotations

import io
import re
from pathlib import Path
from typing import Any

import torch

from trainer.errors import InputError
from trainer.fsutil import atomic_write_bytes
from trainer.merge.outputs import NullReporter, Reporter, require_input

DEFAULT_PROMPTS = ["a portrait photo of a woman, soft light", "a red sports car on a mountain road",
                   "a cosy cabin in a snowy forest, evening"]
DEFAULT_SEEDS = [1234]


def _slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")[:40] or "row"


def render_preview(rows: list[dict[str, Any]], out_dir: Path | str, *, prompts: list[str] | None = None,
                   seeds: list[int] | None = None, steps: int = 20, size: int | None = None,
                   guidance: float = 7.5, config_dir: Path | str | None = None,
                   reporter: Reporter | None = None) -> dict[str, Any]:
    """``rows``: ``[{"label": "A", "model": path, "loras": [[path, weight], ...]}]``.

    Returns ``{"rows": [{"label", "images": [paths]}], "columns": ["prompt · seed"], "out_dir"}``."""
    from trainer.diffusion.sampling import guidance_arguments, prepared, prompt_arguments
    from trainer.models import load_model, pick_device, pick_dtype

    reporter = reporter or NullReporter()
    prompts = [p for p in (prompts or DEFAULT_PROMPTS) if p.strip()] or DEFAULT_PROMPTS
    seeds = list(seeds or DEFAULT_SEEDS)
    if not rows:
        raise InputError("preview: nothing to preview")
    if steps < 1:
        raise InputError(f"preview steps must be ≥ 1, got {steps}")
    out = Path(out_dir)
    device = pick_device()
    columns = [(prompt, seed) for prompt in prompts for seed in seeds]
    total = len(rows) * len(columns)
    pipelines: dict[str, Any] = {}
    result_rows = []
    done = 0
    for index, row in enumerate(rows):
        label = str(row.get("label") or f"model {index + 1}")
        model = require_input(row.get("model") or "", f"preview {label}: model")
        key = str(model.resolve())
        if key not in pipelines:
            reporter.progress(done, total, f"Loading {model.name}…")
            loaded = load_model(model, dtype=pick_dtype("auto", device), device=device, config_dir=config_dir)
            pipelines[key] = prepared(loaded.pipeline, loaded.info.architecture)  # quiet, set up as its family says
        pipeline = pipelines[key]
        loras = [(require_input(p, f"preview {label}: LoRA"), float(w)) for p, w in row.get("loras") or []]
        names = [f"preview{i}" for i in range(len(loras))]
        for name, (path, _) in zip(names, loras, strict=True):
            pipeline.load_lora_weights(str(path.parent), weight_name=path.name, adapter_name=name)
        if names:
            pipeline.set_adapters(names, [w for _, w in loras])
        unet = getattr(pipeline, "unet", None)  # a transformer family's pipeline has none: a quick 512 px preview
        side = size or (int(unet.config.sample_size * pipeline.vae_scale_factor) if unet is not None else 512)
        row_dir = out / f"{index:02d}-{_slug(label)}"
        images = []
        try:
            for column, (prompt, seed) in enumerate(columns):
                reporter.check_cancelled()
                reporter.progress(done, total, f"{label}: “{prompt}”, seed {seed}")
                with torch.no_grad():
                    generator = torch.Generator("cpu").manual_seed(seed)
                    # Every family's call: the prompt by name (Flux.2's first argument is an image), its guidance
                    # argument (Qwen-Image: true_cfg_scale with a negative prompt), images first in the tuple.
                    image = pipeline(prompt=prompt, **prompt_arguments(pipeline, prompt),
                                     **guidance_arguments(pipeline, guidance), width=side, height=side,
                                     num_inference_steps=steps, generator=generator, return_dict=False)[0][0]
                buffer = io.BytesIO()
                image.save(buffer, format="PNG")
                path = row_dir / f"{column:02d}-seed{seed}.png"
                atomic_write_bytes(path, buffer.getvalue())
                images.append(str(path))
                done += 1
        finally:
            if names:
                pipeline.unload_lora_weights()  # the next row may use the same base without them
        result_rows.append({"label": label, "images": images})
    reporter.progress(total, total, "Preview ready")
    return {"rows": result_rows, "columns": [f"{p} · seed {s}" for p, s in columns], "out_dir": str(out)}

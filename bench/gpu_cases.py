"""The child side of ``gpu_check``: each piece of work runs in its own process, started by ``gpu_check``.

    python -m bench.gpu_cases SPEC.json RESULT.json

One process per piece keeps every peak-memory reading clean (CUDA's peaks are per process) and lets an
out-of-memory case end as a row instead of ending the check.  Three kinds of ``SPEC["kind"]``:

* ``models``: random-weight models, one diffusers folder per architecture, built from configs (the
  bundled real-size ones in ``resources/model_configs``; for ``--dry-run`` the tiny models' own) on the
  device, stored with Kamaal's folder writer; plus the device as Kamaal's ``device-info`` task sees it.
* ``case``: Kamaal's real trainer through the **Measure** task (``trainer.tasks.measure.measure``: the
  config snapshotted into a run folder, ``run_worker`` — the app's own path — for warm-up + timed steps,
  stopped without saving), and the memory estimate of the same config.
* ``reference``: ``bench/reference_loop.py`` on the same model, images and settings.

The result is plain JSON; an exception becomes ``{"status": "out of memory" | "failed: …"}``.
"""

from __future__ import annotations

import json
import math
import sys
import traceback
from pathlib import Path
from typing import Any

MARKER = "kamaal-gpu-check.json"  # written last into a finished model folder: it can be reused (--keep-models)


def build_random_model(config_dir: Path, out: Path, arch: str, device: str) -> Path:
    """A diffusers folder with freshly initialised weights of the models ``config_dir`` describes.

    Built on ``device`` (initialising SDXL's 3.5 billion parameters takes minutes on a CPU, seconds on a
    GPU) and stored by Kamaal's folder writer: UNet and VAE in fp16 on CUDA, text encoders in fp32."""
    import diffusers
    import torch
    import transformers

    from trainer.models.folder_dtypes import save_diffusers_folder
    from trainer.models.loading import _extra_pipeline_args, _pipeline_class, _tokenizer
    from trainer.models.offline import force_offline

    force_offline()
    index = json.loads((config_dir / "model_index.json").read_text(encoding="utf-8"))
    torch.manual_seed(0)
    parts: dict[str, Any] = {}
    with torch.device(device):
        parts["unet"] = diffusers.UNet2DConditionModel.from_config(
            diffusers.UNet2DConditionModel.load_config(config_dir / "unet"))
        parts["vae"] = diffusers.AutoencoderKL.from_config(diffusers.AutoencoderKL.load_config(config_dir / "vae"))
        for name in ("text_encoder", "text_encoder_2"):
            if name in index:
                config = transformers.CLIPTextConfig.from_pretrained(config_dir / name, local_files_only=True)
                parts[name] = getattr(transformers, index[name][1])(config)
    for name in ("tokenizer", "tokenizer_2"):
        if name in index:  # the second SDXL tokenizer pads with "!" like OpenCLIP
            parts[name] = _tokenizer(config_dir / name, open_clip=name == "tokenizer_2")
    parts["scheduler"] = getattr(diffusers, index["scheduler"][1]).from_pretrained(
        config_dir, subfolder="scheduler", local_files_only=True)
    pipeline = _pipeline_class(arch)(**parts, **_extra_pipeline_args(arch))  # as Kamaal's loader builds it
    save_diffusers_folder(pipeline, out, torch.float16 if device == "cuda" else torch.float32)
    return out


def make_models(spec: dict[str, Any]) -> dict[str, Any]:
    """Every architecture's model folder (reused when a finished one of the same kind is there), and the device."""
    import time

    from trainer.models.info import ModelInfo, default_config_dir
    from trainer.models.tiny import build_tiny_model, write_tiny_config_dir
    from trainer.tasks.measure import device_info

    root, tiny, device = Path(spec["models_dir"]), bool(spec["tiny"]), spec["device"]
    built: dict[str, Any] = {}
    for arch in spec["archs"]:
        out = root / arch
        wanted = {"arch": arch, "tiny": tiny, "device": device}
        marker = out / MARKER
        if marker.is_file() and json.loads(marker.read_text(encoding="utf-8")) == wanted:
            built[arch] = {"path": str(out), "seconds": 0.0, "reused": True}
            continue
        started = time.perf_counter()
        if tiny:  # the tiny model's configs, then the same random build as the real size
            config_dir = write_tiny_config_dir(build_tiny_model(root / f".tiny-{arch}", arch), root / f".cfg-{arch}")
        else:
            config_dir = default_config_dir(ModelInfo(arch, "epsilon", "single_file"))  # the bundled real size
        build_random_model(config_dir, out, arch, device)
        marker.write_text(json.dumps(wanted), encoding="utf-8")
        built[arch] = {"path": str(out), "seconds": round(time.perf_counter() - started, 1), "reused": False}
    return {"status": "ok", "models": built, "device": device_info({}, _quiet_context())}


def kamaal_config(spec: dict[str, Any]) -> dict[str, Any]:
    """The case as a Kamaal config: LoRA, batch 1, latent + text caching on, no samples."""
    resolution = int(spec["resolution"])
    return {
        "mode": "lora",
        "model": {"architecture": spec["arch"], "path": spec["model_dir"], "precision": spec["precision"]},
        "dataset": {"path": spec["dataset_dir"], "resolution": resolution, "min_bucket_side": resolution,
                    "max_bucket_side": resolution, "cache_latents": "memory", "cache_text": "on"},
        "training": {"steps": spec["warmup"] + spec["steps"], "batch_size": 1, "learning_rate": 1e-4,
                     "optimizer": spec["optimizer"], "gradient_checkpointing": spec["checkpointing"], "seed": 1},
        "lora": {"rank": spec["rank"], "alpha": float(spec["rank"])},
        "sampling": {"prompts": ["a red circle"], "at_start": False},
        "output": {"run_name": "gpu-check"},
    }


def run_case(spec: dict[str, Any]) -> dict[str, Any]:
    import torch

    from trainer.config import config_from_dict
    from trainer.memory_estimate import estimate_memory
    from trainer.tasks.measure import count_parameters, measure

    data = kamaal_config(spec)
    measured = measure({"config": data, "steps": spec["warmup"] + spec["steps"], "warmup": spec["warmup"]},
                       _quiet_context())
    device = "cuda" if measured["device"].startswith("cuda") else "cpu"
    estimate = estimate_memory(config_from_dict(data), device, count_parameters(Path(spec["model_dir"])))
    losses = [float(x) for x in measured["losses"]]
    return {"status": "ok", "it_per_s": measured["it_per_s"], "peak_allocated_bytes": measured["peak_memory_bytes"],
            "peak_reserved_bytes": measured["peak_reserved_bytes"], "memory_kind": measured["memory_kind"],
            "device": measured["device"], "seconds": measured["seconds"], "losses": _finite_or_none(losses),
            "loss_finite": bool(losses) and all(math.isfinite(x) for x in losses),
            "estimate_bytes": estimate.total, "estimate_parts": estimate.parts(),
            "tf32": bool(torch.backends.cuda.matmul.allow_tf32)}  # the job turns it on for CUDA runs


def run_reference_case(spec: dict[str, Any]) -> dict[str, Any]:
    from bench.reference_loop import ReferenceSpec, run_reference, steps_per_s

    precision = "no" if spec["device"] == "cpu" and spec["precision"] == "fp16" else spec["precision"]
    run = run_reference(ReferenceSpec(
        Path(spec["model_dir"]), Path(spec["dataset_dir"]), spec["arch"], spec["resolution"], 1, spec["rank"],
        spec["warmup"] + spec["steps"], spec["device"], precision, spec["checkpointing"], spec["optimizer"]))
    return {"status": "ok", "it_per_s": steps_per_s(run.stamps, spec["warmup"], spec["warmup"] + spec["steps"]),
            "peak_allocated_bytes": run.peak_allocated_bytes, "peak_reserved_bytes": run.peak_reserved_bytes,
            "losses": _finite_or_none(run.losses), "loss_finite": all(math.isfinite(x) for x in run.losses)}


def _finite_or_none(values: list[float]) -> list[float | None]:
    """JSON has no NaN: a non-finite loss is written as null (and ``loss_finite`` says so)."""
    return [x if math.isfinite(x) else None for x in values]


def _quiet_context() -> Any:
    from trainer.runlog import NoCommands
    from trainer.tasks.runner import TaskContext

    class Quiet:
        def emit(self, event: Any) -> None:
            pass

    return TaskContext(NoCommands(), Quiet())


WORK = {"models": make_models, "case": run_case, "reference": run_reference_case}


def describe_failure(exc: BaseException) -> str:
    text = f"{type(exc).__name__}: {exc}"
    if "OutOfMemoryError" in text or "out of memory" in text.lower():
        return "out of memory"
    return "failed: " + (text.splitlines()[0] if text.strip() else type(exc).__name__)[:300]


def main(argv: list[str]) -> int:
    from trainer import threads

    threads.apply_policy()  # as every trainer and task child does, before torch is imported
    spec_path, result_path = Path(argv[0]), Path(argv[1])
    spec = json.loads(spec_path.read_text(encoding="utf-8"))
    try:
        result = WORK[spec["kind"]](spec)
    except Exception as exc:  # the parent turns it into a row; the traceback goes to this piece's log
        traceback.print_exc()
        result = {"status": describe_failure(exc)}
    result_path.write_text(json.dumps(result, indent=1), encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

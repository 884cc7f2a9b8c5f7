"""The child side of ``gpu_check``: each piece of work runs in its own process, started by ``gpu_check``.

    python -m bench.gpu_cases SPEC.json RESULT.json

One process per piece keeps every peak-memory reading clean (CUDA's peaks are per process) and lets an
out-of-memory case end as a row instead of ending the check.  Three kinds of ``SPEC["kind"]``:

* ``models``: random-weight models, one diffusers folder per architecture, built from configs on the
  device, stored with Kamaal's folder writer; plus the device as Kamaal's ``device-info`` task sees it.
  SD 1.5 / SDXL from the bundled real-size configs (``resources/model_configs``); SD 3.5 Medium and
  Flux.1-dev, which have no bundled folder, from the configs written out in ``REAL_SIZE`` below (their one
  T5-XXL, 4.8 B parameters, is built once and hard-linked into both folders); Z-Image and Qwen-Image from their
  bundled configs by ``build_config_model`` (in bf16 throughout); for ``--dry-run`` the tiny models
  (``trainer.models.tiny``).
* ``case``: Kamaal's real trainer through the **Measure** task (``trainer.tasks.measure.measure``: the
  config snapshotted into a run folder, ``run_worker`` — the app's own path — for warm-up + timed steps,
  stopped without saving), and the memory estimate of the same config.
* ``reference``: ``bench/reference_loop.py`` on the same model, images and settings.

The result is plain JSON; an exception becomes ``{"status": "out of memory" | "failed: …"}``.
"""

from __future__ import annotations

import importlib
import json
import math
import sys
import traceback
from pathlib import Path
from typing import Any

MARKER = "kamaal-gpu-check.json"  # written last into a finished model folder: it can be reused (--keep-models)
SHARED_T5 = ".t5xxl"  # beside the model folders: the T5-XXL the flow families' folders link to

# The released models' configs (diffusers' config.json of black-forest-labs/FLUX.1-dev and
# stabilityai/stable-diffusion-3.5-medium, and their text encoders'), written out: nothing is downloaded.
_FLOW_VAE: dict[str, Any] = {
    "in_channels": 3, "out_channels": 3, "latent_channels": 16, "block_out_channels": (128, 256, 512, 512),
    "down_block_types": ("DownEncoderBlock2D",) * 4, "up_block_types": ("UpDecoderBlock2D",) * 4,
    "layers_per_block": 2, "norm_num_groups": 32, "sample_size": 1024, "use_quant_conv": False,
    "use_post_quant_conv": False}
_CLIP_IDS = {"vocab_size": 49408, "max_position_embeddings": 77, "bos_token_id": 49406, "eos_token_id": 49407}
CLIP_L: dict[str, Any] = {"hidden_size": 768, "num_hidden_layers": 12, "num_attention_heads": 12,
                          "intermediate_size": 3072, "projection_dim": 768, "hidden_act": "quick_gelu",
                          "pad_token_id": 49407, **_CLIP_IDS}
CLIP_G: dict[str, Any] = {"hidden_size": 1280, "num_hidden_layers": 32, "num_attention_heads": 20,
                          "intermediate_size": 5120, "projection_dim": 1280, "hidden_act": "gelu",
                          "pad_token_id": 0, **_CLIP_IDS}  # OpenCLIP pads with "!", id 0
T5_XXL: dict[str, Any] = {"vocab_size": 32128, "d_model": 4096, "d_kv": 64, "d_ff": 10240, "num_layers": 24,
                          "num_heads": 64, "feed_forward_proj": "gated-gelu", "is_encoder_decoder": False,
                          "use_cache": False}
REAL_SIZE: dict[str, dict[str, Any]] = {
    "flux": {  # Flux.1-dev, 11.9 B: FluxTransformer2DModel's defaults, guidance-distilled
        "denoiser": ("FluxTransformer2DModel", {
            "patch_size": 1, "in_channels": 64, "num_layers": 19, "num_single_layers": 38,
            "attention_head_dim": 128, "num_attention_heads": 24, "joint_attention_dim": 4096,
            "pooled_projection_dim": 768, "guidance_embeds": True, "axes_dims_rope": (16, 56, 56)}),
        "vae": {**_FLOW_VAE, "shift_factor": 0.1159, "scaling_factor": 0.3611},
        "encoders": (CLIP_L, T5_XXL),
        "scheduler": {"num_train_timesteps": 1000, "shift": 3.0, "use_dynamic_shifting": True, "base_shift": 0.5,
                      "max_shift": 1.15, "base_image_seq_len": 256, "max_image_seq_len": 4096}},
    "chroma": {  # Chroma1-HD, 8.9 B: ChromaTransformer2DModel's defaults (resources/model_configs/chroma); T5 alone
        "denoiser": ("ChromaTransformer2DModel", {
            "patch_size": 1, "in_channels": 64, "num_layers": 19, "num_single_layers": 38,
            "attention_head_dim": 128, "num_attention_heads": 24, "joint_attention_dim": 4096,
            "axes_dims_rope": (16, 56, 56), "approximator_num_channels": 64, "approximator_hidden_dim": 5120,
            "approximator_layers": 5}),
        "vae": {**_FLOW_VAE, "shift_factor": 0.1159, "scaling_factor": 0.3611},
        "encoders": (T5_XXL,),
        "scheduler": {"num_train_timesteps": 1000, "shift": 3.0, "use_dynamic_shifting": True, "base_shift": 0.5,
                      "max_shift": 1.15, "base_image_seq_len": 256, "max_image_seq_len": 4096}},
    "sd3": {  # SD 3.5 Medium, 2.5 B (MMDiT-X: dual attention in the first 13 layers)
        "denoiser": ("SD3Transformer2DModel", {
            "sample_size": 128, "patch_size": 2, "in_channels": 16, "out_channels": 16, "num_layers": 24,
            "attention_head_dim": 64, "num_attention_heads": 24, "joint_attention_dim": 4096,
            "caption_projection_dim": 1536, "pooled_projection_dim": 2048, "pos_embed_max_size": 384,
            "dual_attention_layers": tuple(range(13)), "qk_norm": "rms_norm"}),
        "vae": {**_FLOW_VAE, "shift_factor": 0.0609, "scaling_factor": 1.5305},
        "encoders": (CLIP_L, CLIP_G, T5_XXL),
        "scheduler": {"num_train_timesteps": 1000, "shift": 3.0}},
}


# Flux.1 Kontext dev is Flux.1 dev's transformer, VAE and encoders (its folder differs in the pipeline class only).
REAL_SIZE["fluxkontext"] = REAL_SIZE["flux"]


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


def build_flow_model(out: Path, arch: str, device: str, dtype: Any, t5_dir: Path,
                     config_dir: Path | None = None) -> Path:
    """A diffusers folder of a flow-matching family (``sd3``, ``flux``, ``chroma``, ``lumina2``) with freshly
    initialised weights, of the sizes in ``config_dir``'s configs (the dry run's tiny model) or else
    ``REAL_SIZE[arch]`` (or, for a family not there, its shipped folder in ``resources/model_configs``), built on
    ``device`` and stored by Kamaal's folder writer: transformer and VAE in ``dtype``, CLIP encoders in fp32,
    and the T5 encoder — built once, in fp32, into ``t5_dir`` — hard-linked from there (19 GB at real size:
    one copy on disk for both families).

    One part at a time on the device (Flux's transformer is 48 GB in fp32 while it is initialised, 24 GB
    once cast), so the peak stays under an 80 GB GPU's memory."""
    import diffusers
    import torch
    import transformers

    from trainer import families
    from trainer.models.clip_vocab import t5_tokenizer
    from trainer.models.folder_dtypes import save_diffusers_folder
    from trainer.models.info import MODEL_CONFIGS
    from trainer.models.loading import _tokenizer
    from trainer.models.offline import force_offline
    from trainer.models.tiny import tiny_gemma_tokenizer

    force_offline()
    family = families.family(arch)
    real = REAL_SIZE.get(arch)
    if config_dir is None and real is None:  # its real size is shipped: resources/model_configs
        config_dir = MODEL_CONFIGS / family.config_folders["flow_matching"]
    denoiser_class = getattr(diffusers, family.tiny["denoiser"][0])

    def config_of(name: str, default: Any, loader: Any) -> Any:
        return loader(config_dir / name) if config_dir else default

    parts: dict[str, Any] = {}
    for index, encoder in enumerate(family.text_encoders):
        t5 = encoder.tokenizer_kind == "t5"
        config_class = transformers.T5Config if t5 else getattr(transformers, encoder.transformers_class).config_class
        config = (config_class.from_pretrained(config_dir / encoder.component, local_files_only=True)
                  if config_dir else config_class(**real["encoders"][index]))
        if t5:
            parts[encoder.component] = _shared_t5(t5_dir, config, device)
            parts[encoder.tokenizer] = t5_tokenizer()
            continue
        torch.manual_seed(2 + index)
        with torch.device(device):
            parts[encoder.component] = getattr(transformers, encoder.transformers_class)(config)
        folder = (config_dir or t5_dir / "none") / encoder.tokenizer
        if encoder.tokenizer_kind == "gemma":  # the tiny model's own; Gemma's 256,000 pieces are not shipped, and
            # the tiny vocabulary's ids are valid ones of the real embedding (prompts as long, within a few tokens)
            parts[encoder.tokenizer] = (transformers.AutoTokenizer.from_pretrained(folder, local_files_only=True)
                                        if folder.is_dir() else tiny_gemma_tokenizer())
        else:  # the tiny model's own tokenizer, else the shipped CLIP vocabulary (OpenCLIP's pads with "!")
            parts[encoder.tokenizer] = _tokenizer(folder, encoder.open_clip)
    torch.manual_seed(0)
    with torch.device(device):
        parts[family.denoiser] = denoiser_class.from_config(
            config_of(family.denoiser, real and real["denoiser"][1], denoiser_class.load_config)).to(dtype)
        torch.manual_seed(1)
        parts["vae"] = diffusers.AutoencoderKL.from_config(
            config_of("vae", real and real["vae"], diffusers.AutoencoderKL.load_config)).to(dtype)
    scheduler = diffusers.FlowMatchEulerDiscreteScheduler
    parts["scheduler"] = scheduler.from_config(config_of("scheduler", real and real["scheduler"],
                                                         scheduler.load_config))
    pipeline = getattr(diffusers, family.pipeline_class)(**parts, **family.pipeline_args)
    _check_disk(out.parent, sum(_stored_bytes(module, dtype) for module in parts.values()
                                if isinstance(module, torch.nn.Module) and not _on_meta(module)))
    save_diffusers_folder(pipeline, out, dtype)
    return out


def build_config_model(config_dir: Path, out: Path, arch: str, device: str, dtype: Any) -> Path:
    """A diffusers folder of a family whose real configs ship in ``resources/model_configs`` (Z-Image, Qwen-Image,
    Flux.2 klein; ``config_dir`` is that folder, or the dry run's tiny model's),
    every part as ``model_index.json`` names it,
    with freshly initialised weights, built in ``dtype`` on ``device`` one part at a time and kept on the CPU.

    Built in ``dtype`` from the start (``torch.set_default_dtype``): Qwen-Image's 20.4 B transformer would be 82 GB
    in fp32 while it is initialised.  Stored as built — text encoders too, not in the fp32 the folder writer keeps
    them in: Qwen-Image's 8.3 B Qwen2.5-VL would be 33 GB, and with the 41 GB transformer the folder would not fit
    the lent machine's 64 GB disk; Kamaal's loader reads every part in the run's dtype either way.  Tokenizers: the
    folder's own (tiny models), else the shipped ones the family names."""
    import diffusers
    import torch
    import transformers

    from trainer import families
    from trainer.models.clip_vocab import qwen3_tokenizer, t5_tokenizer
    from trainer.models.folder_dtypes import _name_published_classes
    from trainer.models.loading import _tokenizer
    from trainer.models.offline import force_offline
    from trainer.models.tiny import tiny_gemma_tokenizer, tiny_tekken_tokenizer

    force_offline()
    family = families.family(arch)
    index = json.loads((config_dir / "model_index.json").read_text(encoding="utf-8"))
    specs = {spec.tokenizer: spec for spec in family.text_encoders}
    parts: dict[str, Any] = {}
    default = torch.get_default_dtype()
    components = sorted((k, v) for k, v in index.items()
                        if not k.startswith("_") and isinstance(v, list) and len(v) == 2  # not is_distilled
                        and v[0] is not None)  # nor a component the folder leaves out (ERNIE-Image's pe)
    for seed, (name, entry) in enumerate(components):
        library, class_name = entry
        if name in specs:  # a tokenizer
            spec = specs[name]
            if (config_dir / name).is_dir():
                parts[name] = transformers.AutoTokenizer.from_pretrained(config_dir / name, local_files_only=True)
            elif spec.tokenizer_kind == "qwen3":
                parts[name] = qwen3_tokenizer()
                if spec.chat_template is not None:  # the model's own turns (Qwen3-VL's)
                    parts[name].chat_template = spec.chat_template
            elif spec.tokenizer_kind == "t5":
                parts[name] = t5_tokenizer()
            elif spec.tokenizer_kind in ("gemma", "llama"):  # Gemma's 256,000 pieces, Llama 3's 128,256: not shipped;
                parts[name] = tiny_gemma_tokenizer()  # the tiny vocabulary's ids are valid ones of the real embedding
            elif spec.tokenizer_kind == "tekken":  # nor Tekken's 131,072: likewise
                parts[name] = tiny_tekken_tokenizer()
            else:
                parts[name] = _tokenizer(config_dir / name, spec.open_clip)
            if spec.tokenizer_component:  # the pipeline reads prompts through a processor made from the tokenizer
                module_name, function_name = family.tiny["processor"].split(":")
                parts[name] = getattr(importlib.import_module(module_name), function_name)(parts[name])
        elif name == "scheduler":
            parts[name] = getattr(diffusers, class_name).from_pretrained(config_dir, subfolder=name,
                                                                         local_files_only=True)
        else:
            torch.manual_seed(seed)
            try:
                torch.set_default_dtype(dtype)
                with torch.device(device):
                    if library == "diffusers":
                        model_class = getattr(diffusers, class_name)
                        module = model_class.from_config(model_class.load_config(config_dir / name))
                    else:
                        config = transformers.AutoConfig.from_pretrained(config_dir / name, local_files_only=True)
                        module = getattr(transformers, class_name)(config)
            finally:
                torch.set_default_dtype(default)
            parts[name] = module.to("cpu", dtype)
            if device == "cuda":
                torch.cuda.empty_cache()
    # The index's settings that are no component (Flux.2 klein's is_distilled) go to the pipeline as they are.
    extras = {key: value for key, value in index.items()
              if not key.startswith("_") and key not in parts and not isinstance(value, list)}
    pipeline = getattr(diffusers, family.pipeline_class)(**parts, **extras, **family.pipeline_args)
    _check_disk(out.parent, sum(_stored_bytes(module, dtype) for module in parts.values()
                                if isinstance(module, torch.nn.Module)))
    pipeline.save_pretrained(out, safe_serialization=True)
    _name_published_classes(pipeline, out)  # Kamaal's processors stand in for transformers' (torchvision) ones
    return out


def _shared_t5(t5_dir: Path, config: Any, device: str) -> Any:
    """A T5 encoder on the meta device (no memory) whose ``save_pretrained`` hard-links the files of the one
    in ``t5_dir`` — built there first (seeded, on ``device``, saved in fp32) unless a finished one of the same
    config is there."""
    import gc
    import os
    import shutil

    import torch
    import transformers

    wanted = {"t5": config.to_diff_dict(), "device": device}
    wanted = json.loads(json.dumps(wanted, default=str))
    marker = t5_dir / MARKER
    t5_config = config
    if not (marker.is_file() and json.loads(marker.read_text(encoding="utf-8")) == wanted):
        # Removed, not overwritten: folders linked to an older build keep their files, and none of its are left.
        shutil.rmtree(t5_dir, ignore_errors=True)
        torch.manual_seed(5)
        with torch.device(device):
            model = transformers.T5EncoderModel(t5_config)
        _check_disk(t5_dir.parent, _stored_bytes(model, torch.float32))
        model.save_pretrained(t5_dir, safe_serialization=True)
        marker.write_text(json.dumps(wanted), encoding="utf-8")
        del model
        gc.collect()
        if device == "cuda":
            torch.cuda.empty_cache()
    with torch.device("meta"):
        stand_in = transformers.T5EncoderModel(t5_config)

    def link_files(save_directory: str, **_: Any) -> None:  # what the pipeline's save_pretrained calls
        target = Path(save_directory)
        target.mkdir(parents=True, exist_ok=True)
        for file in t5_dir.iterdir():
            if file.name == MARKER or not file.is_file():
                continue
            (target / file.name).unlink(missing_ok=True)
            try:
                os.link(file, target / file.name)
            except OSError:  # another file system: a copy
                shutil.copy2(file, target / file.name)

    stand_in.save_pretrained = link_files  # type: ignore[method-assign]
    return stand_in


def _on_meta(module: Any) -> bool:
    return any(p.is_meta for p in module.parameters())


def _stored_bytes(module: Any, dtype: Any) -> int:
    import torch

    size = torch.finfo(dtype).bits // 8
    return sum(p.numel() * (size if p.is_floating_point() else p.element_size()) for p in module.parameters())


def _check_disk(folder: Path, needed: int) -> None:
    """Refuse, saying so, a write the disk has no room for (Flux's folder and the T5 take 44 GB)."""
    import shutil

    folder.mkdir(parents=True, exist_ok=True)
    free = shutil.disk_usage(folder).free
    if needed + 2**30 > free:
        raise OSError(f"not enough disk for the model: {needed / 1e9:.1f} GB needed, {free / 1e9:.1f} GB free "
                      f"at {folder}")


def make_models(spec: dict[str, Any]) -> dict[str, Any]:
    """Every architecture's model folder (reused when a finished one of the same kind is there), and the device."""
    import shutil
    import time

    import torch

    from trainer import families
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
        shutil.rmtree(out, ignore_errors=True)  # nothing of an older build (another size's shards) stays
        flow = families.family(arch).flow is not None
        written_out = arch in REAL_SIZE  # sd3, flux: no bundled configs, a builder of their own
        prediction = "flow_matching" if flow else "epsilon"
        if tiny:  # the tiny model's configs, then the same random build as the real size
            config_dir = write_tiny_config_dir(build_tiny_model(root / f".tiny-{arch}", arch), root / f".cfg-{arch}")
        else:
            config_dir = None if written_out else default_config_dir(ModelInfo(arch, prediction, "single_file"))
        flow_dtype = torch.bfloat16 if device == "cuda" else torch.float32
        if written_out:
            build_flow_model(out, arch, device, flow_dtype, root / SHARED_T5, config_dir)
        elif flow:  # zimage, qwenimage, flux2klein: their real configs ship
            assert config_dir is not None
            build_config_model(config_dir, out, arch, device, flow_dtype)
        else:
            assert config_dir is not None
            build_random_model(config_dir, out, arch, device)
        marker.write_text(json.dumps(wanted), encoding="utf-8")
        built[arch] = {"path": str(out), "seconds": round(time.perf_counter() - started, 1), "reused": False}
    return {"status": "ok", "models": built, "device": device_info({}, _quiet_context())}


def kamaal_config(spec: dict[str, Any]) -> dict[str, Any]:
    """The case as a Kamaal config: LoRA, batch 1, latent + text caching on, no samples."""
    resolution = int(spec["resolution"])
    return {
        "mode": "lora",
        "model": {"architecture": spec["arch"], "path": spec["model_dir"], "precision": spec["precision"],
                  "base_quantization": spec.get("quantization", "none"), "blocks_to_swap": spec.get("swap", 0),
                  "text_encoder_quantization": spec.get("text_quantization", "none")},
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

"""Stable Diffusion training: LoRA, DreamBooth (LoRA or full UNet, with prior preservation) and
frozen-layer fine-tuning, for SD 1.x, 2.x and SDXL.

Call order follows the diffusers examples: load → freeze everything → add adapters (or unfreeze
chosen blocks) → trained parameters in fp32 → Accelerator.prepare → per step: accumulate →
backward → on sync: clip, optimizer step, LR step.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import torch

from trainer.config import Config
from trainer.diffusion import data as ds
from trainer.diffusion.components import Components, load_components, pick_device, pick_precision, weight_dtype
from trainer.diffusion.loss import denoising_loss, draw_noise
from trainer.diffusion.sampling import build_pipeline, draw
from trainer.diffusion.text import TextConditioning, encode_prompts, sdxl_time_ids
from trainer.errors import InputError
from trainer.freezing import apply_trainable_patterns
from trainer.jobs.base import StepResult, TrainingJob
from trainer.jobs.diffusion_outputs import export_outputs
from trainer.optim import build_scheduler
from trainer.protocol import Sample
from trainer.runfolder import RunFolder, step_dirname
from trainer.runlog import EventSink

EVAL_TIMESTEP_FRACTIONS = (0.1, 0.3, 0.6, 0.9)  # spread over the schedule: easy to hard
EVAL_IMAGES = 4


class DiffusionJob(TrainingJob):
    def __init__(self, config: Config, run: RunFolder, sink: EventSink, logger: logging.Logger) -> None:
        super().__init__(config, run, sink, logger)
        self.device = pick_device()
        self.precision = pick_precision(config.model.precision, self.device)
        full_dreambooth = config.mode == "dreambooth" and config.dreambooth.train_full_unet
        self.uses_lora = config.mode in ("lora", "dreambooth") and not full_dreambooth
        self.trains_text = self.uses_lora and config.lora.train_text_encoder
        self.prior = config.mode == "dreambooth" and config.dreambooth.prior_preservation

    # ------------------------------------------------------------------ setup

    def setup(self) -> None:
        from accelerate import Accelerator

        cfg = self.config
        if self.device == "cuda":  # TF32 matmuls: free speed on Ampere and newer, no visible quality change
            torch.backends.cuda.matmul.allow_tf32 = True
            torch.backends.cudnn.allow_tf32 = True
        torch.manual_seed(cfg.training.seed)
        self.parts: Components = load_components(cfg, self.log)
        if self.prior:
            from trainer.diffusion.class_images import ensure_class_images

            ensure_class_images(cfg, self.parts, self.device, self.log)
        self.accelerator = Accelerator(mixed_precision=self.precision, cpu=self.device == "cpu",
                                       gradient_accumulation_steps=cfg.training.gradient_accumulation_steps)
        self._prepare_trainable()
        self._prepare_data()
        parameters = [p for m in self._trained_modules() for p in m.parameters() if p.requires_grad]
        self.optimizer = self._make_optimizer(parameters)
        self.lr_scheduler = build_scheduler(self.optimizer, cfg.training)
        self.parts.unet, self.optimizer = self.accelerator.prepare(self.parts.unet, self.optimizer)
        self.noise_generator = torch.Generator().manual_seed(cfg.training.seed + 1)
        self._eval_set = self._make_eval_set()

    def _trained_modules(self) -> list[torch.nn.Module]:
        return [self.parts.unet] + (self.parts.text_encoders if self.trains_text else [])

    def _prepare_trainable(self) -> None:
        cfg, parts = self.config, self.parts
        frozen_dtype = weight_dtype(self.precision)
        for module in [parts.vae, parts.unet, *parts.text_encoders]:
            module.requires_grad_(False)
        # The VAE stays in fp32: SDXL's VAE overflows in fp16, and it is not what we train.
        parts.vae.to(self.device, torch.float32)
        if self.uses_lora:
            from peft import LoraConfig

            parts.unet.to(self.device, frozen_dtype)
            parts.unet.add_adapter(LoraConfig(r=cfg.lora.rank, lora_alpha=cfg.lora.alpha,
                                              lora_dropout=cfg.lora.dropout, init_lora_weights="gaussian",
                                              target_modules=list(cfg.lora.target_modules)))
            for encoder in parts.text_encoders:
                encoder.to(self.device, frozen_dtype)
                if self.trains_text:
                    encoder.add_adapter(LoraConfig(r=cfg.lora.rank, lora_alpha=cfg.lora.alpha,
                                                   lora_dropout=cfg.lora.dropout, init_lora_weights="gaussian",
                                                   target_modules=["q_proj", "k_proj", "v_proj", "out_proj"]))
        else:
            # Full or frozen-layer training: the trained weights need fp32 master copies, so the
            # whole UNet stays fp32 and autocast does the mixed precision.
            parts.unet.to(self.device, torch.float32)
            if cfg.mode == "frozen":
                count = apply_trainable_patterns(parts.unet, list(cfg.frozen.trainable))
                self.log.info("Training %d UNet parameters in %s", count, ", ".join(cfg.frozen.trainable))
            else:
                parts.unet.requires_grad_(True)
            for encoder in parts.text_encoders:
                encoder.to(self.device, frozen_dtype)
        for module in self._trained_modules():  # LoRA weights (and any trained weight) in fp32
            for parameter in module.parameters():
                if parameter.requires_grad:
                    parameter.data = parameter.data.float()
        if cfg.training.gradient_checkpointing:
            parts.unet.enable_gradient_checkpointing()
            if self.trains_text:
                for encoder in parts.text_encoders:
                    encoder.gradient_checkpointing_enable()

    def _make_optimizer(self, parameters: list[torch.nn.Parameter]) -> torch.optim.Optimizer:
        training = self.config.training
        if training.optimizer == "adamw8bit":
            if self.device != "cuda":
                raise InputError("training.optimizer: adamw8bit needs a CUDA GPU; use adamw on this machine")
            try:
                import bitsandbytes as bnb
            except ImportError:
                raise InputError("training.optimizer: adamw8bit needs the bitsandbytes package "
                                 "(pip install bitsandbytes), or choose adamw") from None
            return bnb.optim.AdamW8bit(parameters, lr=training.learning_rate, weight_decay=training.weight_decay)
        return torch.optim.AdamW(parameters, lr=training.learning_rate, weight_decay=training.weight_decay)

    # ------------------------------------------------------------------ data

    def _prepare_data(self) -> None:
        cfg = self.config
        d = cfg.dataset
        buckets = ds.training_buckets(d.resolution, d.min_bucket_side, d.max_bucket_side, d.bucketing)
        fixed = cfg.dreambooth.instance_prompt if cfg.mode == "dreambooth" else None
        self.examples = ds.collect_examples(d.path, "dataset.path", ds.caption_maker(d.caption_template,
                                            d.instance_token, fixed), buckets, d.no_upscale, d.caption_extension,
                                            self.log)
        if not self.examples:
            raise InputError(f"dataset.path: {d.path} holds no usable image")
        self.batches = ds.BucketBatches(self.examples, cfg.training.batch_size, d.repeats, cfg.training.seed)
        self.class_examples: list[ds.Example] = []
        if self.prior:
            self.class_examples = ds.collect_examples(
                cfg.dreambooth.class_dir, "dreambooth.class_dir", lambda _: cfg.dreambooth.class_prompt, buckets,
                d.no_upscale, d.caption_extension, self.log)[: cfg.dreambooth.num_class_images]
            self.class_batches = ds.BucketBatches(self.class_examples, cfg.training.batch_size, 1,
                                                  cfg.training.seed + 2)
        self.pixel_generator = torch.Generator().manual_seed(cfg.training.seed + 3)
        cache_ok = d.crop == "center" and not d.flip
        self.cache_latents = d.cache_latents in ("memory", "disk") or (d.cache_latents == "auto" and cache_ok)
        self.latents_on_disk = d.cache_latents == "disk"  # frees memory for big datasets; survives resume
        if self.cache_latents and not cache_ok:
            self.log.warning("dataset.cache_latents is on with random crop or flip: every epoch sees the same crop")
        self.cache_text = d.cache_text == "on" or (d.cache_text == "auto" and not self.trains_text)
        if self.cache_text and self.trains_text:
            raise InputError("dataset.cache_text: cannot cache captions while the text encoder is trained")
        self._latents: dict[tuple[bool, int], tuple[torch.Tensor, tuple[int, int]]] = {}
        self._texts: dict[str, TextConditioning] = {}
        self.log.info("%d training images in %d bucket(s)%s; latent cache %s, caption cache %s", len(self.examples),
                      len({e.bucket for e in self.examples}),
                      f", {len(self.class_examples)} class images" if self.prior else "",
                      "on disk" if self.latents_on_disk else "in memory" if self.cache_latents else "off",
                      "on" if self.cache_text else "off")

    @torch.no_grad()
    def _encode_image(self, example: ds.Example) -> tuple[torch.Tensor, tuple[int, int]]:
        pixels, crop = ds.load_pixels(example, self.config.dataset.crop, self.config.dataset.flip,
                                      self.pixel_generator)
        moments = self.parts.vae.encode(pixels[None].to(self.device, torch.float32)).latent_dist
        # The distribution's mean: deterministic, so cached and uncached runs see the same latents.
        return moments.mean[0] * self.parts.vae_scale, crop

    def _latents_for(self, examples: list[ds.Example], is_class: bool, indices: list[int]):
        out, crops = [], []
        for index in indices:
            key = (is_class, index)
            if key in self._latents:
                latent, crop = self._latents[key]
            elif self.latents_on_disk and (cached := self._disk_latent(examples[index])) is not None:
                latent, crop = cached
            else:
                latent, crop = self._encode_image(examples[index])
                if self.latents_on_disk:
                    self._store_disk_latent(examples[index], latent, crop)
                elif self.cache_latents:
                    self._latents[key] = (latent.cpu(), crop)
            out.append(latent.to(self.device))
            crops.append(crop)
        return torch.stack(out), crops

    def _disk_latent_path(self, example: ds.Example) -> Path:
        """One file per (image file version, bucket): an edited or replaced image gets a new entry."""
        import hashlib

        stat = example.image.stat()
        key = f"{example.image.resolve()}|{stat.st_size}|{stat.st_mtime_ns}|{example.bucket}"
        return self.run.root / "cache" / "latents" / f"{hashlib.sha1(key.encode()).hexdigest()}.safetensors"

    def _disk_latent(self, example: ds.Example) -> tuple[torch.Tensor, tuple[int, int]] | None:
        from safetensors.torch import load_file

        path = self._disk_latent_path(example)
        if not path.is_file():
            return None
        tensors = load_file(path)
        return tensors["latent"], (int(tensors["crop"][0]), int(tensors["crop"][1]))

    def _store_disk_latent(self, example: ds.Example, latent: torch.Tensor, crop: tuple[int, int]) -> None:
        from safetensors.torch import save_file

        path = self._disk_latent_path(example)
        path.parent.mkdir(parents=True, exist_ok=True)
        staging = path.with_name(f".{path.name}.tmp")
        save_file({"latent": latent.detach().cpu().contiguous(), "crop": torch.tensor(crop)}, staging)
        staging.replace(path)

    def _text_for(self, captions: list[str]) -> TextConditioning:
        parts = self.parts
        if not self.cache_text:
            return encode_prompts(parts.architecture, parts.tokenizers, parts.text_encoders, captions, self.device)
        missing = [c for c in dict.fromkeys(captions) if c not in self._texts]
        if missing:
            with torch.no_grad():
                encoded = encode_prompts(parts.architecture, parts.tokenizers, parts.text_encoders, missing,
                                         self.device)
            for i, caption in enumerate(missing):
                self._texts[caption] = encoded.select(slice(i, i + 1)).to("cpu")
        return TextConditioning.cat([self._texts[c] for c in captions]).to(self.device)

    # ------------------------------------------------------------------ training

    def _batch_loss(self, examples: list[ds.Example], is_class: bool, indices: list[int]) -> torch.Tensor:
        latents, crops = self._latents_for(examples, is_class, indices)
        return self._loss(latents, crops, [examples[i] for i in indices])

    def _loss(self, latents: torch.Tensor, crops: list[tuple[int, int]], batch: list[ds.Example],
              noise_and_t: tuple[torch.Tensor, torch.Tensor] | None = None, weighted: bool = True) -> torch.Tensor:
        text = self._text_for([example.caption for example in batch])
        noise, timesteps = noise_and_t or draw_noise(latents, self.noise_generator, self.config.training.noise_offset,
                                                     self.parts.noise_scheduler.config.num_train_timesteps)
        dtype = weight_dtype(self.precision)
        time_ids = None
        if self.parts.architecture == "sdxl":
            time_ids = torch.cat([sdxl_time_ids(e.size, crop, e.bucket, 1, self.device, dtype)
                                  for e, crop in zip(batch, crops, strict=True)])
        with self.accelerator.autocast():
            return denoising_loss(self.parts.unet, self.parts.noise_scheduler, latents.to(dtype), noise.to(dtype),
                                  timesteps, text.to(self.device, dtype), time_ids,
                                  self.config.training.min_snr_gamma if weighted else 0.0)

    def train_step(self, step: int) -> StepResult:
        cfg = self.config
        for module in self._trained_modules():
            module.train()
        total = 0.0
        for _ in range(cfg.training.gradient_accumulation_steps):
            with self.accelerator.accumulate(self.parts.unet):
                loss = self._batch_loss(self.examples, False, self.batches.next())
                if self.prior and self.class_examples:
                    loss = loss + cfg.dreambooth.prior_loss_weight * self._batch_loss(
                        self.class_examples, True, self.class_batches.next())
                self.accelerator.backward(loss)
                if self.accelerator.sync_gradients:
                    if cfg.training.max_grad_norm:
                        params = [p for m in self._trained_modules() for p in m.parameters() if p.requires_grad]
                        self.accelerator.clip_grad_norm_(params, cfg.training.max_grad_norm)
                    self.optimizer.step()
                    self.lr_scheduler.step()
                    self.optimizer.zero_grad(set_to_none=True)
            total += float(loss.detach())
        return StepResult(loss=total / cfg.training.gradient_accumulation_steps)

    def current_lr(self) -> float:
        return float(self.lr_scheduler.get_last_lr()[0])

    @torch.no_grad()
    def _make_eval_set(self) -> list[tuple[torch.Tensor, tuple[int, int], ds.Example, torch.Tensor, torch.Tensor]]:
        """Fixed (latents, crop, example, noise, timesteps): the same every evaluation, so the curve is smooth.

        Built from its own generators (center crop, no flip), so evaluating never shifts the
        training RNGs — a resumed run stays identical to an uninterrupted one.
        """
        generator = torch.Generator().manual_seed(12345)
        steps = self.parts.noise_scheduler.config.num_train_timesteps
        timesteps = torch.tensor([int(f * (steps - 1)) for f in EVAL_TIMESTEP_FRACTIONS])
        triples = []
        for example in self.examples[:EVAL_IMAGES]:
            pixels, crop = ds.load_pixels(example, "center", False, torch.Generator().manual_seed(0))
            latent = self.parts.vae.encode(pixels[None].to(self.device)).latent_dist.mean * self.parts.vae_scale
            noise = torch.randn((len(timesteps), *latent.shape[1:]), generator=generator)
            triples.append((latent.cpu(), crop, example, noise, timesteps))
        return triples

    @torch.no_grad()
    def evaluate(self) -> float:
        """Unweighted loss on the fixed evaluation set (shown as the held-out curve)."""
        for module in self._trained_modules():
            module.eval()
        losses = []
        for latent, crop, example, noise, timesteps in self._eval_set:
            count = len(timesteps)
            latents = latent.to(self.device).repeat(count, 1, 1, 1)
            losses.append(float(self._loss(latents, [crop] * count, [example] * count,
                                           (noise.to(self.device), timesteps.to(self.device)), weighted=False)))
        return sum(losses) / len(losses)

    # ------------------------------------------------------------------ previews

    def preview_at_start(self) -> bool:
        return self.config.sampling.at_start

    def sample_prompts(self) -> list[str]:
        cfg = self.config
        if cfg.sampling.prompts:
            return list(cfg.sampling.prompts)
        if cfg.mode == "dreambooth":
            return [cfg.dreambooth.instance_prompt]
        return [self.examples[0].caption]

    def preview(self, step: int) -> None:
        cfg = self.config
        if not self.accelerator.is_main_process:
            return
        pipe = build_pipeline(self.parts, self.accelerator.unwrap_model(self.parts.unet))
        width = cfg.sampling.width or cfg.dataset.resolution
        height = cfg.sampling.height or cfg.dataset.resolution
        for module in self._trained_modules():
            module.eval()
        paths, prompts, seeds = draw(pipe, self.sample_prompts(), list(cfg.sampling.seeds), width, height,
                                     cfg.sampling.inference_steps, cfg.sampling.guidance_scale,
                                     self.run.samples_dir / step_dirname(step))
        self.sink.emit(Sample(step, tuple(paths), tuple(prompts), tuple(seeds)))

    # ------------------------------------------------------------------ state

    def _named_trainables(self) -> dict[str, torch.nn.Parameter]:
        named = {f"unet.{n}": p for n, p in self.accelerator.unwrap_model(self.parts.unet).named_parameters()
                 if p.requires_grad}
        if self.trains_text:
            for i, encoder in enumerate(self.parts.text_encoders):
                named.update({f"text_encoder_{i}.{n}": p for n, p in encoder.named_parameters() if p.requires_grad})
        return named

    def checkpoint_weights(self) -> dict[str, torch.Tensor]:
        return {name: p.detach().clone() for name, p in self._named_trainables().items()}

    def training_state(self) -> dict[str, Any]:
        state = {"optimizer": self.optimizer.state_dict(), "scheduler": self.lr_scheduler.state_dict(),
                 "torch_rng": torch.get_rng_state(), "noise_rng": self.noise_generator.get_state(),
                 "pixel_rng": self.pixel_generator.get_state(), "batches": self.batches.state()}
        if self.prior and self.class_examples:
            state["class_batches"] = self.class_batches.state()
        if self.accelerator.scaler is not None:
            state["grad_scaler"] = self.accelerator.scaler.state_dict()
        return state

    def load_state(self, weights: dict[str, torch.Tensor], training_state: dict[str, Any]) -> None:
        named = self._named_trainables()
        if set(named) != set(weights):
            raise InputError("checkpoint does not match this run's trainable weights (was the config changed?)")
        with torch.no_grad():
            for name, parameter in named.items():
                parameter.copy_(weights[name])
        self.optimizer.load_state_dict(training_state["optimizer"])
        self.lr_scheduler.load_state_dict(training_state["scheduler"])
        torch.set_rng_state(training_state["torch_rng"])
        self.noise_generator.set_state(training_state["noise_rng"])
        self.pixel_generator.set_state(training_state["pixel_rng"])
        self.batches.load(training_state["batches"])
        if "class_batches" in training_state:
            self.class_batches.load(training_state["class_batches"])
        if "grad_scaler" in training_state and self.accelerator.scaler is not None:
            self.accelerator.scaler.load_state_dict(training_state["grad_scaler"])

    def export(self, output_dir: Path) -> list[Path]:
        if not self.accelerator.is_main_process:
            return []
        return export_outputs(self, output_dir)

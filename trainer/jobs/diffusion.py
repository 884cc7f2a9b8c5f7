"""Stable Diffusion training: LoRA, DreamBooth (LoRA or full UNet, with prior preservation) and
frozen-layer fine-tuning, for SD 1.x, 2.x and SDXL.

Call order follows the diffusers examples: load → freeze everything → add adapters (or unfreeze
chosen blocks) → trained parameters in fp32 → Accelerator.prepare → per step: accumulate →
backward → on sync: clip, optimizer step, LR step.
"""

from __future__ import annotations

import io
import logging
from pathlib import Path
from typing import Any, NamedTuple

import torch

from trainer import distributed
from trainer.concepts import concepts_of
from trainer.config import Config
from trainer.dataset.masks import mask_path_for
from trainer.diffusion import data as ds
from trainer.diffusion.components import Components, load_components, pick_device, pick_precision, weight_dtype
from trainer.diffusion.engines import CONTROL_LATENTS, Engine, engine_for
from trainer.diffusion.loss import NoiseOptions
from trainer.diffusion.loss_weights import LOSS_WEIGHT, floored, latent_weights
from trainer.diffusion.new_word import NewWord
from trainer.diffusion.sampling import build_pipeline, draw, encode_sample_prompts
from trainer.diffusion.text import TextConditioning
from trainer.errors import InputError
from trainer.families import family
from trainer.freezing import apply_trainable_patterns
from trainer.fsutil import atomic_write_bytes
from trainer.jobs.base import StepResult, TrainingJob
from trainer.jobs.diffusion_outputs import export_outputs
from trainer.optim import averaged_weights, build_optimizer, build_scheduler, ema_weights, make_ema
from trainer.protocol import Sample
from trainer.runfolder import RunFolder, step_dirname
from trainer.runlog import EventSink

EVAL_TIMESTEP_FRACTIONS = (0.1, 0.3, 0.6, 0.9)  # spread over the schedule: easy to hard
EVAL_IMAGES = 4
PREVIEW_PAIRS = 2  # an edit family's previews: the first pairs of the evaluation set, control → now → target


class EncodedImage(NamedTuple):
    """An image as the loss reads it: its latent, the crop's (left, top), the masked loss's weights per latent cell
    (None without a mask), and an edit family's control latents (one per reference; empty for an image alone)."""

    latent: torch.Tensor
    crop: tuple[int, int]
    weight: torch.Tensor | None
    controls: tuple[torch.Tensor, ...] = ()

    def cpu(self) -> EncodedImage:
        return self.on_host()

    def on_host(self, pinned: bool = False) -> EncodedImage:
        """In the computer's memory; with ``pinned`` (training on CUDA) page-locked, so that each step's copy to the
        GPU is asynchronous (``non_blocking``) instead of staged through pageable memory.  Cached tensors are never
        written again, so no copy can see a half-changed one."""
        def host(tensor: torch.Tensor) -> torch.Tensor:
            return tensor.cpu().pin_memory() if pinned else tensor.cpu()

        return EncodedImage(host(self.latent), self.crop, None if self.weight is None else self.weight.cpu(),
                            tuple(host(control) for control in self.controls))


class DiffusionJob(TrainingJob):
    supports_distributed = True

    def __init__(self, config: Config, run: RunFolder, sink: EventSink, logger: logging.Logger) -> None:
        super().__init__(config, run, sink, logger)
        self.device_type = pick_device()  # "cuda" or "cpu"; self.device becomes e.g. "cuda:1" under a launcher
        self.device = self.device_type
        self.precision = pick_precision(config.model.precision, self.device_type)
        self.dist = distributed.current()
        self.uses_lora = config.trains_adapter()
        self.trains_text = self.uses_lora and config.lora.train_text_encoder  # LoRA on the text encoders
        self.word: NewWord | None = None  # textual inversion's new word (embedding mode, or beside a LoRA)
        # Gradients flow through the text encoders (their LoRA, or a new word's vectors): no cached captions.
        self.text_in_graph = config.trains_text()
        self.prior = config.mode == "dreambooth" and config.dreambooth.prior_preservation

    # ------------------------------------------------------------------ setup

    def setup(self) -> None:
        from accelerate import Accelerator

        cfg = self.config
        if self.device_type == "cuda":  # TF32 matmuls: free speed on Ampere and newer, no visible quality change
            torch.backends.cuda.matmul.allow_tf32 = True
            torch.backends.cudnn.allow_tf32 = True
        self.accelerator = Accelerator(mixed_precision=self.precision, cpu=self.device_type == "cpu",
                                       gradient_accumulation_steps=cfg.training.gradient_accumulation_steps)
        self.device = str(self.accelerator.device)  # this process's GPU under a launcher
        torch.manual_seed(cfg.training.seed)
        self.report_activity("loading the base model")
        self.parts: Components = load_components(cfg, self.log)
        self.engine: Engine = engine_for(self.parts)
        if family(cfg.model.architecture).flow is not None and cfg.training.min_snr_gamma:
            self.log.warning("training.min_snr_gamma weights DDPM timesteps; %s trains by flow matching, so it is "
                             "not used", family(cfg.model.architecture).display_name)
        if cfg.training.zero_terminal_snr and (cfg.training.min_snr_gamma or cfg.training.debiased_estimation):
            self.log.warning("training.zero_terminal_snr: min-SNR and debiased estimation weigh a timestep by its SNR, "
                             "which is 0 at the last (pure-noise) one: that step, which zero terminal SNR adds, is "
                             "weighted 0 and the ones near it little")
        if self.prior:
            from trainer.diffusion.class_images import ensure_class_images

            if self.dist.is_main:  # one writer; the others wait, then read the same folder
                for concept in concepts_of(cfg):
                    if concept.has_class_set(cfg):
                        ensure_class_images(cfg, self.parts, self.device, self.log, concept=concept.index,
                                            on_image=lambda done, total: self.report_activity(
                                                "generating class images", done, total))
            self.dist.barrier()
        self.report_activity("preparing the adapters and the data")
        self._prepare_data()
        if cfg.trains_token():
            self._check_word_in_captions()
        self._quantize_text_encoders()
        self.text_device = self.device
        self._sample_text: dict[str, dict[str, torch.Tensor]] | None = None
        if self._text_encoders_leave_gpu():
            self._encode_text_up_front()
            self.text_device = "cpu"
        self._prepare_trainable()
        self._cache_latents_up_front()
        # Listed once: walking every UNet parameter for gradient clipping cost milliseconds a step.
        self.trained_parameters = [p for m in self._trained_modules() for p in m.parameters() if p.requires_grad]
        self.optimizer = build_optimizer(self._parameter_groups(self.trained_parameters), cfg.training,
                                         self.device_type)
        self._optimizer_hints()
        self.ema = make_ema(self.trained_parameters, cfg.training, self.log)
        self.lr_scheduler = build_scheduler(self.optimizer, cfg.training)
        # prepare() wraps the trained modules for gradient averaging when several processes train;
        # self.parts keeps the plain modules (saving, sampling, evaluation), these are for training.
        if any(p.requires_grad for p in self.parts.unet.parameters()):
            self.trained_unet, self.optimizer = self.accelerator.prepare(self.parts.unet, self.optimizer)
        else:  # textual inversion trains nothing in the UNet: it is not wrapped for gradient averaging
            self.trained_unet, self.optimizer = self.parts.unet, self.accelerator.prepare(self.optimizer)
        encoders = self.parts.text_encoders
        self.trained_text_encoders = ([e if e is None else self.accelerator.prepare(e) for e in encoders]
                                      if self.text_in_graph else list(encoders))
        self._swap_blocks()  # after prepare(), which would move every weight to the GPU
        if cfg.training.torch_compile:
            # Only the training forward: evaluation and previews call the plain module (other shapes, no grad),
            # so they never wait for a compilation of their own.
            self.trained_unet = torch.compile(self.trained_unet)
        self.noise_generator = torch.Generator().manual_seed(cfg.training.seed + 1)
        self.report_activity("encoding the evaluation images")
        self._eval_set = self._make_eval_set()

    def _check_word_in_captions(self) -> None:
        """A new word learns only from the captions that write it: none is refused, some are reported."""
        token = self.config.embedding.token
        without = [e for e in self.examples if token not in e.caption]
        if len(without) == len(self.examples):
            raise InputError(f"embedding.token: no caption writes {token}, so it would learn nothing; put it in the "
                             f"captions or in dataset.caption_template (e.g. 'a photo of {token}') with "
                             f"dataset.instance_token = {token}")
        if without:
            self.log.warning("embedding.token: %d of %d captions do not write %s; those images train the rest only",
                             len(without), len(self.examples), token)

    def _optimizer_hints(self) -> None:
        training = self.config.training
        if training.optimizer == "prodigy" and training.learning_rate < 0.1:
            self.log.warning("training.optimizer: Prodigy finds its own step size and multiplies it by "
                             "training.learning_rate (%g): its authors advise 1.0", training.learning_rate)
        if training.optimizer == "adamw_schedulefree" and training.scheduler not in ("constant",
                                                                                    "constant_with_warmup"):
            self.log.warning("training.scheduler: schedule-free AdamW needs no schedule; %s is not used (its "
                             "warm-up of %d steps is)", training.scheduler, training.warmup_steps)

    def _swap_blocks(self) -> None:
        count = self.config.model.blocks_to_swap
        if not count:
            return
        from trainer.models.offload import BlockSwapper, swappable_blocks

        blocks = swappable_blocks(self.parts.unet, family(self.config.model.architecture).blocks)
        if count > len(blocks):
            self.log.warning("model.blocks_to_swap: the model has %d blocks; swapping all of them", len(blocks))
        self.swapper = BlockSwapper(blocks, count, self.device)
        self.log.info("Block swap: %d of %d blocks (%.1f M frozen weights) wait in the computer's memory and come "
                      "to the GPU while they run", len(self.swapper.blocks), len(blocks),
                      self.swapper.swapped_parameters / 1e6)

    def _text_encoders_leave_gpu(self) -> bool:
        """model.text_encoder_device: off the GPU once every caption is encoded (auto: on CUDA, when captions
        are cached and no text encoder is trained — they would only wait there)."""
        from trainer.memory_estimate import text_encoders_leave_gpu

        return text_encoders_leave_gpu(self.config, self.device_type)

    @torch.no_grad()
    def _encode_text_up_front(self) -> None:
        """Every caption (and the sample prompts) encoded before step 1, with the text encoders alone on the
        GPU (the denoiser is not there yet), then the encoders go to the computer's memory.  Each caption is
        encoded alone, so the result does not depend on which captions share a batch."""
        parts, dtype = self.parts, weight_dtype(self.precision)
        for encoder in self._encoders():
            encoder.to(self.device, dtype)
        # (caption, its pair): a pair only where the text encoder reads the controls (``Family.text_reads_controls``).
        captions = list({self._text_key(e.caption, e): (e.caption, e if self.text_by_pair else None)
                         for e in [*self.examples, *self.class_examples]}.values())
        if self.variation.caption_dropout > 0:
            captions += [("", e) for e in self.examples] if self.text_by_pair else [("", None)]  # a dropped caption
        for done, (caption, pair) in enumerate(captions):
            self.report_activity("encoding captions", done, len(captions))
            key = self._text_key(caption, pair)
            if self.text_on_disk:
                self._disk_text(caption, pair)
            elif key not in self._texts:
                self._texts[key] = self._encode_text(parts.text_encoders, [caption], [pair]).to("cpu")
        self.report_activity("encoding captions", len(captions), len(captions))
        if self.dist.is_main:
            pipe = build_pipeline(parts, parts.unet)
            if self.text_by_pair:  # each preview pair's instruction with its control, as the pipeline encodes it
                self._sample_text = {}
                for example in self._preview_pairs():
                    self._sample_text[self._text_key(example.caption, example)] = encode_sample_prompts(
                        pipe, self.config.model.architecture, [example.caption], self.config.sampling.guidance_scale,
                        self.device, self.config.sampling.negative_prompt,
                        image=self.engine.condition_images(pipe, self._control_pictures(example)))[example.caption]
            else:
                self._sample_text = encode_sample_prompts(pipe, self.config.model.architecture,
                                                          self.sample_prompts(), self.config.sampling.guidance_scale,
                                                          self.device, self.config.sampling.negative_prompt)
        for encoder in self._encoders():
            encoder.to("cpu")
        if self.device_type == "cuda":
            torch.cuda.empty_cache()
        self.log.info("Encoded %d caption(s) and the sample prompts; the text encoders wait in the computer's "
                      "memory, off the GPU", len(captions))

    def _quantize_text_encoders(self) -> None:
        """model.text_encoder_quantization: each encoder's block Linears quantized on their way to the device, before
        anything is encoded (the config refuses it for a trained encoder, and for families that declare no blocks)."""
        kind = self.config.model.text_encoder_quantization
        if kind == "none":
            return
        from trainer.models.quantize import quantize_denoiser

        specs = family(self.config.model.architecture).text_encoders
        for spec, encoder in zip(specs, self.parts.text_encoders, strict=False):
            if encoder is not None and spec.blocks:
                quantize_denoiser(encoder, spec.blocks, kind, self.device, weight_dtype(self.precision), self.log,
                                  what=spec.label)

    def _encoders(self) -> list[torch.nn.Module]:
        """The text encoders the model has (SD 3.5 may run without T5: its place in the list is None)."""
        return [encoder for encoder in self.parts.text_encoders if encoder is not None]

    def _trained_modules(self) -> list[torch.nn.Module]:
        return [self.parts.unet] + (self._encoders() if self.text_in_graph else [])

    def _parameter_groups(self, parameters: list[torch.nn.Parameter]) -> list[dict[str, Any]]:
        """The trained parameters for the optimizer: the new word's vectors in a group of their own when they
        have their own learning rate (embedding.learning_rate)."""
        rate = self.config.embedding.learning_rate
        if self.word is None or not rate:
            return [{"params": parameters}]
        vectors = {id(p) for p in self.word.parameters()}
        rest = [p for p in parameters if id(p) not in vectors]
        return [group for group in ({"params": rest}, {"params": self.word.parameters(), "lr": rate})
                if group["params"]]

    def _prepare_trainable(self) -> None:
        cfg, parts = self.config, self.parts
        frozen_dtype = weight_dtype(self.precision)
        for module in [parts.vae, parts.unet, *self._encoders(), *parts.frozen.values()]:
            module.requires_grad_(False)
        # The VAE stays in fp32: SDXL's VAE overflows in fp16, and it is not what we train.
        parts.vae.to(self.device, torch.float32)
        # A second denoiser that only samples (Ideogram 4's unconditional transformer): stored as the base's frozen
        # weights are (quantized too, where the base is), whatever the trained denoiser's mode.
        from trainer.models.quantize import quantize_denoiser

        blocks = family(cfg.model.architecture).blocks
        for name, module in parts.frozen.items():
            quantize_denoiser(module, blocks, cfg.model.base_quantization, self.device, frozen_dtype, self.log,
                              what=name.replace("_", " ").capitalize())
        if self.uses_lora or cfg.mode == "embedding":  # the base stays frozen: it may be quantized
            quantize_denoiser(parts.unet, blocks, cfg.model.base_quantization, self.device, frozen_dtype, self.log)
            for module in self._encoders():
                module.to(self.text_device, frozen_dtype)
            if self.uses_lora:
                from trainer.lora_formats import add_lora_adapters

                add_lora_adapters(parts.unet, parts.text_encoders, cfg.lora, self.trains_text)
        else:
            # Full or frozen-layer training: the trained weights need fp32 master copies, so the
            # whole UNet stays fp32 and autocast does the mixed precision.
            parts.unet.to(self.device, torch.float32)
            if cfg.mode == "frozen":
                count = apply_trainable_patterns(parts.unet, list(cfg.frozen.trainable))
                self.log.info("Training %d UNet parameters in %s", count, ", ".join(cfg.frozen.trainable))
            else:
                parts.unet.requires_grad_(True)
            for encoder in self._encoders():
                encoder.to(self.text_device, frozen_dtype)
        if cfg.trains_token():
            from trainer.diffusion.new_word import add_new_word

            emb = cfg.embedding
            self.word = add_new_word(parts.tokenizers, self._encoders(), emb.token, emb.init_text, emb.vectors,
                                     [e.label for e in family(cfg.model.architecture).text_encoders])
            self.log.info("Training the new word %s: %d vector(s) in each text encoder, starting from %r",
                          emb.token, emb.vectors, emb.init_text)
        for module in self._trained_modules():  # LoRA weights (and any trained weight) in fp32
            for parameter in module.parameters():
                if parameter.requires_grad:
                    parameter.data = parameter.data.float()
        if cfg.training.gradient_checkpointing:
            parts.unet.enable_gradient_checkpointing()
            if self.trains_text:
                for encoder in self._encoders():
                    encoder.gradient_checkpointing_enable()

    # ------------------------------------------------------------------ data

    def _prepare_data(self) -> None:
        """The union of every concept's images, each with its concept's captions, repeats and resolution.

        Examples are listed concept by concept (the first concept first), so a config with one
        concept trains exactly as before.  Class images of every concept with a class set share one
        list too; each concept draws from its own slice of it (``class_streams``), so a concept's
        instance images are regularised by its own class.
        """
        cfg = self.config
        d = cfg.dataset
        global_batch = cfg.training.batch_size * self.dist.world_size  # every process draws the same global batches
        self.concepts = concepts_of(cfg)
        self.examples: list[ds.Example] = []
        repeats: list[int] = []
        self.class_examples: list[ds.Example] = []
        self.class_streams: dict[int, tuple[int, ds.BucketBatches]] = {}  # concept → (offset, its batches)
        for concept in self.concepts:
            buckets = ds.training_buckets(concept.resolution, d.min_bucket_side, d.max_bucket_side, d.bucketing)
            # The first concept keeps DreamBooth's instance prompt for images without a caption; a further
            # concept's own instance prompt is its filled caption template.
            fixed = cfg.dreambooth.instance_prompt if cfg.mode == "dreambooth" and concept.index == 0 else None
            found = ds.collect_examples(concept.path, concept.field("path"), ds.caption_maker(
                concept.caption_template, concept.instance_token, fixed), buckets, d.no_upscale,
                d.caption_extension, self.log, concept.index, masks=d.masked_loss,
                controls=family(cfg.model.architecture).control_images,
                family_name=family(cfg.model.architecture).display_name)
            if not found:
                raise InputError(f"{concept.field('path')}: {concept.path} holds no usable image")
            self.examples += found
            repeats += [concept.repeats] * len(found)
            if self.prior and concept.has_class_set(cfg):
                classes = ds.collect_examples(
                    concept.class_dir, concept.field("class_dir"), lambda _, prompt=concept.class_prompt: prompt,
                    buckets, d.no_upscale, d.caption_extension, self.log, concept.index)[: concept.num_class_images]
                if classes:
                    # Seeds: the first concept's stream is the one a single-concept run always had.
                    stream = ds.BucketBatches(classes, global_batch, 1, cfg.training.seed + 2 + 7919 * concept.index)
                    self.class_streams[concept.index] = (len(self.class_examples), stream)
                    self.class_examples += classes
        fewest, most = (min(self.examples, key=lambda e: len(e.controls)),
                        max(self.examples, key=lambda e: len(e.controls)))
        if global_batch > 1 and len(fewest.controls) != len(most.controls):  # a batch stacks each reference
            raise InputError(f"dataset.path: {fewest.image} has {len(fewest.controls)} control image(s) and "
                             f"{most.image} {len(most.controls)}; pairs with different numbers of references cannot "
                             "share a batch: give every target the same number, or set training.batch_size = 1")
        self.batches = ds.BucketBatches(self.examples, global_batch, repeats, cfg.training.seed)
        self.pixel_draws = 0  # images drawn so far (all processes): seeds each image's random crop and flip
        cache_ok = d.crop == "center" and not d.flip
        self.cache_latents = d.cache_latents in ("memory", "disk") or (d.cache_latents == "auto" and cache_ok)
        self.latents_on_disk = d.cache_latents == "disk"  # frees memory for big datasets; survives resume
        if self.cache_latents and not cache_ok:
            self.log.warning("dataset.cache_latents is on with random crop or flip: every epoch sees the same crop")
        self.variation = cfg.caption_variation()
        self.cache_text = d.cache_text in ("on", "disk") or (
            d.cache_text == "auto" and not self.text_in_graph and not self.variation.varies_text)
        self.text_on_disk = d.cache_text == "disk"  # survives a resume; memory holds none of it
        # The caption cache keys each pair where the text encoder reads its controls (Qwen-Image-Edit's VL encoder).
        self.text_by_pair = family(cfg.model.architecture).text_reads_controls
        if self.cache_text and self.text_in_graph:
            raise InputError("dataset.cache_text: cannot cache captions while the text encoder is trained")
        self._latents: dict[tuple[bool, int], EncodedImage] = {}  # by (class image?, index)
        self._texts: dict[str, TextConditioning] = {}
        self.log.info("%d training images in %d bucket(s)%s; latent cache %s, caption cache %s", len(self.examples),
                      len({e.bucket for e in self.examples}),
                      f", {len(self.class_examples)} class images" if self.prior else "",
                      "on disk" if self.latents_on_disk else "in memory" if self.cache_latents else "off",
                      "on disk" if self.text_on_disk else "on" if self.cache_text else "off")
        self._say_masks()
        if len(self.concepts) > 1:
            for concept in self.concepts:
                count = sum(1 for e in self.examples if e.concept == concept.index)
                classes = sum(1 for e in self.class_examples if e.concept == concept.index)
                self.log.info("Concept '%s': %d image(s) × %d repeat(s) at %d px%s", concept.title, count,
                              concept.repeats, concept.resolution, f", {classes} class image(s)" if classes else "")

    def _say_masks(self) -> None:
        """How many images masked loss weights, or that masks lie unused beside images."""
        d = self.config.dataset
        if d.masked_loss:
            masked = sum(1 for e in self.examples if e.mask is not None)
            log = self.log.info if masked else self.log.warning
            log("Masked loss: %d of %d training images have a mask (the others train everywhere; class images are "
                "never masked); unmasked weight %g", masked, len(self.examples), d.unmasked_weight)
            return
        unused = sum(1 for e in self.examples if mask_path_for(e.image).is_file())
        if unused:
            self.log.info("%d training image(s) have a loss mask (NAME.mask.png) that is not used: dataset.masked_loss "
                          "is off", unused)

    @torch.no_grad()
    def _encode_images(self, examples: list[ds.Example], draws: list[int]) -> list[EncodedImage]:
        """Each ``draws[i]``-th image encoded: latent, crop offset, mask weights, control latents (a pair's controls
        through the same crop and flip as their target, each through the VAE alone too).

        Each image goes through the VAE alone: a batched convolution sums in another order (3e-7 apart on the tiny
        SDXL VAE), and a latent must not depend on which images share its batch — cached, uncached and earlier runs
        (``tests/families/fingerprints.json``) agree bit for bit.  The cache is filled before step 1 instead."""
        out = []
        for example, draw_index in zip(examples, draws, strict=True):
            # The crop/flip of the ``draw``-th image comes from its own seed, not a running stream, so it
            # is the same whichever process loads the image and however many processes there are.
            generator = torch.Generator().manual_seed((self.config.training.seed + 3) * 1_000_003 + draw_index)
            pixels, mask, crop, controls = ds.load_pair(example, self.config.dataset.crop, self.config.dataset.flip,
                                                        generator)
            # The distribution's mean: deterministic, so cached and uncached runs see the same latents.
            latent = self.engine.image_latents(pixels[None].to(self.device, torch.float32))[0]
            weights = None if mask is None else latent_weights(mask[None], tuple(latent.shape[-2:]))[0]
            out.append(EncodedImage(latent, crop, weights, tuple(
                self.engine.image_latents(control[None].to(self.device, torch.float32))[0] for control in controls)))
        return out

    def _cached_latent(self, examples: list[ds.Example], is_class: bool, index: int) -> EncodedImage | None:
        if (is_class, index) in self._latents:
            return self._latents[(is_class, index)]
        return self._disk_latent(examples[index]) if self.latents_on_disk else None

    def _latents_for(self, examples: list[ds.Example], is_class: bool, indices: list[int], first_draw: int):
        """(latents, crop offsets, masked-loss weights or None, control latents) of a batch: weights None when no image
        in it has a mask; one (batch, …) tensor per control reference (a pair lives in its target's bucket)."""
        items = [self._cached_latent(examples, is_class, index) for index in indices]
        caching = self.cache_latents or self.latents_on_disk
        missing: dict[int, int] = {}  # position in the batch → the position whose draw it takes
        for position, (index, item) in enumerate(zip(indices, items, strict=True)):
            if item is None:  # an image twice in a (wrapped) batch is encoded once when it is cached
                missing[position] = indices.index(index) if caching else position
        encode = sorted(set(missing.values()))
        fresh = dict(zip(encode, self._encode_images([examples[indices[p]] for p in encode],
                                                     [first_draw + p for p in encode]), strict=True))
        for position, source in missing.items():
            items[position] = fresh[source]
            if position != source:
                continue
            if self.latents_on_disk:
                self._store_disk_latent(examples[indices[position]], fresh[source])
            elif self.cache_latents:
                self._latents[(is_class, indices[position])] = fresh[source].on_host(pinned=self.device_type == "cuda")
        batch = [item for item in items if item is not None]  # every position is filled by now
        # From the pinned cache the copies overlap with the GPU's work; elsewhere non_blocking changes nothing.
        out = [item.latent.to(self.device, non_blocking=True) for item in batch]
        controls = tuple(torch.stack([item.controls[reference] for item in batch]).to(self.device, non_blocking=True)
                         for reference in range(len(batch[0].controls)))
        return (torch.stack(out), [item.crop for item in batch],
                _batch_weights([item.weight for item in batch], out[0].shape[-2:], self.device), controls)


    @torch.no_grad()
    def _cache_latents_up_front(self) -> None:
        """With the latent cache on and a fixed crop, every image is encoded before step 1, a batch of one bucket
        at a time, with progress: no step waits on the VAE.  A random crop or flip is cached at its first draw, as
        it always was (the draw decides the crop); several processes each encode their own share as they go; a run
        too short to draw every image once encodes only the ones it draws."""
        d, training = self.config.dataset, self.config.training
        draws = training.steps * training.batch_size * training.gradient_accumulation_steps
        if not (self.cache_latents or self.latents_on_disk) or d.crop != "center" or d.flip \
                or self.dist.world_size > 1 or draws < len(self.examples):
            return
        chunks: list[tuple[list[ds.Example], bool, list[int]]] = []
        for examples, is_class in ((self.examples, False), (self.class_examples, True)):
            by_bucket: dict[tuple[int, int], list[int]] = {}
            for index, example in enumerate(examples):
                if not (self.latents_on_disk and self._disk_latent_path(example).is_file()):  # kept from before
                    by_bucket.setdefault(example.bucket, []).append(index)
            size = self.config.training.batch_size
            chunks += [(examples, is_class, indices[i:i + size]) for indices in by_bucket.values()
                       for i in range(0, len(indices), size)]
        total, done = sum(len(indices) for _, _, indices in chunks), 0
        for examples, is_class, indices in chunks:
            self.report_activity("encoding images", done, total)
            self._latents_for(examples, is_class, indices, first_draw=0)  # a fixed crop: the draw does not matter
            done += len(indices)
        if total:
            self.report_activity("encoding images", total, total)
            self.log.info("Encoded %d image(s) before the first step", total)

    def _disk_latent_path(self, example: ds.Example) -> Path:
        """One file per (image file version, user crop, bucket, mask file version, control files' versions): an edited
        or replaced image, a mask painted, changed or deleted, or a pair's control replaced, gets a new entry."""
        import hashlib

        stat = example.image.stat()
        key = f"{example.image.resolve()}|{stat.st_size}|{stat.st_mtime_ns}|{example.bucket}|{example.crop}"
        if example.mask is not None:  # the file holds the mask's weights too
            mask = example.mask.stat()
            key += f"|mask:{example.mask.resolve()}|{mask.st_size}|{mask.st_mtime_ns}"
        for control in example.controls:  # the file holds the controls' latents too
            facts = control.stat()
            key += f"|control:{control.resolve()}|{facts.st_size}|{facts.st_mtime_ns}"
        return self.run.root / "cache" / "latents" / f"{hashlib.sha1(key.encode()).hexdigest()}.safetensors"

    def _disk_latent(self, example: ds.Example) -> EncodedImage | None:
        from safetensors.torch import load_file

        path = self._disk_latent_path(example)
        if not path.is_file():
            return None
        tensors = load_file(path)
        return EncodedImage(tensors["latent"], (int(tensors["crop"][0]), int(tensors["crop"][1])),
                            tensors.get("weight"),
                            tuple(tensors[f"control_{i}"] for i in range(len(example.controls))))

    def _store_disk_latent(self, example: ds.Example, encoded: EncodedImage) -> None:
        from safetensors.torch import save_file

        path = self._disk_latent_path(example)
        path.parent.mkdir(parents=True, exist_ok=True)
        staging = path.with_name(f".{path.name}.tmp")
        tensors = {"latent": encoded.latent.detach().cpu().contiguous(), "crop": torch.tensor(encoded.crop)}
        if encoded.weight is not None:
            tensors["weight"] = encoded.weight.detach().cpu().contiguous()
        for i, control in enumerate(encoded.controls):
            tensors[f"control_{i}"] = control.detach().cpu().contiguous()
        save_file(tensors, staging)
        staging.replace(path)

    def _text_for(self, captions: list[str], training: bool = True,
                  pairs: list[ds.Example] | None = None) -> TextConditioning:
        """The captions' conditioning; ``pairs``: the batch's examples, whose controls the text encoder reads where
        the family's does (``text_by_pair``; the cache then keys each caption with its pair's control files)."""
        parts = self.parts
        if self.word is not None:  # a multi-vector word takes all its tokens, as the pipeline expands it
            captions = [self.word.expand(caption) for caption in captions]
        pairs = pairs if self.text_by_pair and pairs is not None else [None] * len(captions)
        if not self.cache_text:
            # Evaluation runs on the main process only, so it must not use the wrapped (collective) encoders.
            encoders = self.trained_text_encoders if training else parts.text_encoders
            return self._encode_text(encoders, captions, pairs)
        if self.text_on_disk:
            return TextConditioning.cat([self._disk_text(caption, pair)
                                         for caption, pair in zip(captions, pairs, strict=True)]).to(self.device)
        keys = [self._text_key(caption, pair) for caption, pair in zip(captions, pairs, strict=True)]
        missing = {key: (caption, pair) for key, caption, pair in zip(keys, captions, pairs, strict=True)
                   if key not in self._texts}
        if missing:
            with torch.no_grad():
                if self.engine.encode_captions_alone:
                    encoded = TextConditioning.cat([self._encode_text(parts.text_encoders, [caption], [pair])
                                                    for caption, pair in missing.values()])
                else:
                    encoded = self._encode_text(parts.text_encoders, [caption for caption, _ in missing.values()],
                                                [pair for _, pair in missing.values()])
            for i, key in enumerate(missing):
                self._texts[key] = encoded.select(slice(i, i + 1)).to("cpu")
        return TextConditioning.cat([self._texts[key] for key in keys]).to(self.device)

    def _encode_text(self, encoders: list[torch.nn.Module], captions: list[str],
                     pairs: list[ds.Example | None]) -> TextConditioning:
        """The engine's encoding of ``captions``, with each pair's control pictures where the text encoder reads
        them."""
        if not self.text_by_pair:
            return self.engine.encode_prompts(encoders, captions, self.device)
        return self.engine.encode_prompts(encoders, captions, self.device,
                                          controls=[self._control_pictures(pair) for pair in pairs])

    def _control_pictures(self, pair: ds.Example | None) -> list[Any]:
        """The pair's control images as the person gave them (whole, RGB): what an edit pipeline is handed."""
        from trainer.dataset.imaging import load_rgb

        return [] if pair is None else [load_rgb(path) for path in pair.controls]

    def _text_key(self, caption: str, pair: ds.Example | None) -> str:
        """The caption cache's key: the caption, and where the text encoder reads the controls, the versions of its
        pair's control files (a replaced control is encoded again)."""
        if not self.text_by_pair or pair is None:
            return caption
        versions = [f"{path.resolve()}|{path.stat().st_size}|{path.stat().st_mtime_ns}" for path in pair.controls]
        return "|control:".join([caption, *versions])

    def _disk_text(self, caption: str, pair: ds.Example | None = None) -> TextConditioning:
        """A caption's conditioning from ``RUN/cache/text``, encoded (alone) and stored there the first time."""
        import hashlib

        from safetensors.torch import load_file, save

        from trainer.fsutil import atomic_write_bytes

        key = f"{self.config.model.architecture}|{self.config.model.path}|{self._text_key(caption, pair)}"
        path = self.run.root / "cache" / "text" / f"{hashlib.sha1(key.encode()).hexdigest()}.safetensors"
        if path.is_file():
            tensors = load_file(path)
            return TextConditioning(tensors["hidden"], tensors.get("pooled"))
        with torch.no_grad():
            encoded = self._encode_text(self.parts.text_encoders, [caption], [pair]).to("cpu")
        tensors = {"hidden": encoded.hidden.contiguous()}
        if encoded.pooled is not None:
            tensors["pooled"] = encoded.pooled.contiguous()
        atomic_write_bytes(path, save(tensors), durable=False)  # a cache: a unique temp name per writer
        return encoded

    # ------------------------------------------------------------------ training

    def _batch_loss(self, examples: list[ds.Example], is_class: bool, global_indices: list[int]) -> torch.Tensor:
        """Loss of this process's slice of a global batch; noise is drawn for the whole global batch."""
        share = -(-len(global_indices) // self.dist.world_size)  # equal shares: the gradient average over
        padded = share * self.dist.world_size                    # processes is then the global batch's gradient
        start, stop = self.dist.rank * share, (self.dist.rank + 1) * share
        indices = (global_indices * self.dist.world_size)[start:stop]  # a short bucket batch wraps around
        first_draw = self.pixel_draws + start
        self.pixel_draws += padded
        latents, crops, weights, controls = self._latents_for(examples, is_class, indices, first_draw)
        noise, timesteps = self.engine.draw_noise((padded, *latents.shape[1:]), self.noise_generator,
                                                  NoiseOptions.of(self.config.training))
        noise_and_t = noise[start:stop].to(self.device, latents.dtype), timesteps[start:stop].to(self.device)
        captions = None
        if self.variation.active and not is_class:  # class prompts stay as they are: they keep the class
            import random

            # Each draw's variation from its own seed, like its crop: the same whichever process draws it.
            seed = (self.config.training.seed + 5) * 1_000_003
            captions = [self.variation.apply(examples[i].caption, random.Random(seed + draw))
                        for draw, i in enumerate(indices, start=first_draw)]
        return self._loss(latents, crops, [examples[i] for i in indices], noise_and_t, captions=captions,
                          mask_weights=weights, controls=controls)

    def _loss(self, latents: torch.Tensor, crops: list[tuple[int, int]], batch: list[ds.Example],
              noise_and_t: tuple[torch.Tensor, torch.Tensor], weighted: bool = True,
              unet: torch.nn.Module | None = None, captions: list[str] | None = None,
              mask_weights: torch.Tensor | None = None, controls: tuple[torch.Tensor, ...] = ()) -> torch.Tensor:
        """``captions``: this draw's (varied) captions; the examples' own where None (evaluation, class images).
        ``mask_weights``: the masked loss's (batch, 1, h, w) weights, None where no image of the batch has a mask.
        ``controls``: an edit family's control latents, one (batch, …) tensor per reference."""
        text = self._text_for(captions if captions is not None else [example.caption for example in batch],
                              training=unet is None, pairs=batch)
        noise, timesteps = noise_and_t
        dtype = weight_dtype(self.precision)
        extras = self.engine.extras([(e.size, crop, e.bucket) for e, crop in zip(batch, crops, strict=True)],
                                    self.device, dtype)
        if mask_weights is not None:
            extras[LOSS_WEIGHT] = floored(mask_weights, self.config.dataset.unmasked_weight)
        if controls:
            extras[CONTROL_LATENTS] = tuple(control.to(dtype) for control in controls)
        with self.accelerator.autocast():
            return self.engine.loss(unet or self.trained_unet, latents.to(dtype), noise.to(dtype), timesteps,
                                    text.to(self.device, dtype), extras,
                                    self.config.training.min_snr_gamma if weighted else 0.0,
                                    weighted and self.config.training.debiased_estimation)

    def train_step(self, step: int) -> StepResult:
        cfg = self.config
        self._before_step, self._updating = self._draw_position(), False  # for undo_failed_step
        for module in self._trained_modules():
            if not module.training:  # train() walks every submodule: only after evaluation or sampling set eval()
                module.train()
        total: torch.Tensor | float = 0.0
        for _ in range(cfg.training.gradient_accumulation_steps):
            with self.accelerator.accumulate(self.trained_unet,
                                             *(e for e in self.trained_text_encoders if e is not None)):
                batch = self.batches.next()
                loss = self._batch_loss(self.examples, False, batch)
                if self.class_streams:
                    loss = loss + cfg.dreambooth.prior_loss_weight * self._prior_loss(batch)
                self.accelerator.backward(loss)
                if self.accelerator.sync_gradients:
                    self._updating = True  # from here on a failure may leave the weights half-updated
                    if cfg.training.max_grad_norm:
                        self.accelerator.clip_grad_norm_(self.trained_parameters, cfg.training.max_grad_norm)
                    self.optimizer.step()
                    self.lr_scheduler.step()
                    self.optimizer.zero_grad(set_to_none=True)
                    if self.ema is not None:
                        self.ema.update()
                    self._updating = False
            # Summed on the device in float64 (the same sums Python's floats did): reading the loss waits for the
            # GPU, so the worker reads it only on the steps it logs.
            total = total + loss.detach().double()
        return StepResult(loss=self.dist.mean(total / cfg.training.gradient_accumulation_steps))

    def _draw_position(self) -> dict[str, Any]:
        """Everything a step draws from (random streams, data order): cheap references and small states."""
        return {"torch_rng": torch.get_rng_state(), "noise_rng": self.noise_generator.get_state(),
                "pixel_draws": self.pixel_draws, "batches": self.batches.position(),
                "class_batches": [stream.position() for _, (_, stream) in sorted(self.class_streams.items())]}

    def undo_failed_step(self) -> bool:
        """A step that failed before its optimizer update changed no weight, optimizer, scheduler, EMA or scaler
        state: dropping its gradients and rewinding its draws leaves exactly the state after the step before."""
        before = getattr(self, "_before_step", None)
        if before is None or self._updating or self.dist.world_size > 1:
            return False
        for parameter in self.trained_parameters:  # not optimizer.zero_grad(): accelerate skips it mid-accumulation
            parameter.grad = None
        torch.set_rng_state(before["torch_rng"])
        self.noise_generator.set_state(before["noise_rng"])
        self.pixel_draws = before["pixel_draws"]
        self.batches.load(before["batches"])
        for (_, stream), position in zip((v for _, v in sorted(self.class_streams.items())), before["class_batches"],
                                         strict=True):
            stream.load(position)
        self._before_step = None
        return True

    def image_count(self) -> int:
        return len({example.image for example in [*self.examples, *self.class_examples]})

    def _prior_loss(self, batch: list[int]) -> torch.Tensor | float:
        """The class term for one instance batch: each concept in it is paired with a batch of its own
        class images, weighted by its share of the batch (one concept: exactly the old term)."""
        shares: dict[int, int] = {}
        for index in batch:
            concept = self.examples[index].concept
            shares[concept] = shares.get(concept, 0) + 1
        terms = []
        for concept, count in sorted(shares.items()):
            if concept in self.class_streams:
                offset, stream = self.class_streams[concept]
                term = self._batch_loss(self.class_examples, True, [offset + i for i in stream.next()])
                terms.append(term if count == len(batch) else term * (count / len(batch)))
        return sum(terms[1:], terms[0]) if terms else 0.0

    def current_lr(self) -> float:
        return float(self.lr_scheduler.get_last_lr()[0])

    @torch.no_grad()
    def _make_eval_set(self) -> list[tuple[EncodedImage, ds.Example, torch.Tensor, torch.Tensor]]:
        """Fixed (encoded image, example, noise, timesteps): the same every evaluation, so the curve is smooth.  With
        masked loss the held-out loss is masked too: it measures what training aims at; a pair is evaluated with its
        controls.

        Built from its own generators (center crop, no flip), so evaluating never shifts the
        training RNGs — a resumed run stays identical to an uninterrupted one.
        """
        generator = torch.Generator().manual_seed(12345)
        timesteps = self.engine.eval_timesteps(EVAL_TIMESTEP_FRACTIONS)
        items = []
        for example in self._eval_examples():
            pixels, mask, crop, controls = ds.load_pair(example, "center", False, torch.Generator().manual_seed(0))
            latent = self.engine.image_latents(pixels[None].to(self.device))
            noise = torch.randn((len(timesteps), *latent.shape[1:]), generator=generator)
            weights = None if mask is None else latent_weights(mask[None], tuple(latent.shape[-2:]))
            encoded = EncodedImage(latent, crop, weights, tuple(
                self.engine.image_latents(control[None].to(self.device)) for control in controls))
            items.append((encoded.cpu(), example, noise, timesteps))
        return items

    def _eval_examples(self) -> list[ds.Example]:
        """The first images of each concept in turn (one concept: its first EVAL_IMAGES, as always)."""
        by_concept: dict[int, list[ds.Example]] = {}
        for example in self.examples:
            by_concept.setdefault(example.concept, []).append(example)
        picked: list[ds.Example] = []
        for position in range(EVAL_IMAGES):
            picked += [examples[position] for examples in by_concept.values() if position < len(examples)]
        return picked[:EVAL_IMAGES]

    @torch.no_grad()
    def evaluate(self) -> float | None:
        """Unweighted loss on the fixed evaluation set (shown as the held-out curve); main process only."""
        if not self.dist.is_main:
            return None
        with averaged_weights(self.optimizer):
            return self._evaluate()

    def _evaluate(self) -> float | None:
        for module in self._trained_modules():
            module.eval()
        losses = []
        for encoded, example, noise, timesteps in self._eval_set:
            count = len(timesteps)
            latents = encoded.latent.to(self.device).repeat(count, 1, 1, 1)
            weights = encoded.weight
            mask_weights = None if weights is None else weights.to(self.device).repeat(count, 1, 1, 1)
            controls = tuple(control.to(self.device).repeat(count, 1, 1, 1) for control in encoded.controls)
            losses.append(float(self._loss(latents, [encoded.crop] * count, [example] * count,
                                           (noise.to(self.device), timesteps.to(self.device)), weighted=False,
                                           unet=self.parts.unet, mask_weights=mask_weights, controls=controls)))
        return sum(losses) / len(losses)

    # ------------------------------------------------------------------ previews

    def preview_at_start(self) -> bool:
        return self.config.sampling.at_start

    def sample_prompts(self) -> list[str]:
        cfg = self.config
        if family(cfg.model.architecture).edit:  # each preview pair's own instruction
            return list(dict.fromkeys(example.caption for example in self._preview_pairs()))
        if cfg.sampling.prompts:
            return list(cfg.sampling.prompts)
        prompts = [cfg.dreambooth.instance_prompt if cfg.mode == "dreambooth" else self.examples[0].caption]
        for concept in self.concepts[1:]:
            # A concept's first caption when it names the concept's token, else its filled template.
            first = next(e.caption for e in self.examples if e.concept == concept.index)
            prompts.append(first if concept.instance_token and concept.instance_token in first.split()
                           else concept.default_prompt)
        return list(dict.fromkeys(prompts))

    def preview(self, step: int, final: bool = False) -> None:
        if not self.dist.is_main:
            return
        with averaged_weights(self.optimizer), ema_weights(self.ema):  # previews show the EMA, when there is one
            self._preview(step, final)

    def _preview(self, step: int, final: bool) -> None:
        cfg = self.config
        pipe = build_pipeline(self.parts, self.parts.unet)
        width = cfg.sampling.width or cfg.dataset.resolution
        height = cfg.sampling.height or cfg.dataset.resolution
        for module in self._trained_modules():
            module.eval()
        what = "drawing final samples" if final else "drawing samples"
        if family(cfg.model.architecture).edit:
            self._preview_edits(step, pipe, what)
            return
        paths, prompts, seeds = draw(pipe, self.sample_prompts(), list(cfg.sampling.seeds), width, height,
                                     cfg.sampling.inference_steps, cfg.sampling.guidance_scale,
                                     self.run.samples_dir / step_dirname(step),
                                     progress=lambda done, total: self.report_activity(what, done, total),
                                     conditioning=self._sample_text, negative=cfg.sampling.negative_prompt,
                                     sampler=cfg.sampling.sampler)
        self.sink.emit(Sample(step, tuple(paths), tuple(prompts), tuple(seeds)))

    def _preview_pairs(self) -> list[ds.Example]:
        """The fixed pairs an edit family's previews edit: the first of the evaluation set (the first pair of each
        concept in turn), the same every time."""
        return self._eval_examples()[:PREVIEW_PAIRS]

    def _preview_edits(self, step: int, pipe: Any, what: str) -> None:
        """Each preview pair as three tiles of the grid's row: its control image, the model's edit of it now (one per
        seed; drawn at the pair's bucket with its own instruction, the sampling section's steps and guidance), and its
        target — both fitted to the bucket as training sees them.  ``sampling.prompts`` are not drawn: an edit model's
        preview is an edit."""
        from PIL import Image

        cfg = self.config
        out_dir = self.run.samples_dir / step_dirname(step)
        pairs, seeds = self._preview_pairs(), list(cfg.sampling.seeds)
        total = len(pairs) * len(seeds)
        paths: list[str] = []
        prompts: list[str] = []
        used_seeds: list[int] = []
        for index, example in enumerate(pairs):
            pixels, _, _, controls = ds.load_pair(example, "center", False, torch.Generator().manual_seed(0))
            target, *references = (Image.fromarray(((image.permute(1, 2, 0) + 1) * 127.5).round().clamp(0, 255)
                                                   .to(torch.uint8).numpy()) for image in (pixels, *controls))
            control = references[0]  # the grid's control tile: the first reference
            width, height = example.bucket
            before = index * len(seeds)  # images drawn for the earlier pairs
            conditioning = self._sample_text
            if self.text_by_pair and conditioning is not None:  # encoded up front with this pair's control
                conditioning = {example.caption: conditioning[self._text_key(example.caption, example)]}
            drawn, _, drawn_seeds = draw(
                pipe, [example.caption], seeds, width, height, cfg.sampling.inference_steps,
                cfg.sampling.guidance_scale, out_dir,
                progress=lambda done, _, before=before: self.report_activity(what, before + done, total),
                conditioning=conditioning, sampler=cfg.sampling.sampler, first_index=index,
                call_arguments=self.engine.edit_arguments(references, self._control_pictures(example), width, height))
            ends = []
            for name, image in (("control", control), ("target", target)):
                path = out_dir / f"p{index:02d}-{name}.png"
                buffer = io.BytesIO()
                image.save(buffer, format="PNG")
                atomic_write_bytes(path, buffer.getvalue())
                ends.append(str(path))
            label = f"pair {index + 1}: {example.caption}"
            # The column's title, for the Runs page and a resumed run, which read the grid back from the folder.
            atomic_write_bytes(out_dir / f"p{index:02d}-pair.txt", label.encode("utf-8"))
            paths += [ends[0], *drawn, ends[1]]
            prompts += [f"{label} (control)", *[label] * len(drawn), f"{label} (target)"]
            used_seeds += [drawn_seeds[0], *drawn_seeds, drawn_seeds[0]]
        self.sink.emit(Sample(step, tuple(paths), tuple(prompts), tuple(used_seeds)))

    # ------------------------------------------------------------------ state

    def _named_trainables(self) -> dict[str, torch.nn.Parameter]:
        named = {f"unet.{n}": p for n, p in self.parts.unet.named_parameters() if p.requires_grad}
        if self.text_in_graph:
            for i, encoder in enumerate(self.parts.text_encoders):
                if encoder is None:
                    continue
                named.update({f"text_encoder_{i}.{n}": p for n, p in encoder.named_parameters() if p.requires_grad})
        return named

    def checkpoint_weights(self) -> dict[str, torch.Tensor]:
        return {name: p.detach().clone() for name, p in self._named_trainables().items()}

    def training_state(self) -> dict[str, Any]:
        # Collective: every process's own torch RNG (dropout) travels to the main process, which saves.
        torch_rngs = self.dist.gather(torch.get_rng_state())
        state = {"optimizer": self.optimizer.state_dict(), "scheduler": self.lr_scheduler.state_dict(),
                 "torch_rng": torch_rngs[0] if torch_rngs else torch.get_rng_state(),
                 "noise_rng": self.noise_generator.get_state(), "pixel_draws": self.pixel_draws,
                 "batches": self.batches.state()}
        if torch_rngs and len(torch_rngs) > 1:
            state["torch_rng_by_process"] = torch_rngs
        if self.class_streams:
            # One stream: the state a single-concept run always saved; several: one per concept.
            streams = [stream.state() for _, (_, stream) in sorted(self.class_streams.items())]
            state["class_batches"] = streams[0] if len(streams) == 1 else streams
        if self.accelerator.scaler is not None:
            state["grad_scaler"] = self.accelerator.scaler.state_dict()
        if self.ema is not None:
            state["ema"] = self.ema.state_dict()
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
        by_process = training_state.get("torch_rng_by_process") or [training_state["torch_rng"]]
        if len(by_process) != self.dist.world_size:
            self.log.warning("The checkpoint was saved by %d process(es), this run has %d: the random streams of "
                             "dropout differ from an uninterrupted run", len(by_process), self.dist.world_size)
        torch.set_rng_state(by_process[self.dist.rank % len(by_process)])
        self.noise_generator.set_state(training_state["noise_rng"])
        self.pixel_draws = int(training_state.get("pixel_draws", 0))
        self.batches.load(training_state["batches"])
        if "class_batches" in training_state:
            saved = training_state["class_batches"]
            saved = saved if isinstance(saved, list) else [saved]
            if len(saved) != len(self.class_streams):
                raise InputError("checkpoint does not match this run's class sets (were concepts changed?)")
            for (_, stream), state in zip((v for _, v in sorted(self.class_streams.items())), saved, strict=True):
                stream.load(state)
        if "grad_scaler" in training_state and self.accelerator.scaler is not None:
            self.accelerator.scaler.load_state_dict(training_state["grad_scaler"])
        if self.ema is not None:
            if "ema" not in training_state:
                raise InputError("training.ema_decay: this checkpoint was saved without an EMA (was the config "
                                 "changed?)")
            self.ema.load_state_dict(training_state["ema"])

    def export(self, output_dir: Path) -> list[Path]:
        if not self.dist.is_main:
            return []
        with averaged_weights(self.optimizer):
            outputs = export_outputs(self, output_dir)
            if self.ema is not None:  # the EMA's files beside the raw weights', named as they are
                with ema_weights(self.ema):
                    outputs += export_outputs(self, output_dir / "ema")
            return outputs


def _batch_weights(weights: list[torch.Tensor | None], size: torch.Size, device: str) -> torch.Tensor | None:
    """One (batch, 1, h, w) tensor of masked-loss weights, ones for the images without a mask; None when no image
    of the batch has one, so an unmasked batch computes exactly the unmasked loss."""
    if all(weight is None for weight in weights):
        return None
    return torch.stack([torch.ones((1, *size)) if weight is None else weight.cpu() for weight in weights]).to(device)

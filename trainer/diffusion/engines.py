"""How a model family trains, step by step: the heavy half of the registry (``Family.engine`` names one).

An engine turns VAE moments into latents, prompts into conditioning, draws noise and timesteps from the
job's CPU generator (so runs resume exactly), and computes the loss of the denoiser on a batch:

* :class:`UnetEngine` — SD 1.x/2.x/SDXL: DDPM noise, ε or v targets, min-SNR weighting, SDXL's size
  conditioning (the code paths the engine had before the registry, unchanged).
* :class:`SD3Engine` — flow matching (rectified flow): x_t = (1 − σ)·x₀ + σ·ε and the target ε − x₀, with
  σ drawn as the family's :class:`~trainer.families.base.FlowFacts` say; prompts are encoded by the
  family's own diffusers pipeline (``encode_prompt``), so training sees exactly what sampling does.
* :class:`FluxEngine` — the same objective on Flux's 2×2-packed latents, with its position ids and, for the
  guidance-distilled dev model, the guidance input.
* :class:`ZImageEngine` — the same objective on Z-Image, whose transformer takes each latent and each prompt's
  variable-length embedding as lists, runs its time the other way (t = 1 − σ) and predicts x₀ − ε.
* :class:`QwenImageEngine` — the same objective on Qwen-Image: its video VAE's latents normalised per channel,
  2×2-packed, prompts of different lengths with their mask.

The job owns the modules; an engine holds only the family and the components it reads.
"""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F

from trainer.diffusion.components import Components
from trainer.diffusion.loss import NoiseOptions
from trainer.diffusion.loss_weights import LOSS_WEIGHT, per_image_loss
from trainer.diffusion.text import TextConditioning
from trainer.families import Family, family

# The key of an edit family's control latents in an engine's ``extras``: a tuple with one (batch, channels, h, w) tensor
# per reference (control, control_2, …), each pair's in its target's row of the batch (``engine_kontext``).
CONTROL_LATENTS = "control_latents"

# The guidance value Flux dev is trained with (as kohya's and ai-toolkit's Flux trainers): distilled guidance
# is an input of the model, and LoRAs trained at 1.0 keep the base model's response to the sampling value.
FLUX_TRAINING_GUIDANCE = 1.0


def engine_for(parts: Components) -> Engine:
    """The engine the family of ``parts`` declares."""
    import importlib

    module_name, class_name = family(parts.architecture).engine.split(":")
    return getattr(importlib.import_module(module_name), class_name)(parts)


class Engine:
    # Cached captions are encoded one by one, not in whatever batch first needed them: a matrix product's
    # rounding can depend on the batch's size, and a resumed run fills its cache from other batches.
    encode_captions_alone = False

    def __init__(self, parts: Components) -> None:
        self.parts = parts
        self.family: Family = family(parts.architecture)

    # What every engine provides.
    def latents(self, mean: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def image_latents(self, pixels: torch.Tensor) -> torch.Tensor:
        """Latents of images (batch, 3, height, width) in [−1, 1]: the mean of the VAE's distribution (deterministic,
        so cached and uncached runs agree), as the family's denoiser reads them."""
        return self.latents(self.parts.vae.encode(pixels).latent_dist.mean)

    def encode_prompts(self, encoders: list[torch.nn.Module], prompts: list[str],
                       device: str | torch.device) -> TextConditioning:
        raise NotImplementedError

    def draw_noise(self, shape: tuple[int, ...], generator: torch.Generator,
                   options: NoiseOptions) -> tuple[torch.Tensor, torch.Tensor]:
        raise NotImplementedError

    def eval_timesteps(self, fractions: tuple[float, ...]) -> torch.Tensor:
        raise NotImplementedError

    def loss(self, denoiser: torch.nn.Module, latents: torch.Tensor, noise: torch.Tensor, timesteps: torch.Tensor,
             text: TextConditioning, extras: dict[str, Any], min_snr_gamma: float = 0.0,
             debiased: bool = False) -> torch.Tensor:
        """The batch's mean loss; ``min_snr_gamma`` and ``debiased`` weigh DDPM timesteps (flow matching: unused)."""
        raise NotImplementedError

    def extras(self, sizes: list[tuple[tuple[int, int], tuple[int, int], tuple[int, int]]],
               device: str | torch.device, dtype: torch.dtype) -> dict[str, Any]:
        """Per-image conditioning beyond the text, from (original size, crop's top left, bucket) of each.

        The job adds the masked loss's weights under ``loss_weights.LOSS_WEIGHT``; every engine's loss reads them."""
        return {}

    def edit_arguments(self, references: list[Any], pictures: list[Any], width: int, height: int) -> dict[str, Any]:
        """An edit family's pipeline-call arguments that draw a preview pair's edit at ``width``×``height``:
        ``references``, its control images fitted as trained on (PIL, at the target's size, in reference order), or
        ``pictures``, the pair's control files whole (what a person hands the pipeline), as its pipeline takes them."""
        raise NotImplementedError(f"{self.family.display_name} does not train on before/after pairs")


class UnetEngine(Engine):
    """SD 1.x/2.x/SDXL."""

    def latents(self, mean: torch.Tensor) -> torch.Tensor:
        return mean * self.parts.vae_scale

    def encode_prompts(self, encoders, prompts, device):
        from trainer.diffusion.text import encode_prompts

        return encode_prompts(self.parts.architecture, self.parts.tokenizers, encoders, prompts, device)

    def draw_noise(self, shape, generator, options):
        from trainer.diffusion.loss import draw_noise

        return draw_noise(shape, generator, options, self.parts.noise_scheduler.config.num_train_timesteps)

    def eval_timesteps(self, fractions):
        steps = self.parts.noise_scheduler.config.num_train_timesteps
        return torch.tensor([int(f * (steps - 1)) for f in fractions])

    def extras(self, sizes, device, dtype):
        if not self.family.size_conditioning:
            return {}
        from trainer.diffusion.text import sdxl_time_ids

        return {"time_ids": torch.cat([sdxl_time_ids(size, crop, bucket, 1, device, dtype)
                                       for size, crop, bucket in sizes])}

    def loss(self, denoiser, latents, noise, timesteps, text, extras, min_snr_gamma=0.0, debiased=False):
        from trainer.diffusion.loss import denoising_loss

        return denoising_loss(denoiser, self.parts.noise_scheduler, latents, noise, timesteps, text,
                              extras.get("time_ids"), min_snr_gamma, extras.get(LOSS_WEIGHT), debiased=debiased)


class SD3Engine(Engine):
    """Flow matching on an SD 3-style transformer (unpacked latents, joint text tokens, pooled text)."""

    encode_captions_alone = True

    def __init__(self, parts: Components) -> None:
        super().__init__(parts)
        self._text_pipelines: dict[tuple[int, ...], Any] = {}  # by the encoders' identity

    def latents(self, mean: torch.Tensor) -> torch.Tensor:
        config = self.parts.vae.config
        return (mean - float(config.shift_factor or 0.0)) * float(config.scaling_factor)

    def encode_prompts(self, encoders, prompts, device):
        """The pipeline's own ``encode_prompt`` over the given encoders (the trained ones, with adapters)."""
        pipe = self._text_pipeline(encoders)
        extra = {"max_sequence_length": self.family.max_sequence_length} if self.family.max_sequence_length else {}
        hidden, pooled = self._encode(pipe, prompts, device, extra)
        return TextConditioning(hidden, pooled)

    def _text_pipeline(self, encoders: list[torch.nn.Module]) -> Any:
        """A text-only pipeline over ``encoders`` (built once per set of encoders: training and evaluation)."""
        import diffusers

        key = tuple(id(encoder) for encoder in encoders)
        cache = self._text_pipelines
        if key not in cache:
            parts: dict[str, Any] = {"transformer": None, "vae": None, "scheduler": None}
            if any(encoder is None for encoder in encoders):  # SD 3.5 without T5: the pipeline sizes T5's zeros
                parts["transformer"] = self.parts.unet        # from the transformer's config
            for spec, encoder, tokenizer in zip(self.family.text_encoders, encoders, self.parts.tokenizers,
                                                strict=True):
                parts[spec.component] = None if encoder is None else _unwrapped(encoder)
                parts[spec.tokenizer] = tokenizer
            cache[key] = getattr(diffusers, self.family.pipeline_class)(**parts, **self.family.pipeline_args)
        return cache[key]

    def _encode(self, pipe: Any, prompts: list[str], device, extra: dict) -> tuple[torch.Tensor, torch.Tensor]:
        hidden, _, pooled, _ = pipe.encode_prompt(prompts, prompts, prompts, device=torch.device(device),
                                                  do_classifier_free_guidance=False, **extra)
        return hidden, pooled

    def draw_noise(self, shape, generator, options):
        """Noise, and σ *before* the shift (uniform in (0, 1) or as the family's scheme draws it): the shift
        depends on the latents' size for Flux, and is applied in :meth:`loss`.

        A timestep range [a, b] is met by mapping the drawn u linearly onto [u(a), u(b)], the values whose
        shifted σ are a and b (the shift is monotonic): every σ lies in the range and the scheme's shape is
        kept within it."""
        from trainer.diffusion.loss import base_noise

        noise = base_noise(shape, generator, NoiseOptions(options.offset))  # no multires: refused by the config
        flow = self.family.flow
        scheme, spread = (flow.sampling, flow.logit_std) if flow is not None else ("uniform", 1.0)
        if scheme == "logit_normal":
            u = torch.sigmoid(spread * torch.randn((shape[0],), generator=generator))
        elif scheme == "mode":  # SD3 paper, mode sampling with heavy tails (scale 1.29)
            u = torch.rand((shape[0],), generator=generator)
            u = 1 - u - 1.29 * (torch.cos(math.pi * u / 2) ** 2 - 1 + u)
        else:
            u = torch.rand((shape[0],), generator=generator)
        if options.timestep_range != (0.0, 1.0):
            shift = self.shift(shape)
            low, high = (sigma / (shift - (shift - 1) * sigma) for sigma in options.timestep_range)
            u = low + u * (high - low)
        return noise, u

    def eval_timesteps(self, fractions):
        return torch.tensor(fractions, dtype=torch.float32)

    def sigmas(self, u: torch.Tensor, latents: torch.Tensor) -> torch.Tensor:
        """σ from the drawn ``u``: shifted by the family's fixed shift or, for Flux, by the image's size."""
        shift = self.shift(latents.shape)
        u = u.float()
        return shift * u / (1 + (shift - 1) * u)

    def shift(self, shape: tuple[int, ...] | torch.Size) -> float:
        """The σ shift for latents of ``shape``: the family's fixed one or, for Flux, by the image's size."""
        flow = self.family.flow
        assert flow is not None
        if not flow.resolution_shift:
            return flow.shift
        tokens = (shape[-2] // 2) * (shape[-1] // 2)
        slope = (flow.max_shift - flow.base_shift) / (flow.max_seq_len - flow.base_seq_len)
        return math.exp(flow.base_shift + slope * (tokens - flow.base_seq_len))

    def loss(self, denoiser, latents, noise, timesteps, text, extras, min_snr_gamma=0.0, debiased=False):
        sigma = self.sigmas(timesteps, latents).to(latents.device)
        s = sigma.view(-1, *([1] * (latents.dim() - 1))).to(latents.dtype)
        noisy = (1 - s) * latents + s * noise
        target = noise - latents
        predicted = self.predict_batch(denoiser, noisy, sigma, text, extras)  # unpacked: weights line up
        return per_image_loss(F.mse_loss(predicted.float(), target.float(), reduction="none"),
                              extras.get(LOSS_WEIGHT)).mean()

    def predict_batch(self, denoiser, noisy: torch.Tensor, sigma: torch.Tensor, text: TextConditioning,
                      extras: dict[str, Any]) -> torch.Tensor:
        """The prediction the loss compares, given the batch's ``extras`` too: an edit family reads its control
        latents there (``engine_kontext``); a text-to-image family predicts from the text alone."""
        return self.predict(denoiser, noisy, sigma, text)

    def predict(self, denoiser, noisy: torch.Tensor, sigma: torch.Tensor, text: TextConditioning) -> torch.Tensor:
        return denoiser(hidden_states=noisy, timestep=sigma * 1000, encoder_hidden_states=text.hidden,
                        pooled_projections=text.pooled, return_dict=False)[0]


class FluxEngine(SD3Engine):
    """Flow matching on Flux: latents packed 2×2 into tokens, with image and text position ids."""

    def _encode(self, pipe, prompts, device, extra):
        hidden, pooled, _ = pipe.encode_prompt(prompts, prompts, device=torch.device(device), **extra)
        return hidden, pooled

    def predict(self, denoiser, noisy, sigma, text):
        return self.predict_in_context(denoiser, noisy, sigma, text, ())

    def predict_in_context(self, denoiser, noisy: torch.Tensor, sigma: torch.Tensor, text: TextConditioning,
                           controls: tuple[torch.Tensor, ...] | list[torch.Tensor]) -> torch.Tensor:
        """The velocity of ``noisy``'s tokens, with each of ``controls`` (latents, unpacked) packed after them as
        Kontext's pipeline packs its control image: its own tokens, position ids whose first axis is 1 + its place
        (the target's is 0); the transformer's output is read off the target's tokens only."""
        batch, _, height, width = noisy.shape
        tokens = [pack_2x2(noisy)] + [pack_2x2(control.to(noisy.dtype)) for control in controls]
        ids = [flux_position_ids(height // 2, width // 2, 0, noisy.device, noisy.dtype)]
        ids += [flux_position_ids(c.shape[-2] // 2, c.shape[-1] // 2, i + 1, noisy.device, noisy.dtype)
                for i, c in enumerate(controls)]
        text_ids = torch.zeros(text.hidden.shape[1], 3, device=noisy.device, dtype=noisy.dtype)
        guidance = None
        if _unwrapped(denoiser).config.guidance_embeds:
            guidance = torch.full((batch,), FLUX_TRAINING_GUIDANCE, device=noisy.device, dtype=torch.float32)
        out = denoiser(hidden_states=torch.cat(tokens, dim=1), timestep=sigma.to(noisy.dtype), guidance=guidance,
                       pooled_projections=text.pooled, encoder_hidden_states=text.hidden, txt_ids=text_ids,
                       img_ids=torch.cat(ids), return_dict=False)[0]
        return unpack_2x2(out[:, : tokens[0].shape[1]], height, width)


class ZImageEngine(SD3Engine):
    """Flow matching on Z-Image: the pipeline's own prompt encoding (Qwen3's chat template, the penultimate hidden
    state of each prompt's real tokens: one length per prompt, kept as a padded batch with its mask), and the
    transformer called as ``ZImagePipeline`` calls it — latents as a list of (channels, 1, height, width), the
    prompts as a list of (tokens, width), the time 1 − σ — with its output negated: x₀ − ε → ε − x₀, SD 3's
    velocity, so σ, the noisy latents and the loss are :class:`SD3Engine`'s."""

    def encode_prompts(self, encoders, prompts, device):
        pipe = self._text_pipeline(encoders)
        # A copy: the pipeline writes the chat template into the list it is given.
        embeddings, _ = pipe.encode_prompt(list(prompts), device=torch.device(device),
                                           do_classifier_free_guidance=False,
                                           max_sequence_length=self.family.max_sequence_length or 512)
        return TextConditioning.from_sequences(embeddings)

    def predict(self, denoiser, noisy, sigma, text):
        images = list(noisy.unsqueeze(2).unbind(0))
        time = (1 - sigma.float()).to(noisy.device)
        out = denoiser(images, time, [tokens.to(noisy.dtype) for tokens in text.sequences()], return_dict=False)[0]
        return -torch.stack(out).squeeze(2)


class QwenImageEngine(SD3Engine):
    """Flow matching on Qwen-Image: latents from its video VAE (one frame) normalised by the VAE's per-channel
    ``latents_mean``/``latents_std`` (the inverse of what the pipeline does before decoding), packed 2×2 as the
    pipeline packs them, with ``img_shapes``; the prompt's hidden states and mask from the pipeline's own
    ``encode_prompt``; the time σ (the pipeline gives t / 1000) and the velocity ε − x₀ as its output."""

    def image_latents(self, pixels):
        config = self.parts.vae.config
        mean = self.parts.vae.encode(pixels.unsqueeze(2)).latent_dist.mean  # (batch, channels, 1 frame, h, w)
        shape = (1, -1, 1, 1, 1)
        average = torch.tensor(config.latents_mean, device=mean.device, dtype=mean.dtype).view(shape)
        spread = torch.tensor(config.latents_std, device=mean.device, dtype=mean.dtype).view(shape)
        return ((mean - average) / spread).squeeze(2)

    def encode_prompts(self, encoders, prompts, device):
        pipe = self._text_pipeline(encoders)
        hidden, mask = pipe.encode_prompt(list(prompts), device=torch.device(device),
                                          max_sequence_length=self.family.max_sequence_length or 1024)
        if mask is None:  # every prompt as long as the longest
            return TextConditioning(hidden)
        return TextConditioning.from_sequences([row[keep.bool()] for row, keep in zip(hidden, mask, strict=True)])

    def predict(self, denoiser, noisy, sigma, text):
        batch, channels, height, width = noisy.shape
        packed = (noisy.view(batch, channels, height // 2, 2, width // 2, 2).permute(0, 2, 4, 1, 3, 5)
                  .reshape(batch, (height // 2) * (width // 2), channels * 4))
        mask = None if text.mask is None else text.mask.long()
        out = denoiser(hidden_states=packed, timestep=sigma.to(noisy.dtype), encoder_hidden_states=text.hidden,
                       encoder_hidden_states_mask=mask, img_shapes=[[(1, height // 2, width // 2)]] * batch,
                       return_dict=False)[0]
        return (out.view(batch, height // 2, width // 2, channels, 2, 2).permute(0, 3, 1, 4, 2, 5)
                .reshape(batch, channels, height, width))


def pack_2x2(latents: torch.Tensor) -> torch.Tensor:
    """(batch, channels, h, w) latents → (batch, h/2 · w/2, 4 · channels) tokens, as Flux's pipelines pack them."""
    batch, channels, height, width = latents.shape
    return (latents.view(batch, channels, height // 2, 2, width // 2, 2).permute(0, 2, 4, 1, 3, 5)
            .reshape(batch, (height // 2) * (width // 2), channels * 4))


def unpack_2x2(tokens: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """The inverse of :func:`pack_2x2` for latents ``height`` × ``width``."""
    batch, _, packed_channels = tokens.shape
    channels = packed_channels // 4
    return (tokens.view(batch, height // 2, width // 2, channels, 2, 2).permute(0, 3, 1, 4, 2, 5)
            .reshape(batch, channels, height, width))


def flux_position_ids(rows: int, cols: int, first: int, device: torch.device | str,
                      dtype: torch.dtype) -> torch.Tensor:
    """(rows · cols, 3) position ids of a grid of packed tokens: (``first``, row, column) — ``first`` 0 for the image
    being denoised, 1 for Kontext's control image."""
    ids = torch.zeros(rows, cols, 3, device=device, dtype=dtype)
    ids[..., 0] = first
    ids[..., 1] = torch.arange(rows, device=device, dtype=dtype)[:, None]
    ids[..., 2] = torch.arange(cols, device=device, dtype=dtype)[None, :]
    return ids.reshape(-1, 3)


def _unwrapped(module: torch.nn.Module) -> torch.nn.Module:
    """The module inside a DistributedDataParallel wrapper (accelerate's ``prepare``), else itself."""
    return getattr(module, "module", module)

"""How Ideogram 4 trains: :class:`Ideogram4Engine`, SD 3's flow matching with the latents, prompts and transformer call
of diffusers' ``Ideogram4Pipeline``.

* Latents: the Flux.2 VAE's mean, patchified 2×2 into tokens whose channels run (row, column, channel) — the order
  the pipeline unpacks them in before decoding, which is not Flux.2's — normalised by the VAE's batch-norm running
  statistics in that order, then unpacked again so the job's latents keep the VAE's shape.
* Prompts: the pipeline's own ``encode_prompt`` (Qwen3-VL's chat turn, its hidden states after 13 layers side by
  side), each prompt's real tokens only: the pipeline left-pads every prompt to ``max_sequence_length`` and the
  transformer sees no padding (its own segment, its own positions), so the padding's length never reaches the image.
* The transformer: one packed sequence, [text][image], text positions 0…n−1 and image positions (0, row, column) past
  65536, built by the pipeline's own ``_prepare_ids``; the time 1 − σ (1 is the clean image) and the output x₀ − ε
  negated, SD 3's velocity.  The unconditional transformer (no text, for the pipeline's guidance) is not trained.
* σ: as the pipeline samples, logit-normal with spread 1.5 around μ = ½·ln(pixels / 512²), i.e. σ = sigmoid(1.5·z)
  shifted by s = e^μ = √(tokens / 1024) (one token per 16×16 pixels).
"""

from __future__ import annotations

import math

import torch

from trainer.diffusion.engines import SD3Engine, _unwrapped
from trainer.diffusion.text import TextConditioning
from trainer.families.ideogram4 import FAMILY

PATCH = 2
# The longest prompt the pipeline reads (its default max_sequence_length), chat template included.
MAX_TOKENS = FAMILY.max_sequence_length or 2048
# The image (512 px square, 1024 tokens) at which the pipeline's schedule is not shifted.
BASE_TOKENS = (512 // 16) ** 2


def packed(latents: torch.Tensor) -> torch.Tensor:
    """(batch, c, h, w) → (batch, h/2 · w/2, 4c), channels (row, column, c): the inverse of the pipeline's unpacking."""
    batch, channels, height, width = latents.shape
    grid = latents.view(batch, channels, height // PATCH, PATCH, width // PATCH, PATCH).permute(0, 2, 4, 3, 5, 1)
    return grid.reshape(batch, (height // PATCH) * (width // PATCH), PATCH * PATCH * channels)


def unpacked(tokens: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """(batch, tokens, 4c) → (batch, c, height, width), as the pipeline unpacks its latents before decoding."""
    batch, _, features = tokens.shape
    channels = features // (PATCH * PATCH)
    grid = tokens.reshape(batch, height // PATCH, width // PATCH, PATCH, PATCH, channels).permute(0, 5, 1, 3, 2, 4)
    return grid.reshape(batch, channels, height, width)


def prompt_tokens(tokenizer, prompts: list[str]) -> int:
    """How many tokens the longest of ``prompts`` is as ``Ideogram4Pipeline.encode_prompt`` tokenises it (the user turn
    of the chat template, with the assistant's turn opened); ``InputError`` naming a prompt longer than the pipeline
    reads (it would refuse it with a bare ValueError)."""
    from trainer.errors import InputError

    longest = 0
    for prompt in prompts:
        turn = [{"role": "user", "content": [{"type": "text", "text": prompt}]}]
        count = len(tokenizer(tokenizer.apply_chat_template(turn, add_generation_prompt=True, tokenize=False),
                              add_special_tokens=False)["input_ids"])
        if count > MAX_TOKENS:
            raise InputError(f"prompt {prompt[:60]!r}…: {count} tokens; Ideogram 4 reads at most {MAX_TOKENS}")
        longest = max(longest, count)
    return longest


def preview_arguments(pipe, prompt: str) -> dict:
    """A preview's text padded as far as its prompt needs (the pipeline pads to 2048 tokens by default and Qwen3-VL
    then encodes them all, on the CPU where it waits off the GPU): the same image, as the padding is its own segment."""
    return {"max_sequence_length": prompt_tokens(pipe.tokenizer, [prompt])}


class Ideogram4Engine(SD3Engine):
    """Flow matching on Ideogram 4's conditional transformer (see the module's docstring)."""

    def latents(self, mean: torch.Tensor) -> torch.Tensor:
        vae = self.parts.vae
        tokens = packed(mean)
        average = vae.bn.running_mean.to(tokens.device, tokens.dtype)
        spread = torch.sqrt(vae.bn.running_var + vae.config.batch_norm_eps).to(tokens.device, tokens.dtype)
        return unpacked((tokens - average) / spread, *mean.shape[-2:])

    def encode_prompts(self, encoders, prompts, device):
        from diffusers.models.transformers.transformer_ideogram4 import LLM_TOKEN_INDICATOR

        pipe = self._text_pipeline(encoders)
        # Padded only as far as the longest prompt needs (the pipeline pads to 2048), on the smallest image grid: the
        # text part of what it returns is the same either way.
        length = prompt_tokens(pipe.tokenizer, list(prompts))
        embeddings, _, _, indicator = pipe.encode_prompt(list(prompts), grid_h=1, grid_w=1,
                                                         max_sequence_length=length, device=torch.device(device))
        text = indicator[:, :length] == LLM_TOKEN_INDICATOR
        # Back in the encoder's dtype, which the pipeline widened to fp32 (exactly): 53,248 features a token make a
        # 300-token caption 32 MB in bf16 in the cache, 64 MB in fp32; the transformer reads them in its own dtype.
        dtype = _unwrapped(encoders[0]).dtype
        return TextConditioning.from_sequences([row[:length][keep].to(dtype)
                                                for row, keep in zip(embeddings, text, strict=True)])

    def _text_pipeline(self, encoders):
        """A text-only ``Ideogram4Pipeline`` over ``encoders`` (its ``encode_prompt`` reads no other component)."""
        import diffusers

        key = tuple(id(encoder) for encoder in encoders)
        if key not in self._text_pipelines:
            self._text_pipelines[key] = diffusers.Ideogram4Pipeline(
                scheduler=None, vae=None, text_encoder=_unwrapped(encoders[0]), tokenizer=self.parts.tokenizers[0],
                transformer=None, unconditional_transformer=None)
        return self._text_pipelines[key]

    def shift(self, shape):
        tokens = (shape[-2] // PATCH) * (shape[-1] // PATCH)
        return math.sqrt(tokens / BASE_TOKENS)

    def predict(self, denoiser, noisy, sigma, text):
        from diffusers import Ideogram4Pipeline

        batch, _, height, width = noisy.shape
        image = packed(noisy)
        rows = text.sequences()
        longest = max(len(row) for row in rows)
        features = torch.zeros(batch, longest + image.shape[1], text.hidden.shape[-1], device=noisy.device,
                               dtype=noisy.dtype)
        for b, row in enumerate(rows):  # left-padded, as the pipeline places them
            features[b, longest - len(row):longest] = row.to(noisy.device, noisy.dtype)
        positions, segments, indicator = Ideogram4Pipeline._prepare_ids(
            [len(row) for row in rows], height // PATCH, width // PATCH, longest, noisy.device)
        sequence = torch.cat([image.new_zeros(batch, longest, image.shape[-1]), image], dim=1)
        time = (1 - sigma.float()).to(noisy.device, noisy.dtype)
        out = denoiser(hidden_states=sequence, timestep=time, encoder_hidden_states=features, position_ids=positions,
                       segment_ids=segments, indicator=indicator, return_dict=False)[0]
        return -unpacked(out[:, longest:], height, width)

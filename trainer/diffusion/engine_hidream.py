"""HiDream-I1's engine: SD 3's flow-matching objective with HiDream's calls — prompts from
``HiDreamImagePipeline.encode_prompt`` (T5's last hidden state and every Llama layer's, both 128 tokens, and the two
CLIPs' pooled projections), the transformer at time σ·1000 with its output negated (it predicts x₀ − ε), and its
training-mode output (patch by patch) put back into the latents' shape."""

from __future__ import annotations

import torch

from trainer.diffusion.engines import SD3Engine, _unwrapped
from trainer.errors import InputError


class HiDreamEngine(SD3Engine):
    """Flow matching on HiDream-I1.  One conditioning tensor per prompt holds both sequences side by side along the
    width: T5's (tokens, t5 width) then each Llama layer's (tokens, llama width) — both padded to the same 128 tokens
    and read whole by the transformer (it takes no text mask) — so the disk cache, batching and resume treat it as any
    other prompt; :meth:`predict` splits it again by the transformer's ``caption_channels``."""

    def _encode(self, pipe, prompts, device, extra):
        t5, _, llama, _, pooled, _ = pipe.encode_prompt(list(prompts), device=torch.device(device),
                                                         do_classifier_free_guidance=False, **extra)
        layers = llama.permute(1, 2, 0, 3).flatten(2)  # (layers, batch, tokens, w) → (batch, tokens, layers·w)
        return torch.cat([t5, layers.to(t5.dtype)], dim=-1), pooled

    def predict(self, denoiser, noisy, sigma, text):
        model = _unwrapped(denoiser)
        patch, (height, width) = int(model.config.patch_size), noisy.shape[-2:]
        if height != width and (height // patch) * (width // patch) > model.max_seq:
            # diffusers pads a non-square image's tokens to the transformer's max_seq and cannot fit more.
            raise InputError(f"dataset.resolution: HiDream-I1 takes non-square images of at most "
                             f"{model.max_seq} patches ({model.config.max_resolution[0] * 8} px squared for the "
                             f"released models); a bucket of {width * 8}×{height * 8} px is larger")
        t5_width, llama_width = (int(channels) for channels in model.config.caption_channels)
        t5 = text.hidden[..., :t5_width]
        llama = text.hidden[..., t5_width:].unflatten(-1, (-1, llama_width)).permute(2, 0, 1, 3)
        out = denoiser(hidden_states=noisy, timesteps=sigma * 1000, encoder_hidden_states_t5=t5.to(noisy.dtype),
                       encoder_hidden_states_llama3=llama.to(noisy.dtype), pooled_embeds=text.pooled.to(noisy.dtype),
                       return_dict=False)[0]
        if model.training and not model.config.force_inference_output:  # as the transformer's own unpatchify
            out = _from_training_patches(out, noisy.shape, patch)
        return -out


def _from_training_patches(out: torch.Tensor, shape: torch.Size, patch: int) -> torch.Tensor:
    """The latents (batch, channels, height, width) from what diffusers' HiDream transformer returns in training mode:
    (batch, channels, tokens, patch²), its tokens row by row (a non-square image's padded up to ``max_seq``, cut off
    here), each token's patch row by row — the inverse of its ``patchify``."""
    batch, channels, height, width = shape
    rows, cols = height // patch, width // patch
    out = out[:, :, :rows * cols].reshape(batch, channels, rows, cols, patch, patch)
    return out.permute(0, 1, 2, 4, 3, 5).reshape(batch, channels, height, width)


def draw_at_the_transformers_area(pipe) -> None:
    """``HiDreamImagePipeline`` draws every image at the area of ``default_sample_size`` (128 latent pixels a side:
    1024² pixels), only the aspect ratio taken from the size asked for.  That is the transformer's
    ``max_resolution`` for the released models (128 × 128); a smaller model (the tiny test model) is drawn at its
    own, as large as it was made for."""
    pipe.default_sample_size = int(pipe.transformer.config.max_resolution[0])

"""How Kandinsky 5 Image trains: :class:`Kandinsky5Engine`, SD 3's flow matching with the latents, prompts and
transformer call of diffusers' ``Kandinsky5T2IPipeline``.

* Latents: the VAE's mean times its ``scaling_factor``, unshifted (the pipeline decodes ``latents / scaling_factor``;
  Flux's ``shift_factor`` in the VAE's config is not used by it).
* Prompts: the pipeline's own ``encode_prompt`` — Qwen2.5-VL's last hidden state over the system prompt, its first 40
  tokens dropped, each prompt's real tokens only (the lengths come back as ``cu_seqlens``), and CLIP's pooled output.
* The transformer: latents channels-last with one frame, (batch, 1, h, w, c), as ``prepare_latents`` makes them; the
  3D RoPE positions of one frame and (h/2)·(w/2) patches at scale 1 and the text's 0 … n − 1, as the pipeline passes
  them; the time σ·1000 (the scheduler's timestep); its output, the velocity ε − x₀, back to (batch, c, h, w).
  The transformer attends to every text token it gets (it takes no mask): prompts of different lengths in one batch
  run one by one, each as the pipeline runs it alone.
"""

from __future__ import annotations

import torch

from trainer.diffusion.engines import SD3Engine
from trainer.diffusion.text import TextConditioning


class Kandinsky5Engine(SD3Engine):
    """Flow matching on Kandinsky 5 Image (see the module's docstring)."""

    def latents(self, mean: torch.Tensor) -> torch.Tensor:
        return mean * float(self.parts.vae.config.scaling_factor)

    def encode_prompts(self, encoders, prompts, device):
        pipe = self._text_pipeline(encoders)
        hidden, pooled, cu_seqlens = pipe.encode_prompt(list(prompts), device=torch.device(device),
                                                        max_sequence_length=self.family.max_sequence_length or 512)
        lengths = cu_seqlens.diff().tolist()
        text = TextConditioning.from_sequences([row[:length] for row, length in zip(hidden, lengths, strict=True)])
        return TextConditioning(text.hidden, pooled, text.mask)

    def predict(self, denoiser, noisy, sigma, text):
        if text.mask is not None:  # each prompt alone, at its own length
            rows = [self._predict(denoiser, noisy[i:i + 1], sigma[i:i + 1], text.select(slice(i, i + 1)))
                    for i in range(len(noisy))]
            return torch.cat(rows)
        return self._predict(denoiser, noisy, sigma, text)

    @staticmethod
    def _predict(denoiser, noisy: torch.Tensor, sigma: torch.Tensor, text: TextConditioning) -> torch.Tensor:
        assert text.pooled is not None
        _, _, height, width = noisy.shape
        device = noisy.device
        visual_rope = [torch.arange(1, device=device), torch.arange(height // 2, device=device),
                       torch.arange(width // 2, device=device)]
        out = denoiser(hidden_states=noisy.permute(0, 2, 3, 1).unsqueeze(1),
                       encoder_hidden_states=text.hidden.to(noisy.dtype),
                       pooled_projections=text.pooled.to(noisy.dtype), timestep=(sigma * 1000).to(noisy.dtype),
                       visual_rope_pos=visual_rope, text_rope_pos=torch.arange(text.hidden.shape[1], device=device),
                       scale_factor=[1.0, 1.0, 1.0]).sample  # return_dict=False gives no tuple
        return out.squeeze(1).permute(0, 3, 1, 2)

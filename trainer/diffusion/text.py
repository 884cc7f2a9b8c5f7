"""Prompt → conditioning, per model family.

SD 1.x/2.x condition on the text encoder's last hidden state.  SDXL concatenates the
penultimate hidden states of both encoders and adds the second encoder's pooled embedding
and the size/crop "time ids".
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from trainer.families import family


@dataclass
class TextConditioning:
    hidden: torch.Tensor  # (batch, tokens, dim)
    pooled: torch.Tensor | None = None  # SDXL only: (batch, dim)

    def to(self, device: str | torch.device, dtype: torch.dtype | None = None) -> TextConditioning:
        return TextConditioning(self.hidden.to(device, dtype),
                                None if self.pooled is None else self.pooled.to(device, dtype))

    def select(self, index: torch.Tensor | slice) -> TextConditioning:
        return TextConditioning(self.hidden[index], None if self.pooled is None else self.pooled[index])

    @staticmethod
    def cat(parts: list[TextConditioning]) -> TextConditioning:
        pooled = [p.pooled for p in parts]
        return TextConditioning(torch.cat([p.hidden for p in parts]),
                                None if pooled[0] is None else torch.cat(pooled))  # type: ignore[arg-type]


def tokenize(tokenizer, prompts: list[str], device: str | torch.device) -> torch.Tensor:
    return tokenizer(prompts, padding="max_length", max_length=tokenizer.model_max_length, truncation=True,
                     return_tensors="pt").input_ids.to(device)


def encode_prompts(architecture: str, tokenizers: list, encoders: list[torch.nn.Module], prompts: list[str],
                   device: str | torch.device) -> TextConditioning:
    """What the UNet attends to for ``prompts``: the hidden state the family declares, every encoder's side by
    side, and the pooled projection where an encoder has one."""
    if family(architecture).prompt_hidden_state == "last":
        return TextConditioning(encoders[0](tokenize(tokenizers[0], prompts, device))[0])
    hidden, pooled = [], None
    for tokenizer, encoder in zip(tokenizers, encoders, strict=True):
        output = encoder(tokenize(tokenizer, prompts, device), output_hidden_states=True)
        hidden.append(output.hidden_states[-2])
        if hasattr(output, "text_embeds"):  # the second encoder (with projection) gives the pooled embedding
            pooled = output.text_embeds
    return TextConditioning(torch.cat(hidden, dim=-1), pooled)


def sdxl_time_ids(original: tuple[int, int], crop_top_left: tuple[int, int], target: tuple[int, int],
                  batch: int, device: str | torch.device, dtype: torch.dtype) -> torch.Tensor:
    """SDXL's micro-conditioning (orig_h, orig_w, crop_top, crop_left, target_h, target_w), from
    ``original`` and ``target`` as (width, height) and ``crop_top_left`` as (left, top)."""
    ids = torch.tensor([[original[1], original[0], crop_top_left[1], crop_top_left[0], target[1], target[0]]],
                       device=device, dtype=dtype)
    return ids.repeat(batch, 1)

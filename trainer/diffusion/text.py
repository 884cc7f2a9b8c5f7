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
    # Prompts of different lengths (Z-Image: each prompt's real tokens only): (batch, tokens), True where a
    # token is the prompt's; the rest of ``hidden`` is padding.  None: every row is whole.
    mask: torch.Tensor | None = None

    def to(self, device: str | torch.device, dtype: torch.dtype | None = None) -> TextConditioning:
        return TextConditioning(self.hidden.to(device, dtype),
                                None if self.pooled is None else self.pooled.to(device, dtype),
                                None if self.mask is None else self.mask.to(device))

    def select(self, index: torch.Tensor | slice) -> TextConditioning:
        """Some rows; padding no row of them needs is cut off (one prompt alone is stored whole, unpadded)."""
        hidden, mask = self.hidden[index], None if self.mask is None else self.mask[index]
        if mask is not None:
            length = int(mask.sum(dim=1).max()) if len(mask) else 0
            hidden, mask = hidden[:, :length], mask[:, :length]
            if bool(mask.all()):
                mask = None
        return TextConditioning(hidden, None if self.pooled is None else self.pooled[index], mask)

    def sequences(self) -> list[torch.Tensor]:
        """Each row's real tokens, (tokens, dim) each: what a transformer taking variable-length prompts reads."""
        if self.mask is None:
            return list(self.hidden.unbind(0))
        return [row[keep] for row, keep in zip(self.hidden, self.mask, strict=True)]

    @staticmethod
    def from_sequences(sequences: list[torch.Tensor]) -> TextConditioning:
        """Rows of different lengths, (tokens, dim) each, padded with zeros to the longest, with their mask."""
        hidden = torch.nn.utils.rnn.pad_sequence(sequences, batch_first=True)
        lengths = [len(sequence) for sequence in sequences]
        if len(set(lengths)) <= 1:
            return TextConditioning(hidden)
        mask = torch.arange(hidden.shape[1], device=hidden.device)[None, :] < torch.tensor(
            lengths, device=hidden.device)[:, None]
        return TextConditioning(hidden, mask=mask)

    @staticmethod
    def cat(parts: list[TextConditioning]) -> TextConditioning:
        pooled = [p.pooled for p in parts]
        pooled_cat = None if pooled[0] is None else torch.cat(pooled)  # type: ignore[arg-type]
        if all(p.mask is None for p in parts) and len({p.hidden.shape[1] for p in parts}) <= 1:
            return TextConditioning(torch.cat([p.hidden for p in parts]), pooled_cat)
        joined = TextConditioning.from_sequences([row for p in parts for row in p.sequences()])
        return TextConditioning(joined.hidden, pooled_cat, joined.mask)


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

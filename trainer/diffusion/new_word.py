"""Textual inversion: a new word in the CLIP text encoders whose embedding vectors are what trains.

The word (``embedding.token``, e.g. ``<my-dog>``) takes ``embedding.vectors`` tokens: ``<my-dog>``, ``<my-dog>_1``,
… — the names diffusers' ``load_textual_inversion`` gives a multi-vector embedding, so the pipeline's own
``maybe_convert_prompt`` expands the word in a prompt exactly as training does.  Each encoder's token embedding
is wrapped (:class:`NewTokens`): the original matrix stays frozen and bitwise unchanged, and only the new rows —
one small fp32 parameter — reach the optimizer and the checkpoints.

The file is the one Automatic1111, ComfyUI and diffusers read: ``emb_params`` (vectors × width) for a model with
one text encoder, ``clip_l`` and ``clip_g`` for SDXL's two.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from trainer.errors import InputError


class NewTokens(nn.Module):
    """A token embedding with new rows after the vocabulary: ids below ``first_id`` read the frozen matrix, the
    rest read ``vectors`` (trained)."""

    def __init__(self, base: nn.Embedding, vectors: torch.Tensor) -> None:
        super().__init__()
        self.base = base
        self.first_id = base.num_embeddings
        self.vectors = nn.Parameter(vectors)

    @property
    def weight(self) -> torch.Tensor:  # what code reading ``token_embedding.weight`` (dtype, device) expects
        return self.base.weight

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        out = self.base(ids.clamp(max=self.first_id - 1))
        new = ids >= self.first_id
        picked = self.vectors[(ids - self.first_id).clamp(min=0, max=len(self.vectors) - 1)]
        return torch.where(new.unsqueeze(-1), picked.to(out.dtype), out)


@dataclass
class NewWord:
    token: str
    names: list[str]  # the tokens it takes in a prompt: token, token_1, …
    embeddings: list[NewTokens]  # one per text encoder

    def expand(self, text: str) -> str:
        """``text`` with the word replaced by all its tokens, as diffusers' ``maybe_convert_prompt`` does."""
        return text.replace(self.token, " ".join(self.names)) if len(self.names) > 1 else text

    def parameters(self) -> list[nn.Parameter]:
        return [embedding.vectors for embedding in self.embeddings]


def token_names(token: str, vectors: int) -> list[str]:
    return [token] + [f"{token}_{i}" for i in range(1, vectors)]


def add_new_word(tokenizers: list, encoders: list[nn.Module], token: str, init_text: str, vectors: int,
                 labels: list[str]) -> NewWord:
    """Add the word's tokens to every tokenizer and its vectors to every encoder, each vector starting from the
    embedding of ``init_text``'s tokens in turn (repeated to fill them, as kohya starts them)."""
    names = token_names(token, vectors)
    for tokenizer, label in zip(tokenizers, labels, strict=True):
        vocabulary = tokenizer.get_vocab()
        known = [name for name in names if name in vocabulary or f"{name}</w>" in vocabulary]
        if known:
            raise InputError(f"embedding.token: {known[0]!r} is already a word the {label} knows; training it would "
                             "change every prompt that uses it — choose a new word, such as <my-subject>")
    embeddings = []
    for tokenizer, encoder, label in zip(tokenizers, encoders, labels, strict=True):
        source = tokenizer(init_text, add_special_tokens=False).input_ids
        if not source:
            raise InputError(f"embedding.init_text: {init_text!r} gives the {label} no tokens; write a word")
        tokenizer.add_tokens(names)
        base: nn.Embedding = encoder.get_input_embeddings()
        if len(tokenizer) != base.num_embeddings + vectors:
            raise InputError(f"embedding.token: the {label}'s tokenizer has {len(tokenizer) - vectors} tokens and "
                             f"its embedding {base.num_embeddings} rows; this model's files do not match")
        with torch.no_grad():
            start = base.weight[torch.tensor([source[i % len(source)] for i in range(vectors)])]
        wrapped = NewTokens(base, start.detach().float().clone())
        encoder.set_input_embeddings(wrapped)
        embeddings.append(wrapped)
    return NewWord(token, names, embeddings)


def embedding_keys(encoder_count: int, open_clip: list[bool]) -> list[str]:
    """The file's key for each encoder's vectors: ``emb_params`` with one text encoder (SD 1.x/2.x), else
    ``clip_l`` (OpenAI's CLIP-L) and ``clip_g`` (OpenCLIP bigG), as Automatic1111 and ComfyUI read SDXL's."""
    if encoder_count == 1:
        return ["emb_params"]
    return ["clip_g" if is_open_clip else "clip_l" for is_open_clip in open_clip]


def export_embedding(path: Path, word: NewWord, open_clip: list[bool], metadata: dict[str, str]) -> Path:
    """The trained vectors as an embedding file (atomic)."""
    from safetensors.torch import save

    from trainer.fsutil import atomic_write_bytes

    keys = embedding_keys(len(word.embeddings), open_clip)
    tensors = {key: embedding.vectors.detach().to("cpu", torch.float32).contiguous()
               for key, embedding in zip(keys, word.embeddings, strict=True)}
    atomic_write_bytes(path, save(tensors, metadata={"kamaal.token": word.token, **metadata}))
    return path


def embedding_file_name(token: str) -> str:
    """The file's name: the word without characters a file name cannot hold (Automatic1111 calls an embedding
    by its file's name, ComfyUI by ``embedding:NAME``)."""
    cleaned = "".join(c for c in token if c.isalnum() or c in "-_.").strip(".") or "embedding"
    return f"{cleaned}.safetensors"

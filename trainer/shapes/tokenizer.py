"""A small but genuine CLIP BPE vocabulary for the shapes model: every world word is one token.

CLIP's tokenizer is byte-level BPE: 512 byte symbols (each with and without the end-of-word mark),
then one token per merge, then the two specials.  We keep all byte symbols, so any text still
tokenizes (unknown words fall back to pieces), and add just the merges that turn each of the
world's words, plus a few reserved ones (``sks``, ``teal``, …), into a single token.

Merges are found greedily: tokenize the word with the merges so far, join its first two pieces,
repeat.  A new merge always ranks after every older one, so it can never change how an earlier
word tokenizes (its own merges always win), and the vocabulary stays a valid CLIP BPE that
``CLIPTokenizer.from_pretrained`` reads offline.
"""

from __future__ import annotations

import itertools
from pathlib import Path

from trainer.models.clip_vocab import vocabulary, write_tokenizer_files
from trainer.shapes.world import world_words

END_OF_WORD = "</w>"


def _bpe(word: str, ranks: dict[tuple[str, str], int]) -> list[str]:
    """CLIP's BPE on one lower-case word: repeatedly join the adjacent pair with the lowest rank."""
    pieces = [*word[:-1], word[-1] + END_OF_WORD]
    while len(pieces) > 1:
        pairs = [(ranks.get((a, b)), i) for i, (a, b) in enumerate(itertools.pairwise(pieces))]
        known = [(rank, i) for rank, i in pairs if rank is not None]
        if not known:
            break
        _, i = min(known)
        pieces = [*pieces[:i], pieces[i] + pieces[i + 1], *pieces[i + 2:]]
    return pieces


def merges_for(words: list[str]) -> list[str]:
    """BPE merge lines ("a b") that make each of ``words`` a single token."""
    merges: list[str] = []
    ranks: dict[tuple[str, str], int] = {}
    made: set[str] = set()
    for word in words:
        while len(pieces := _bpe(word, ranks)) > 1:
            pair = (pieces[0], pieces[1])
            joined = pair[0] + pair[1]
            if joined in made:  # two merges making one token would give it two ids
                raise ValueError(f"cannot make {word!r} a single token: {joined!r} already exists")
            ranks[pair] = len(merges)
            merges.append(f"{pair[0]} {pair[1]}")
            made.add(joined)
    return merges


# Prompts are padded to this many tokens, not CLIP's 77: the longest world caption is 10 tokens with
# its start and end, and a 77-token context made every pretraining step three times slower.
CONTEXT_TOKENS = 16


def write_shapes_tokenizer(out_dir: Path, words: list[str] | None = None,
                           context_tokens: int = CONTEXT_TOKENS) -> int:
    """Write vocab.json, merges.txt and configs; returns the vocabulary size."""
    merges = merges_for(words if words is not None else world_words())
    write_tokenizer_files(merges, out_dir, model_max_length=context_tokens)
    return len(vocabulary(merges))

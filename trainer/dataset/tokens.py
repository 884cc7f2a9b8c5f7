"""Counting CLIP tokens exactly without torch or transformers, for the caption token counter.

Stable Diffusion's text encoders use OpenAI CLIP's byte-level BPE; its merges ship in
``resources/tokenizers/clip/merges.txt`` (see ``trainer.models.clip_vocab``).  This module
re-implements CLIP's tokenizer in plain Python over those merges (the algorithm of CLIP's own
``simple_tokenizer``), with token ids computed from merge ranks the way ``clip_vocab.vocabulary``
numbers them — a test compares ids with transformers' ``CLIPTokenizer``.

Why plain Python rather than the Rust ``tokenizers`` package: building its BPE holds the GIL for
~140 ms, which froze the GUI's event loop while it loaded on a worker thread; here the build is
a Python loop that yields the GIL every few milliseconds.  ``load_clip_tokenizer`` runs once per
process (cached), on a worker thread in the GUI; counting a caption then takes microseconds.
Without the merges file, ``captions.estimate_clip_tokens`` gives an estimate.

Standard library only (``regex`` for CLIP's exact pre-tokenizer pattern when it is installed).
"""

from __future__ import annotations

import functools
import itertools
import re
import unicodedata
from collections.abc import Sequence
from pathlib import Path

from trainer.dataset.captions import Tokenizer, estimate_clip_tokens

CLIP_DIR = Path(__file__).resolve().parents[2] / "resources" / "tokenizers" / "clip"
try:  # CLIP's own pattern needs Unicode classes; ``regex`` ships with transformers
    import regex

    _PIECES = regex.compile(r"""'s|'t|'re|'ve|'m|'ll|'d|[\p{L}]+|[\p{N}]|[^\s\p{L}\p{N}]+""", regex.IGNORECASE)
except ImportError:  # the same classes, as close as ``re`` gets
    _PIECES = re.compile(r"'s|'t|'re|'ve|'m|'ll|'d|[^\W\d_]+|\d|[^\s\w]+|_+", re.IGNORECASE)  # type: ignore[assignment]
_WHITESPACE = re.compile(r"\s+")


def bytes_to_unicode() -> dict[int, str]:
    """CLIP's reversible byte → printable character table (GPT-2's), so BPE never sees control bytes.

    Lives here, in the light dataset library, so the GUI's token counter and the tokenizer builder
    (``trainer.models.clip_vocab``) share one copy."""
    printable = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1), *range(ord("®"), ord("ÿ") + 1)]
    codes = printable[:]
    extra = 0
    for byte in range(256):
        if byte not in printable:
            printable.append(byte)
            codes.append(256 + extra)
            extra += 1
    return dict(zip(printable, (chr(code) for code in codes), strict=True))


_BYTE_CHARS = bytes_to_unicode()
_SYMBOL_IDS = {char: index for index, char in enumerate(_BYTE_CHARS.values())}  # ids 0–255; +256 with "</w>"


class ClipBpe:
    """CLIP's BPE over a merges list; ``encode(text)`` gives the token ids without start/end."""

    def __init__(self, merges: Sequence[str]) -> None:
        self.ranks: dict[tuple[str, str], int] = {}
        for rank, line in enumerate(merges):
            first, _, second = line.partition(" ")
            self.ranks[(first, second)] = rank
        self._cache: dict[str, list[int]] = {}

    def _word(self, word: str) -> list[int]:
        cached = self._cache.get(word)
        if cached is not None:
            return cached
        symbols = [*word[:-1], word[-1] + "</w>"]
        ids = [_SYMBOL_IDS[char] for char in word[:-1]] + [256 + _SYMBOL_IDS[word[-1]]]
        while len(symbols) > 1:
            ranked = [(self.ranks.get(pair, -1), pair) for pair in itertools.pairwise(symbols)]
            candidates = [(rank, pair) for rank, pair in ranked if rank >= 0]
            if not candidates:
                break
            rank, (first, second) = min(candidates)
            merged_symbols: list[str] = []
            merged_ids: list[int] = []
            i = 0
            while i < len(symbols):  # every occurrence of the best pair, left to right
                if i + 1 < len(symbols) and symbols[i] == first and symbols[i + 1] == second:
                    merged_symbols.append(first + second)
                    merged_ids.append(512 + rank)
                    i += 2
                else:
                    merged_symbols.append(symbols[i])
                    merged_ids.append(ids[i])
                    i += 1
            symbols, ids = merged_symbols, merged_ids
        if len(self._cache) < 50_000:
            self._cache[word] = ids
        return ids

    def encode(self, text: str) -> list[int]:
        text = _WHITESPACE.sub(" ", unicodedata.normalize("NFC", text)).strip().lower()
        ids: list[int] = []
        for piece in _PIECES.findall(text):
            ids += self._word("".join(_BYTE_CHARS[byte] for byte in piece.encode("utf-8")))
        return ids


@functools.lru_cache(maxsize=4)
def load_clip_tokenizer(folder: Path = CLIP_DIR) -> Tokenizer | None:
    """A function ``text → token ids`` (start/end excluded), or ``None`` without a readable merges file."""
    try:
        lines = (Path(folder) / "merges.txt").read_text(encoding="utf-8").split("\n")
    except (OSError, UnicodeDecodeError):
        return None
    merges = [line for line in lines[1:] if line]  # the first line is a header ("#version: 0.2")
    if not merges:
        return None
    return ClipBpe(merges).encode


def count_clip_tokens(text: str, tokenizer: Tokenizer | None) -> tuple[int, bool]:
    """``(tokens, exact)``: exact with a tokenizer, else the conservative estimate."""
    if tokenizer is None:
        return estimate_clip_tokens(text), False
    return len(tokenizer(text)), True

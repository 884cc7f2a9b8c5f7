"""Bulk caption operations: what the panel's bulk bar applies to a selection of captions.

Pure functions on caption text (no files, no Qt), so the panel, scripts and tests share them.
Captions are comma-separated tags or plain sentences; the token operations work on whole
comma-separated parts *and* on whole words, so removing ``sks`` from ``"a photo of sks dog"``
gives ``"a photo of dog"`` and from ``"sks, dog"`` gives ``"dog"``, never ``"a photo of  dog"``.

Standard library only.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass

from trainer.dataset.captions import normalise_caption

OPERATIONS = ("add_token", "remove_token", "prefix", "suffix", "replace")


def _tidy(text: str) -> str:
    """Collapse whitespace and the empty parts a removal leaves behind (``"a, , b"`` → ``"a, b"``)."""
    parts = [normalise_caption(part) for part in text.split(",")]
    return ", ".join(part for part in parts if part)


def has_token(text: str, token: str) -> bool:
    return bool(token) and re.search(rf"(?<!\w){re.escape(token)}(?!\w)", text) is not None


def add_token(text: str, token: str) -> str:
    """Put ``token`` first (``"sks, a dog"``) unless the caption already holds it as a word."""
    token = token.strip()
    if not token or has_token(text, token):
        return text
    return f"{token}, {text}" if text.strip() else token


def remove_token(text: str, token: str) -> str:
    """Remove every whole-word occurrence of ``token``."""
    token = token.strip()
    if not token:
        return text
    return _tidy(re.sub(rf"(?<!\w){re.escape(token)}(?!\w)", "", text))


def prefix(text: str, value: str) -> str:
    value = value.strip()
    if not value or text.startswith(value):
        return text
    return f"{value} {text}".strip() if not value.endswith(",") else f"{value} {text}".strip(" ,")


def suffix(text: str, value: str) -> str:
    value = value.strip()
    if not value or text.endswith(value):
        return text
    return f"{text} {value}".strip() if value.startswith(",") else f"{text}, {value}".strip(" ,")


def replace(text: str, find: str, with_text: str) -> str:
    """Plain (not regular-expression) find and replace; the result is tidied."""
    return _tidy(text.replace(find, with_text)) if find else text


@dataclass(frozen=True)
class BulkEdit:
    """One bulk operation with its arguments; ``apply(text)`` gives the new caption."""

    operation: str
    value: str
    with_text: str = ""

    def __post_init__(self) -> None:
        if self.operation not in OPERATIONS:
            raise ValueError(f"unknown caption operation {self.operation!r}; known: {', '.join(OPERATIONS)}")

    def apply(self, text: str) -> str:
        functions: dict[str, Callable[[str], str]] = {
            "add_token": lambda t: add_token(t, self.value),
            "remove_token": lambda t: remove_token(t, self.value),
            "prefix": lambda t: prefix(t, self.value),
            "suffix": lambda t: suffix(t, self.value),
            "replace": lambda t: replace(t, self.value, self.with_text),
        }
        return functions[self.operation](text)


@dataclass(frozen=True)
class CaptionVariation:
    """How training varies a caption each time it draws the image (``dataset.caption_dropout`` …), as kohya's
    and OneTrainer's trainers do: the whole caption dropped (the model then learns the image unconditioned,
    which keeps classifier-free guidance working), tags after the first ``keep_tags`` shuffled and each dropped
    with ``tag_dropout``.  Tags are the parts between ``separator``s."""

    caption_dropout: float = 0.0
    tag_dropout: float = 0.0
    shuffle_tags: bool = False
    keep_tags: int = 0
    separator: str = ","

    @property
    def active(self) -> bool:
        return self.caption_dropout > 0 or self.varies_text

    @property
    def varies_text(self) -> bool:
        """Captions take more forms than "as written" and "empty": they cannot be encoded once and cached."""
        return self.shuffle_tags or self.tag_dropout > 0

    def apply(self, caption: str, rng) -> str:
        """One draw of ``caption`` as training sees it; ``rng`` a ``random.Random`` (its draws, in a fixed order,
        make a run and its resume see the same captions)."""
        if not self.active:
            return caption
        if self.caption_dropout > 0 and rng.random() < self.caption_dropout:
            return ""
        if not self.varies_text:
            return caption
        tags = [tag.strip() for tag in caption.split(self.separator)]
        tags = [tag for tag in tags if tag]
        kept, rest = tags[: self.keep_tags], tags[self.keep_tags:]
        if self.shuffle_tags:
            rng.shuffle(rest)
        if self.tag_dropout > 0:
            rest = [tag for tag in rest if rng.random() >= self.tag_dropout]
        joiner = self.separator + " " if self.separator.strip() else self.separator
        return joiner.join(kept + rest)

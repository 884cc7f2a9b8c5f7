"""Captions: reading them whatever their encoding, filling in a template, and counting tokens.

A caption lives in ``photo.txt`` beside ``photo.jpg`` (kohya_ss / OneTrainer).  Real folders
hold captions written by every editor there is, so reading never fails: UTF-8 (with or without
a byte-order mark), UTF-16 (Windows Notepad's "Unicode"), then Windows-1252 and Latin-1, and
the caller is told when a fallback was used.  Whitespace, newlines included, collapses to
single spaces: CLIP sees one line of text.  Only regular files are read, and at most
``MAX_CAPTION_BYTES`` of them (``safe_files``): a caption that is a FIFO, a device or a huge file
gets a status saying so, and training uses the template instead.

Token counts: Stable Diffusion's text encoder reads 77 tokens, of which 75 are the caption
(plus start and end).  Without a tokenizer the count is a deliberate over-estimate of CLIP's
BPE, so a warning may come slightly early but a truncated caption is never missed.

Standard library only.
"""

from __future__ import annotations

import enum
import math
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from trainer.dataset.safe_files import FileTooLarge, NotARegularFile, broken_link_reason, format_size, read_limited

CLIP_MAX_TOKENS = 77
CLIP_USABLE_TOKENS = CLIP_MAX_TOKENS - 2  # start-of-text and end-of-text take two
DEFAULT_TOKEN = "sks"
DEFAULT_TEMPLATE = "a photo of {token}"
# CLIP reads 75 tokens, a few hundred bytes; a caption of more than this is not a caption (a log, a
# misnamed dump) and reading it whole cost a run 8.9 GB of memory once.
MAX_CAPTION_BYTES = 64 * 1024

# Returns the token ids of a caption WITHOUT start/end tokens, for example
# ``lambda text: clip_tokenizer(text, add_special_tokens=False).input_ids``.
Tokenizer = Callable[[str], Sequence[int]]


class CaptionStatus(enum.StrEnum):
    OK = "ok"
    MISSING = "missing"
    EMPTY = "empty"
    DIRECTORY = "directory"
    UNREADABLE = "unreadable"
    NOT_A_FILE = "not_a_file"  # a FIFO, device or socket: never opened for reading
    TOO_LARGE = "too_large"  # over MAX_CAPTION_BYTES: not read


@dataclass(frozen=True)
class Caption:
    """A caption file as read: normalised text ("" unless OK), and how it was decoded."""

    path: Path | None
    status: CaptionStatus
    text: str = ""
    encoding: str | None = None  # "utf-8", "utf-16", "cp1252" or "latin-1"
    error: str | None = None  # why it was not read: "Permission denied", "a named pipe (FIFO)", "200.0 MB"

    @property
    def problem(self) -> str | None:
        """Why this caption file is not used, for a log line after its path; ``None`` when nothing is wrong."""
        if self.status is CaptionStatus.DIRECTORY:
            return "is a folder, not a caption file"
        if self.status is CaptionStatus.UNREADABLE:
            return f"cannot be read ({self.error})"
        if self.status is CaptionStatus.NOT_A_FILE:
            return f"is {self.error}, not a regular file, so it was not read"
        if self.status is CaptionStatus.TOO_LARGE:
            return (f"is {self.error}, over the {format_size(MAX_CAPTION_BYTES)} limit for a caption, "
                    "so it was not read")
        return None

    @property
    def fallback_encoding(self) -> bool:
        """True when the file was not UTF-8 (or UTF-16 with a byte-order mark) and may read wrongly."""
        return self.encoding not in (None, "utf-8", "utf-16")


def decode_caption_bytes(data: bytes) -> tuple[str, str]:
    """Decode caption bytes, returning ``(text, encoding)``; never raises."""
    if data.startswith((b"\xff\xfe", b"\xfe\xff")):
        return data.decode("utf-16", errors="replace"), "utf-16"
    if len(data) >= 2 and len(data) % 2 == 0 and data.count(0) * 2 >= len(data) * 0.9:
        # UTF-16 without a byte-order mark: ASCII text with a zero byte every other position.
        encoding = "utf-16-le" if data[1::2].count(0) > data[0::2].count(0) else "utf-16-be"
        return data.decode(encoding, errors="replace"), encoding
    for encoding in ("utf-8-sig", "cp1252"):
        try:
            return data.decode(encoding), "utf-8" if encoding == "utf-8-sig" else encoding
        except UnicodeDecodeError:
            continue
    return data.decode("latin-1"), "latin-1"  # every byte is a Latin-1 character


def normalise_caption(text: str) -> str:
    return " ".join(text.replace("\x00", " ").split())


def read_caption(path: Path | None) -> Caption:
    """Read a caption file; a missing, empty, directory, special, huge or unreadable caption is a status,
    not an error.  Never blocks (a FIFO is not opened for reading) and never reads more than
    ``MAX_CAPTION_BYTES``."""
    if path is None:
        return Caption(None, CaptionStatus.MISSING)
    path = Path(path)
    try:
        data = read_limited(path, MAX_CAPTION_BYTES)
    except NotARegularFile as error:
        if error.kind == "a folder":
            return Caption(path, CaptionStatus.DIRECTORY)
        return Caption(path, CaptionStatus.NOT_A_FILE, error=error.kind)
    except FileTooLarge as error:
        return Caption(path, CaptionStatus.TOO_LARGE, error=format_size(error.size))
    except FileNotFoundError:
        link = broken_link_reason(path)
        if link is not None:
            return Caption(path, CaptionStatus.UNREADABLE, error=link)
        return Caption(path, CaptionStatus.MISSING)
    except (OSError, ValueError) as error:  # ValueError: a NUL in the name
        link = broken_link_reason(path)
        return Caption(path, CaptionStatus.UNREADABLE,
                       error=link or (error.strerror if isinstance(error, OSError) else None) or str(error))
    text, encoding = decode_caption_bytes(data)
    text = normalise_caption(text)
    return Caption(path, CaptionStatus.OK if text else CaptionStatus.EMPTY, text, encoding)


def fill_template(template: str = DEFAULT_TEMPLATE, token: str = DEFAULT_TOKEN) -> str:
    # str.replace rather than str.format: a template may contain other braces.
    return template.replace("{token}", token)


def caption_text(caption: Caption, template: str = DEFAULT_TEMPLATE, token: str = DEFAULT_TOKEN) -> str:
    """The text training uses: the caption, or the template when there is no usable caption."""
    return caption.text if caption.status is CaptionStatus.OK else fill_template(template, token)


# CLIP's pre-tokenizer: contractions, runs of letters, single digits, runs of other symbols.
_PIECES = re.compile(r"'(?:s|t|re|ve|m|ll|d)|[^\W\d_]+|\d|[^\s\w]+|_+", re.IGNORECASE)


def _estimate_piece(piece: str) -> int:
    if piece[0].isdigit() or piece.startswith("'"):
        return 1
    if not piece[0].isalpha():
        return len(piece)  # punctuation: BPE may merge a run, counting each is the safe side
    ascii_letters = sum(1 for char in piece if char.isascii())
    # CLIP's vocabulary holds most English words up to ~8 letters whole; longer or rarer words
    # split into pieces of roughly 4–6 letters.  Non-Latin letters cost at least one token each.
    ascii_tokens = 1 + math.ceil(max(0, ascii_letters - 8) / 6) if ascii_letters else 0
    return ascii_tokens + (len(piece) - ascii_letters)


def estimate_clip_tokens(text: str) -> int:
    """A conservative (high) estimate of CLIP's token count for ``text``, start/end excluded."""
    return sum(_estimate_piece(piece) for piece in _PIECES.findall(text.lower()))


def count_tokens(text: str, tokenizer: Tokenizer | None = None) -> int:
    """Tokens of ``text`` without start/end: exact with a tokenizer, else ``estimate_clip_tokens``."""
    return len(tokenizer(text)) if tokenizer is not None else estimate_clip_tokens(text)


def too_long(token_count: int) -> bool:
    return token_count > CLIP_USABLE_TOKENS

"""Finding duplicate images: exact (content hash) and near (perceptual difference hash).

A duplicate silently doubles an image's weight in training; a near-duplicate (the same photo
resized, re-saved or slightly brightened) does the same, less obviously.  The perceptual hash
is a dHash (Krawetz): shrink to 9×8 gray, one bit per "is the right neighbour brighter".  It
ignores size, compression and small brightness changes but, like every gradient hash, gives
two flat images of different colours the same hash, so a pair also has to agree on a tiny
colour thumbnail before it counts as a near-duplicate.

numpy + Pillow + standard library only.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

HASH_BITS = 64
DEFAULT_MAX_DISTANCE = 6  # of 64 bits; resized/re-encoded copies land at 0–3, unrelated photos near 32
DEFAULT_MAX_COLOUR_DIFFERENCE = 32.0  # mean absolute difference of the 8×8 RGB thumbnails, 0–255
_POPCOUNT = np.array([bin(value).count("1") for value in range(256)], dtype=np.uint8)


def sha256_file(path: Path) -> str:
    with open(path, "rb") as handle:
        return hashlib.file_digest(handle, "sha256").hexdigest()


@dataclass(frozen=True)
class Fingerprint:
    """What near-duplicate detection needs of one image: its dHash and an 8×8 RGB thumbnail."""

    dhash: int
    colours: bytes  # 8×8×3 uint8, row-major

    @classmethod
    def of(cls, image: Image.Image) -> Fingerprint:
        """Fingerprint an RGB image (any size; a small decoded preview is enough)."""
        # BOX averages every source pixel, which keeps the hash stable under JPEG noise.
        gray = np.asarray(image.convert("L").resize((9, 8), Image.Resampling.BOX), dtype=np.int16)
        bits = (gray[:, 1:] > gray[:, :-1]).reshape(-1)
        dhash = int.from_bytes(np.packbits(bits).tobytes(), "big")
        colours = image.convert("RGB").resize((8, 8), Image.Resampling.BOX).tobytes()
        return cls(dhash, colours)


def hamming(a: int, b: int) -> int:
    return (a ^ b).bit_count()


def exact_duplicates(digests: Sequence[str]) -> dict[int, int]:
    """Map the index of each later copy to the index of the first file with the same content."""
    first: dict[str, int] = {}
    copies: dict[int, int] = {}
    for index, digest in enumerate(digests):
        if digest in first:
            copies[index] = first[digest]
        else:
            first[digest] = index
    return copies


def near_duplicates(
    prints: Sequence[Fingerprint | None],
    *,
    max_distance: int = DEFAULT_MAX_DISTANCE,
    max_colour_difference: float = DEFAULT_MAX_COLOUR_DIFFERENCE,
    skip: Sequence[bool] | None = None,
) -> dict[int, tuple[int, int]]:
    """Map each later near-copy to ``(index of the earliest match, hash distance)``.

    ``None`` entries (images that could not be decoded) and ``skip`` entries (already reported
    as exact duplicates) take no part.  All pairs are compared, vectorised one row at a time,
    so memory stays linear: 10,000 images is 50 million comparisons, about a second.
    """
    kept = [(i, p) for i, p in enumerate(prints) if p is not None and not (skip and skip[i])]
    if len(kept) < 2:
        return {}
    indices = [i for i, _ in kept]
    hashes = np.array([p.dhash for _, p in kept], dtype=np.uint64)
    colours = np.stack([np.frombuffer(p.colours, dtype=np.uint8) for _, p in kept]).astype(np.int16)
    found: dict[int, tuple[int, int]] = {}
    for row in range(len(indices) - 1):
        if indices[row] in found:
            continue  # compare against the earliest copy only, so a chain reports one original
        xor = (hashes[row] ^ hashes[row + 1:]).view(np.uint8).reshape(-1, 8)
        distances = _POPCOUNT[xor].sum(axis=1, dtype=np.int32)
        for offset in np.flatnonzero(distances <= max_distance):
            other = row + 1 + int(offset)
            if indices[other] in found:
                continue
            difference = float(np.abs(colours[row] - colours[other]).mean())
            if difference <= max_colour_difference:
                found[indices[other]] = (indices[row], int(distances[offset]))
    return found

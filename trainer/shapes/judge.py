"""A small deterministic judge of generated shape pictures: which colour, which shape (no learned weights).

How it reads a picture:

1. the background is the median colour of the outer two-pixel frame;
2. the foreground is every pixel clearly far from it (an adaptive threshold, so blurry samples work);
3. the object is the largest 4-connected foreground component; one that runs off the picture is
   noise or texture, not an object (world shapes keep a margin);
4. its shape is the best template match: the object's mask cropped to its bounding box and resized
   to 24×24, compared (soft IoU, with a penalty for a different aspect ratio) with each world
   shape drawn the same way — an object that matches nothing well is "unknown";
5. its colour is the nearest palette colour to the median of its core pixels ("unknown" when far
   from all of them);
6. the demo emblem (a red ring around a blue square) is recognised by comparing the object's box,
   pixel by pixel, with the emblem's red / blue / background layout: each of the three parts must
   mostly show its own colour (the worst part's share is the score), so a plain red circle, whose
   ring part matches, still fails on its missing blue centre.

Pure numpy and Pillow: the GUI could use it, and it never changes between runs.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from functools import cache

import numpy as np
from PIL import Image

from trainer.shapes.world import (
    BACKGROUND_COLOURS,
    EMBLEM_COLOURS,
    NEW_COLOURS,
    SHAPE_COLOURS,
    SHAPES,
    emblem_masks,
    shape_mask,
)

GRID = 24  # side of the normalised object crop
MIN_CONTRAST = 48.0  # RGB distance from the background below which nothing counts as drawn
MIN_PIXELS = 12
SHAPE_THRESHOLD = 0.62  # best template score below this: the shape is "unknown"
COLOUR_THRESHOLD = 95.0  # RGB distance to the nearest palette colour above this: "unknown"
# The emblem's worst-matching part (background, ring, centre) must match at least this share of its
# pixels.  Measured: drawn emblems ≥ 0.80, their round trip through the shapes model's VAE 0.74–0.82,
# 300 world pictures 0.0.
EMBLEM_THRESHOLD = 0.6
PALETTE: dict[str, tuple[int, int, int]] = {**SHAPE_COLOURS, **NEW_COLOURS}
EMBLEM = "emblem"


@dataclass(frozen=True)
class Reading:
    """What the judge sees in one picture."""

    colour: str  # a palette name, or "unknown"
    shape: str  # a world shape, "emblem", or "unknown"
    shape_score: float  # the best template score, 0..1
    emblem_score: float  # agreement with the emblem layout, 0..1
    pixels: int  # size of the object in pixels (0: nothing drawn)
    rgb: tuple[float, float, float] | None = None  # the object's median core colour

    def distance_to(self, colour: str) -> float:
        """RGB distance of the object's colour to a palette colour (the image diagonal when none was seen)."""
        if self.rgb is None:
            return float(np.linalg.norm([255.0, 255.0, 255.0]))
        return float(np.linalg.norm(np.asarray(self.rgb) - np.asarray(PALETTE[colour], dtype=np.float32)))


def _rgb(image: Image.Image | np.ndarray) -> np.ndarray:
    array = np.asarray(image.convert("RGB") if isinstance(image, Image.Image) else image, dtype=np.float32)
    if array.ndim != 3 or array.shape[2] != 3:
        raise ValueError(f"expected an RGB image, got an array of shape {array.shape}")
    return array


def background_colour(pixels: np.ndarray) -> np.ndarray:
    frame = np.concatenate([pixels[:2].reshape(-1, 3), pixels[-2:].reshape(-1, 3),
                            pixels[:, :2].reshape(-1, 3), pixels[:, -2:].reshape(-1, 3)])
    return np.median(frame, axis=0)


def largest_component(mask: np.ndarray) -> np.ndarray:
    """The largest 4-connected region of a boolean mask (flood fill; pictures are 64×64)."""
    labels = np.zeros(mask.shape, dtype=np.int32)
    height, width = mask.shape
    best_label, best_size, label = 0, 0, 0
    for y0, x0 in zip(*np.nonzero(mask), strict=True):
        if labels[y0, x0]:
            continue
        label += 1
        labels[y0, x0] = label
        stack, size = [(y0, x0)], 0
        while stack:
            y, x = stack.pop()
            size += 1
            for ny, nx in ((y - 1, x), (y + 1, x), (y, x - 1), (y, x + 1)):
                if 0 <= ny < height and 0 <= nx < width and mask[ny, nx] and not labels[ny, nx]:
                    labels[ny, nx] = label
                    stack.append((ny, nx))
        if size > best_size:
            best_label, best_size = label, size
    return labels == best_label if best_label else np.zeros_like(mask)


def _box(mask: np.ndarray) -> tuple[int, int, int, int]:
    ys, xs = np.nonzero(mask)
    return int(ys.min()), int(ys.max()) + 1, int(xs.min()), int(xs.max()) + 1


def _normalised(values: np.ndarray, box: tuple[int, int, int, int]) -> np.ndarray:
    """The box's contents resized to GRID×GRID (bilinear), float."""
    top, bottom, left, right = box
    crop = values[top:bottom, left:right].astype(np.float32)
    if crop.ndim == 2:
        return np.asarray(Image.fromarray(crop, "F").resize((GRID, GRID), Image.Resampling.BILINEAR))
    channels = [np.asarray(Image.fromarray(crop[..., c], "F").resize((GRID, GRID), Image.Resampling.BILINEAR))
                for c in range(crop.shape[2])]
    return np.stack(channels, axis=-1)


@cache
def _templates() -> dict[str, tuple[np.ndarray, float]]:
    """Each world shape's normalised mask and aspect ratio (width / height), drawn large and centred."""
    templates = {}
    for shape in SHAPES:
        mask = shape_mask(shape, 32.0, 32.0, 26.0) > 0.5
        box = _box(mask)
        templates[shape] = (_normalised(mask, box), (box[3] - box[2]) / (box[1] - box[0]))
    return templates


@cache
def _emblem_layout() -> np.ndarray:
    """The emblem's normalised class map: 0 background, 1 ring colour, 2 centre colour."""
    ring, square = emblem_masks(32.0, 32.0, 28.0)
    layout = np.where(square > 0.5, 2, np.where(ring > 0.5, 1, 0))
    box = _box(layout > 0)
    return np.rint(_normalised(layout.astype(np.float32), box)).astype(np.int32)


def _shape_scores(component: np.ndarray, box: tuple[int, int, int, int]) -> dict[str, float]:
    crop = _normalised(component.astype(np.float32), box)
    aspect = (box[3] - box[2]) / (box[1] - box[0])
    scores = {}
    for shape, (template, template_aspect) in _templates().items():
        iou = float(np.minimum(crop, template).sum() / max(np.maximum(crop, template).sum(), 1e-6))
        scores[shape] = iou - 0.5 * abs(float(np.log(aspect / template_aspect)))
    return scores


def _nearest_colour(rgb: np.ndarray, names: Iterable[str]) -> tuple[str, float]:
    distances = {name: float(np.linalg.norm(rgb - np.asarray(PALETTE[name], dtype=np.float32))) for name in names}
    name = min(distances, key=distances.__getitem__)
    return name, distances[name]


def _emblem_score(pixels: np.ndarray, background: np.ndarray, box: tuple[int, int, int, int]) -> float:
    crop = _normalised(pixels, box)
    references = np.stack([background, np.asarray(PALETTE[EMBLEM_COLOURS[0]], dtype=np.float32),
                           np.asarray(PALETTE[EMBLEM_COLOURS[1]], dtype=np.float32)])
    distances = np.linalg.norm(crop[:, :, None, :] - references[None, None], axis=-1)
    classes = np.where(distances.min(axis=-1) < COLOUR_THRESHOLD, distances.argmin(axis=-1), -1)
    layout = _emblem_layout()
    return min(float((classes[layout == part] == part).mean()) for part in (0, 1, 2))


def read_image(image: Image.Image | np.ndarray) -> Reading:
    """Colour and shape of the one object in a picture (any size; the world's are 64×64)."""
    pixels = _rgb(image)
    background = background_colour(pixels)
    distance = np.linalg.norm(pixels - background, axis=-1)
    peak = float(np.percentile(distance, 99.5))
    if peak < MIN_CONTRAST:
        return Reading("unknown", "unknown", 0.0, 0.0, 0)
    component = largest_component(distance > max(MIN_CONTRAST, 0.45 * peak))
    count = int(component.sum())
    if count < MIN_PIXELS:
        return Reading("unknown", "unknown", 0.0, 0.0, count)
    box = _box(component)
    height, width = component.shape
    if box[0] == 0 or box[2] == 0 or box[1] == height or box[3] == width:
        # World objects keep a margin: something running off the picture is texture or noise, not a shape.
        return Reading("unknown", "unknown", 0.0, 0.0, count)
    scores = _shape_scores(component, box)
    best = max(scores, key=scores.__getitem__)
    shape = best if scores[best] >= SHAPE_THRESHOLD else "unknown"
    emblem = _emblem_score(pixels, background, box)
    if emblem >= EMBLEM_THRESHOLD:
        shape = EMBLEM
    # Core pixels only: the anti-aliased rim mixes in the background.
    core = component & (distance > 0.7 * float(distance[component].max()))
    median = np.median(pixels[core], axis=0)
    colour, gap = _nearest_colour(median, PALETTE)
    return Reading(colour if gap <= COLOUR_THRESHOLD else "unknown", shape, scores[best], emblem, count,
                   (float(median[0]), float(median[1]), float(median[2])))


def expectation(prompt: str, aliases: Mapping[str, str] | None = None) -> tuple[str | None, str | None]:
    """(colour, shape) a prompt asks for: the first palette word and the first shape word (or alias,
    e.g. ``{"sks": "emblem"}``); ``None`` where it names none.  The background's colour is not the
    shape's: only a colour word before the shape word counts."""
    words = re.findall(r"[a-z]+", prompt.lower())
    names = {**{shape: shape for shape in SHAPES}, EMBLEM: EMBLEM, **(aliases or {})}
    shape_at = next((i for i, word in enumerate(words) if word in names), len(words))
    colour = next((word for word in words[:shape_at] if word in PALETTE), None)
    return colour, names[words[shape_at]] if shape_at < len(words) else None


@dataclass(frozen=True)
class PromptScore:
    """How often a prompt's samples show what it asked for (``None``: the prompt did not ask)."""

    prompt: str
    samples: int
    colour: float | None
    shape: float | None
    both: float | None
    readings: tuple[Reading, ...]


def score_samples(prompt: str, images: Iterable[Image.Image | np.ndarray],
                  aliases: Mapping[str, str] | None = None) -> PromptScore:
    want_colour, want_shape = expectation(prompt, aliases)
    readings = tuple(read_image(image) for image in images)
    count = max(len(readings), 1)

    def share(hit: list[bool]) -> float:
        return sum(hit) / count

    colour_hits = [r.colour == want_colour for r in readings]
    shape_hits = [r.shape == want_shape for r in readings]
    colour = share(colour_hits) if want_colour else None
    shape = share(shape_hits) if want_shape else None
    both_hits = [(c or not want_colour) and (s or not want_shape) for c, s in zip(colour_hits, shape_hits, strict=True)]
    both = share(both_hits) if want_colour or want_shape else None
    return PromptScore(prompt, len(readings), colour, shape, both, readings)


def background_of(reading_image: Image.Image | np.ndarray) -> str:
    """The nearest world background name of a picture (for reports)."""
    median = background_colour(_rgb(reading_image))
    return min(BACKGROUND_COLOURS, key=lambda n: float(np.linalg.norm(median - np.asarray(BACKGROUND_COLOURS[n]))))

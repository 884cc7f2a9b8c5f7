"""The shapes world: procedural 64×64 pictures of simple shapes, each with a plain-English caption.

Everything is a pure function of a seed (Python's ``random.Random`` and numpy's PCG64 are stable
across platforms), so the model builder, the demo dataset and the tests all see the same pictures.
Shapes are drawn at 4× and box-filtered down: anti-aliased edges without any blur.

    scene = sample_scene(random.Random(0))   # what to draw (shape, colour, size, place, background)
    image = render(scene)                    # a 64×64 RGB PIL image
    scene.caption                            # "a small red circle on a white background"
"""

from __future__ import annotations

import math
import random
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

RGB = tuple[int, int, int]
IMAGE_SIZE = 64
_SUPERSAMPLE = 4

# Saturated, well separated colours: the judge tells them apart from a blurry sample's median.
SHAPE_COLOURS: dict[str, RGB] = {
    "red": (215, 35, 35), "orange": (245, 135, 20), "yellow": (240, 210, 30), "green": (35, 155, 55),
    "blue": (35, 75, 215), "purple": (135, 55, 185), "white": (245, 245, 245), "black": (25, 25, 25),
}
BACKGROUND_COLOURS: dict[str, RGB] = {"white": (242, 242, 236), "gray": (128, 128, 128), "black": (22, 22, 26)}
SHAPES: tuple[str, ...] = ("circle", "square", "triangle", "star", "cross", "diamond")
SIZES: dict[str, tuple[float, float]] = {"small": (7.0, 10.5), "large": (13.0, 20.0)}  # radius in pixels
# The demo concept: a red ring around a blue square.  Never drawn in the base model's training set.
EMBLEM_COLOURS: tuple[str, str] = ("red", "blue")
# Words the tokenizer knows but the base model never sees: rare tokens for new concepts, and a few
# words that fine-tuning tests teach (a new colour, a new shape name).
NEW_COLOURS: dict[str, RGB] = {"teal": (0, 150, 150)}
RESERVED_WORDS: tuple[str, ...] = ("sks", "ohwx", "zwx", "emblem", "shape", "teal", "pink", "hexagon", "ring",
                                   "photo", "of", "the", "with")
CAPTION_WORDS: tuple[str, ...] = ("a", "an", "on", "background", *SIZES, *SHAPE_COLOURS, "gray", *SHAPES)


def world_words() -> list[str]:
    """Every word the tokenizer must know as one token, without repeats, in a stable order."""
    return list(dict.fromkeys([*CAPTION_WORDS, *RESERVED_WORDS]))


@dataclass(frozen=True)
class Scene:
    """What one picture shows; ``render`` turns it into pixels, ``caption`` into words."""

    shape: str
    colour: str
    background: str
    size: str
    radius: float
    centre: tuple[float, float]
    texture_seed: int | None  # None: a plain background; else the seed of its faint texture
    say_size: bool = True
    say_background: bool = True

    @property
    def caption(self) -> str:
        words = [self.size] if self.say_size else []
        words += [self.colour, self.shape]
        article = "an" if words[0][0] in "aeiou" else "a"
        text = f"{article} {' '.join(words)}"
        return f"{text} on a {self.background} background" if self.say_background else text


def sample_scene(rng: random.Random, shapes: tuple[str, ...] = SHAPES,
                 colours: tuple[str, ...] = tuple(SHAPE_COLOURS)) -> Scene:
    """One random scene.  A shape never takes its background's colour (white on white is invisible)."""
    shape = rng.choice(shapes)
    background = rng.choice(tuple(BACKGROUND_COLOURS))
    colour = rng.choice([c for c in colours if c != background])
    size = rng.choice(tuple(SIZES))
    radius = rng.uniform(*SIZES[size])
    margin = radius + 2
    centre = (rng.uniform(margin, IMAGE_SIZE - margin), rng.uniform(margin, IMAGE_SIZE - margin))
    texture_seed = rng.randrange(2**31) if rng.random() < 0.5 else None
    # Captions vary in length so that short prompts ("a red circle") are in distribution too.
    return Scene(shape, colour, background, size, radius, centre, texture_seed,
                 say_size=rng.random() < 0.5, say_background=rng.random() < 0.8)


def _polygon(cx: float, cy: float, points: list[tuple[float, float]]) -> list[tuple[float, float]]:
    return [(cx + x, cy + y) for x, y in points]


def shape_outline(shape: str, cx: float, cy: float, r: float) -> list[list[tuple[float, float]]]:
    """Filled polygons (one or more) of a shape of radius ``r`` centred on (cx, cy); axis-aligned, upright."""
    if shape == "square":
        s = 0.85 * r  # the same visual weight as a circle of radius r
        return [_polygon(cx, cy, [(-s, -s), (s, -s), (s, s), (-s, s)])]
    if shape == "triangle":
        return [_polygon(cx, cy, [(0, -r), (r, 0.8 * r), (-r, 0.8 * r)])]
    if shape == "diamond":
        return [_polygon(cx, cy, [(0, -r), (0.8 * r, 0), (0, r), (-0.8 * r, 0)])]
    if shape == "star":
        points = []
        for k in range(10):
            radius = r if k % 2 == 0 else 0.45 * r
            angle = -math.pi / 2 + k * math.pi / 5
            points.append((radius * math.cos(angle), radius * math.sin(angle)))
        return [_polygon(cx, cy, points)]
    if shape == "cross":
        w = 0.34 * r
        return [_polygon(cx, cy, [(-r, -w), (r, -w), (r, w), (-r, w)]),
                _polygon(cx, cy, [(-w, -r), (w, -r), (w, r), (-w, r)])]
    if shape == "hexagon":
        return [_polygon(cx, cy, [(r * math.cos(k * math.pi / 3), r * math.sin(k * math.pi / 3)) for k in range(6)])]
    raise ValueError(f"unknown shape {shape!r}")


def _coverage(draw_on: ImageDraw.ImageDraw, shape: str, cx: float, cy: float, r: float) -> None:
    k = _SUPERSAMPLE
    if shape == "circle":
        draw_on.ellipse(((cx - r) * k, (cy - r) * k, (cx + r) * k, (cy + r) * k), fill=255)
        return
    for polygon in shape_outline(shape, cx, cy, r):
        draw_on.polygon([(x * k, y * k) for x, y in polygon], fill=255)


def shape_mask(shape: str, cx: float, cy: float, r: float, size: int = IMAGE_SIZE) -> np.ndarray:
    """Anti-aliased coverage of one shape, float32 in [0, 1], (size, size)."""
    big = Image.new("L", (size * _SUPERSAMPLE, size * _SUPERSAMPLE), 0)
    _coverage(ImageDraw.Draw(big), shape, cx, cy, r)
    return np.asarray(big.reduce(_SUPERSAMPLE), dtype=np.float32) / 255.0


def background_pixels(colour: RGB, texture_seed: int | None, size: int = IMAGE_SIZE) -> np.ndarray:
    """A plain background, or a lightly textured one (faint noise plus a gentle gradient), float32 (H, W, 3)."""
    pixels = np.empty((size, size, 3), dtype=np.float32)
    pixels[:] = colour
    if texture_seed is not None:
        rng = np.random.Generator(np.random.PCG64(texture_seed))
        noise = rng.normal(0.0, 4.0, (size, size, 1)).astype(np.float32)
        angle = rng.uniform(0, 2 * np.pi)
        ramp = np.cos(angle) * np.arange(size)[None, :] + np.sin(angle) * np.arange(size)[:, None]
        pixels += noise + (ramp / size * 10.0 - 5.0)[..., None].astype(np.float32)
    return pixels


def _paint(pixels: np.ndarray, mask: np.ndarray, colour: RGB) -> np.ndarray:
    alpha = mask[..., None]
    return pixels * (1 - alpha) + np.asarray(colour, dtype=np.float32) * alpha


def _to_image(pixels: np.ndarray) -> Image.Image:
    return Image.fromarray(np.clip(np.rint(pixels), 0, 255).astype(np.uint8), "RGB")


def colour_rgb(name: str) -> RGB:
    return SHAPE_COLOURS.get(name) or NEW_COLOURS[name]


def render(scene: Scene) -> Image.Image:
    """The scene as a 64×64 RGB image."""
    pixels = background_pixels(BACKGROUND_COLOURS[scene.background], scene.texture_seed)
    mask = shape_mask(scene.shape, *scene.centre, scene.radius)
    return _to_image(_paint(pixels, mask, colour_rgb(scene.colour)))


def emblem_masks(cx: float, cy: float, r: float) -> tuple[np.ndarray, np.ndarray]:
    """(ring, square) coverage of the demo emblem: a ring of radius r, a square inside it with a gap.

    The ring is 0.45 r wide (6–9 px): a thinner one (0.26 r) came back from the shapes model's VAE as
    a brownish blur that the judge no longer read as the emblem, so no training could ever show it."""
    outer = shape_mask("circle", cx, cy, r)
    inner = shape_mask("circle", cx, cy, 0.55 * r)
    return np.clip(outer - inner, 0.0, 1.0), shape_mask("square", cx, cy, 0.38 * r)


def render_emblem(cx: float, cy: float, r: float, background: str = "white",
                  texture_seed: int | None = None) -> Image.Image:
    """The demo concept: a red ring around a blue square."""
    ring, square = emblem_masks(cx, cy, r)
    pixels = background_pixels(BACKGROUND_COLOURS[background], texture_seed)
    pixels = _paint(pixels, ring, SHAPE_COLOURS[EMBLEM_COLOURS[0]])
    return _to_image(_paint(pixels, square, SHAPE_COLOURS[EMBLEM_COLOURS[1]]))


def scene_rng(seed: int, index: int) -> random.Random:
    """The generator of picture ``index`` of the world with ``seed``: any picture can be made alone."""
    return random.Random(seed * 1_000_003 + index)


def world_samples(count: int, seed: int = 0, start: int = 0) -> Iterator[tuple[Image.Image, str, Scene]]:
    """``count`` pictures of the world: (image, caption, scene), the same for the same seed."""
    for index in range(start, start + count):
        scene = sample_scene(scene_rng(seed, index))
        yield render(scene), scene.caption, scene


def write_captioned(folder: Path, items: list[tuple[Image.Image, str]], stem: str) -> list[Path]:
    """PNG + same-named .txt caption per item (the kohya/OneTrainer folder convention)."""
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for index, (image, caption) in enumerate(items):
        path = folder / f"{stem}-{index}.png"
        image.save(path, optimize=True)
        path.with_suffix(".txt").write_text(caption, encoding="utf-8")
        paths.append(path)
    return paths


def emblem_instances(count: int = 6, seed: int = 0) -> list[Image.Image]:
    """The demo's instance images: the emblem at varied sizes and places, on a white background."""
    rng = random.Random(seed)
    images = []
    for _ in range(count):
        r = rng.uniform(14.0, 21.0)
        centre = (rng.uniform(r + 3, IMAGE_SIZE - r - 3), rng.uniform(r + 3, IMAGE_SIZE - r - 3))
        images.append(render_emblem(*centre, r, texture_seed=rng.randrange(2**31) if rng.random() < 0.5 else None))
    return images


def write_demo_dataset(folder: Path, count: int = 6, seed: int = 0, caption: str = "a sks shape") -> list[Path]:
    """Write the demo's DreamBooth instance set (``resources/demo/dataset``)."""
    return write_captioned(folder, [(image, caption) for image in emblem_instances(count, seed)], "emblem")


def new_colour_samples(count: int, colour: str = "teal", seed: int = 0) -> list[tuple[Image.Image, str]]:
    """Pictures of world shapes in a colour the base model never saw, captioned with its word."""
    rng = random.Random(seed)
    items = []
    for _ in range(count):
        scene = sample_scene(rng)
        scene = Scene(scene.shape, colour, scene.background, scene.size, scene.radius, scene.centre,
                      scene.texture_seed, scene.say_size, scene.say_background)
        items.append((render(scene), scene.caption))
    return items

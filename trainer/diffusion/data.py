"""Dataset folder → bucketed training batches, deterministic and resumable.

Images are listed and checked with the Qt-free ``trainer.dataset`` library; unreadable files
are skipped with a message naming each.  The edits the dataset panel keeps beside a folder
(``DatasetCache.for_folder``: removed images, edited captions, crops) apply here, so a run
trains on what the panel shows; the image files themselves are never written.  With masked
loss, each image's mask (``NAME.mask.png``) goes through the same crop, resize and flip as its
image; so do an edit family's control images (``trainer.dataset.pairs``), so a before/after pair stays aligned
pixel for pixel and lives in its target's bucket.  Every image goes to its aspect-ratio bucket; a batch holds
images of one bucket.  The batch order comes from a seeded generator whose state is saved in checkpoints,
so a resumed run sees the same batches as an uninterrupted one.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from trainer.dataset import (
    DatasetCache,
    DatasetImageError,
    assign_bucket,
    caption_text,
    list_images,
    load_rgb,
    read_caption,
)
from trainer.dataset.buckets import training_buckets as buckets_for_training
from trainer.dataset.masks import MaskError, load_mask
from trainer.dataset.pair_health import expected_control
from trainer.errors import InputError

Bucket = tuple[int, int]


@dataclass(frozen=True)
class Example:
    image: Path
    caption: str
    bucket: Bucket  # (width, height)
    size: tuple[int, int]  # original (width, height) after EXIF rotation
    crop: tuple[int, int, int, int] | None = None  # the user's crop (left, top, right, bottom), before bucketing
    concept: int = 0  # which concept it belongs to (``trainer.concepts``): its repeats and class set
    mask: Path | None = None  # its loss mask (``trainer.dataset.masks``), read when masked loss is on
    controls: tuple[Path, ...] = ()  # an edit family's control images, in reference order (``trainer.dataset.pairs``)


def collect_examples(folder: str, field: str, caption_for: Any, buckets: list[Bucket], no_upscale: bool,
                     caption_extension: str, logger: logging.Logger, concept: int = 0,
                     masks: bool = False, controls: int = 0, family_name: str = "") -> list[Example]:
    """Every usable image of ``folder``; ``caption_for(caption)`` gives the training caption.

    With ``masks`` (masked loss), each image's mask is read now, like the image: one that cannot be
    used (unreadable, another aspect ratio) leaves its image out, named in the log, because training
    that image everywhere is what its mask was drawn to prevent.

    With ``controls`` (an edit family ``family_name``, which takes that many references), each target's control
    images are read now too: a target without one is refused by name (an edit model learns nothing from an image
    alone), an unreadable control leaves its pair out, named in the log, and references beyond the family's count
    are left out, said once.
    """
    if not folder:
        raise InputError(f"{field}: no folder given")
    try:
        listing = list_images(Path(folder), caption_extension=caption_extension)
    except (FileNotFoundError, NotADirectoryError, PermissionError) as exc:
        raise InputError(f"{field}: {exc}") from None
    edits = DatasetCache.for_folder(Path(folder))
    removed = edits.removed()
    examples = []
    extra_said, ignored = False, 0
    for item in listing.items:
        if item.image in removed:
            continue
        try:
            # A full decode, not just the header: a truncated file must be skipped now, with its
            # name in the log, rather than crash the run when its batch comes up.
            image = load_rgb(item.image)
        except DatasetImageError as exc:
            logger.warning("Skipping %s: %s", item.image, exc)
            continue
        record = edits.read_crop(item.image)
        crop = record.box if record is not None and record.size == image.size else None  # stale for a changed image
        width, height = (crop[2] - crop[0], crop[3] - crop[1]) if crop else image.size
        bucket = assign_bucket(width, height, buckets, no_upscale)
        mask = item.mask if masks else None
        if mask is not None:
            try:
                load_mask(mask, image.size)
            except MaskError as exc:
                logger.warning("Skipping %s: its mask %s", item.image, exc.reason)
                continue
        caption = edits.read_caption(item.image) or read_caption(item.caption)
        if caption.problem is not None:  # a FIFO, a device, a huge file...: said, never read
            logger.warning("Caption %s %s; %s gets the default caption instead", caption.path, caption.problem,
                           item.image.name)
        pair: tuple[Path, ...] = ()
        if item.controls and not controls:
            ignored += 1
        if controls:
            if not item.controls:
                raise InputError(f"{field}: {item.image} has no control image ({expected_control(item.image)}), "
                                 f"and {family_name} trains on before/after pairs")
            pair = item.controls[:controls]
            if len(item.controls) > controls and not extra_said:
                logger.warning("%s takes %d control image(s) per pair; %s and other targets have more, which are "
                               "not used", family_name, controls, item.image.name)
                extra_said = True
            unreadable = _first_unreadable(pair)
            if unreadable is not None:
                logger.warning("Skipping %s: its control image %s", item.image, unreadable)
                continue
        examples.append(Example(item.image, caption_for(caption), bucket, image.size, crop, concept, mask, pair))
    if ignored:
        logger.warning("%s: %d image(s) have control images, which are ignored by %s (it trains on images alone; an "
                       "edit family such as Flux.1 Kontext trains on the pairs)", field, ignored, family_name)
    return examples


def _first_unreadable(paths: tuple[Path, ...]) -> str | None:
    """What is wrong with the first of ``paths`` that cannot be decoded (fully: a truncated file fails now, not when
    its batch comes up), or None."""
    for path in paths:
        try:
            load_rgb(path)
        except DatasetImageError as exc:
            return str(exc)
    return None


def training_buckets(resolution: int, min_side: int, max_side: int, bucketing: bool) -> list[Bucket]:
    return buckets_for_training(resolution, min_side, max_side, bucketing)  # the panel's preview uses the same


def caption_maker(template: str, token: str, fixed: str | None = None) -> Any:
    """Captions from the .txt files; a missing/empty one becomes ``fixed`` or the filled template."""
    def make(caption: Any) -> str:
        text = caption_text(caption, template, token)
        return fixed if fixed is not None and caption.status != "ok" else text
    return make


def load_pixels(example: Example, crop: str, flip: bool, generator: torch.Generator
                ) -> tuple[torch.Tensor, tuple[int, int]]:
    """The image resized to cover its bucket, cropped to it, maybe mirrored: (3, H, W) in [-1, 1].

    Returns the tensor and the crop's (left, top) offset (SDXL conditions on it).
    """
    pixels, _, offset = load_pixels_and_mask(example, crop, flip, generator)
    return pixels, offset


def load_pixels_and_mask(example: Example, crop: str, flip: bool, generator: torch.Generator
                         ) -> tuple[torch.Tensor, torch.Tensor | None, tuple[int, int]]:
    """:func:`load_pixels`, with the example's mask taken through the same steps: (1, H, W) in [0, 1], or None.

    The mask is cut by the user's crop, resized to the same size with the same filter, cut by the same
    bucket crop and mirrored by the same draw as the image, so each mask pixel stays on its image pixel.
    """
    pixels, mask, offset, _ = load_pair(example, crop, flip, generator)
    return pixels, mask, offset


def load_pair(example: Example, crop: str, flip: bool, generator: torch.Generator
              ) -> tuple[torch.Tensor, torch.Tensor | None, tuple[int, int], tuple[torch.Tensor, ...]]:
    """:func:`load_pixels_and_mask`, with the example's control images too: (3, H, W) in [−1, 1] each.

    A control image is first brought to its target's size (a pair made at another resolution, or a control saved
    smaller), then cut by the same user crop, resized, cut by the same bucket crop and mirrored by the same draw as the
    target — the draws are the target's, so a pair costs no extra random numbers and an unpaired run is unchanged.
    """
    from PIL import Image

    image = load_rgb(example.image)
    mask = load_mask(example.mask, image.size) if example.mask is not None else None
    controls = [load_rgb(path) for path in example.controls]
    controls = [c if c.size == image.size else c.resize(image.size, Image.Resampling.LANCZOS) for c in controls]
    if example.crop is not None:
        image = image.crop(example.crop)
        mask = mask.crop(example.crop) if mask is not None else None
        controls = [control.crop(example.crop) for control in controls]
    width, height = example.bucket
    scale = max(width / image.width, height / image.height)
    covering = (max(width, round(image.width * scale)), max(height, round(image.height * scale)))
    resized = image.resize(covering, Image.Resampling.LANCZOS)
    spare_x, spare_y = resized.width - width, resized.height - height
    if crop == "random":
        left = int(torch.randint(0, spare_x + 1, (1,), generator=generator))
        top = int(torch.randint(0, spare_y + 1, (1,), generator=generator))
    else:
        left, top = spare_x // 2, spare_y // 2
    box = (left, top, left + width, top + height)
    pixels = _tensor(resized.crop(box))
    control_pixels = [_tensor(control.resize(covering, Image.Resampling.LANCZOS).crop(box)) for control in controls]
    weights = None
    if mask is not None:
        fitted = mask.resize(covering, Image.Resampling.LANCZOS).crop(box)
        weights = torch.from_numpy(np.asarray(fitted, dtype=np.float32))[None] / 255.0
    if flip and bool(torch.rand((), generator=generator) < 0.5):
        pixels = pixels.flip(-1)
        weights = weights.flip(-1) if weights is not None else None
        control_pixels = [control.flip(-1) for control in control_pixels]
    return pixels, weights, (left, top), tuple(control_pixels)


def _tensor(image: Any) -> torch.Tensor:
    """An RGB image as (3, H, W) in [−1, 1]."""
    return torch.from_numpy(np.asarray(image, dtype=np.float32)).permute(2, 0, 1) / 127.5 - 1.0


class BucketBatches:
    """Yields lists of example indices, one bucket per batch, in a seeded, resumable order.

    ``repeats`` is one number for every example, or one per example (each concept has its own):
    an epoch lists each example that many times before shuffling, as kohya_ss's folder repeats do.
    """

    def __init__(self, examples: list[Example], batch_size: int, repeats: int | Sequence[int], seed: int) -> None:
        self.examples, self.batch_size = examples, batch_size
        self.repeats = [repeats] * len(examples) if isinstance(repeats, int) else list(repeats)
        if len(self.repeats) != len(examples):
            raise ValueError(f"{len(self.repeats)} repeat counts for {len(examples)} examples")
        self.generator = torch.Generator().manual_seed(seed)
        self.batches: list[list[int]] = []
        self.cursor = 0

    def _new_epoch(self) -> None:
        by_bucket: dict[Bucket, list[int]] = {}
        for index, example in enumerate(self.examples):
            by_bucket.setdefault(example.bucket, []).extend([index] * self.repeats[index])
        batches = []
        for bucket in sorted(by_bucket):
            members = by_bucket[bucket]
            order = torch.randperm(len(members), generator=self.generator).tolist()
            shuffled = [members[i] for i in order]
            batches += [shuffled[i:i + self.batch_size] for i in range(0, len(shuffled), self.batch_size)]
        order = torch.randperm(len(batches), generator=self.generator).tolist()
        self.batches, self.cursor = [batches[i] for i in order], 0

    def next(self) -> list[int]:
        if self.cursor >= len(self.batches):
            self._new_epoch()
        batch = self.batches[self.cursor]
        self.cursor += 1
        return batch

    def state(self) -> dict[str, Any]:
        return {"rng": self.generator.get_state(), "batches": [list(b) for b in self.batches], "cursor": self.cursor}

    def position(self) -> dict[str, Any]:
        """The state, without copying the epoch's batches (never changed in place, only replaced): cheap enough
        to take before every step, so a failed step can be rewound (:meth:`load`)."""
        return {"rng": self.generator.get_state(), "batches": self.batches, "cursor": self.cursor}

    def load(self, state: dict[str, Any]) -> None:
        """Continue from ``state``.  Batches saved larger than this stream's (a resume with a smaller memory plan:
        the batch split into accumulated micro-batches) are split, so the rest of the epoch sees the same images in
        the same order, ``batch_size`` at a time."""
        self.generator.set_state(state["rng"])
        self.batches = [list(b) for b in state["batches"]]
        self.cursor = int(state["cursor"])
        if any(len(batch) > self.batch_size for batch in self.batches[self.cursor:]):
            self.batches = [batch[i:i + self.batch_size] for batch in self.batches[self.cursor:]
                            for i in range(0, len(batch), self.batch_size)]
            self.cursor = 0

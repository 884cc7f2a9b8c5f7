"""Before/after pairs through the data pipeline (issue 28): a control image takes its target's bucket, the user's crop,
the bucket crop and the flip of its target, so a pair stays aligned pixel for pixel whatever the draws; a target
without its control is refused by name on an edit family, and a control is never trained as an image of its own."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image, ImageDraw

from trainer.diffusion import data as ds
from trainer.errors import InputError

LOG = logging.getLogger("test")


def asymmetric(size: tuple[int, int]) -> Image.Image:
    """An image whose every crop and mirror differs: a gradient with a mark near its top left corner."""
    width, height = size
    x = np.linspace(0, 255, width)[None, :, None]
    y = np.linspace(0, 255, height)[:, None, None]
    pixels = np.concatenate([np.broadcast_to(x, (height, width, 1)), np.broadcast_to(y, (height, width, 1)),
                             np.full((height, width, 1), 60.0)], axis=2).astype(np.uint8)
    image = Image.fromarray(pixels)
    ImageDraw.Draw(image).rectangle((width // 8, height // 8, width // 4, height // 5), fill=(255, 255, 255))
    return image


def collect(folder: Path, controls: int, family_name: str = "Flux.1 Kontext") -> list[ds.Example]:
    buckets = ds.training_buckets(64, 32, 128, True)
    return ds.collect_examples(str(folder), "dataset.path", ds.caption_maker("{token}", "sks"), buckets, False,
                               ".txt", LOG, controls=controls, family_name=family_name)


def test_a_pair_stays_aligned_through_bucket_crop_and_flip(tmp_path):
    """The control is the target at half the size (a pair saved at another resolution): after every random crop and
    flip it matches the target to resampling's error, while the target's own mirror image does not."""
    folder = tmp_path / "pairs"
    (folder / "target").mkdir(parents=True)
    (folder / "control").mkdir()
    target = asymmetric((120, 72))  # wide: a bucket crop has room to move
    target.save(folder / "target" / "a.png")
    target.resize((60, 36), Image.Resampling.LANCZOS).save(folder / "control" / "a.png")
    (folder / "target" / "a.txt").write_text("make it red", encoding="utf-8")
    [example] = collect(folder, controls=1)
    assert example.controls == (folder / "control" / "a.png",) and example.caption == "make it red"
    offsets, flips = set(), 0
    for seed in range(8):
        pixels, _, offset, (control,) = ds.load_pair(example, "random", True, torch.Generator().manual_seed(seed))
        offsets.add(offset)
        assert control.shape == pixels.shape
        mirrored = float((pixels.flip(-1) - pixels).abs().mean())
        assert float((control - pixels).abs().mean()) < 0.04 < mirrored
        unflipped, _, _, _ = ds.load_pair(example, "random", False, torch.Generator().manual_seed(seed))
        flips += not torch.equal(unflipped, pixels)
    assert len(offsets) > 1 and 0 < flips < 8  # the draws did move the crop and flip both ways


def test_an_edit_family_refuses_a_target_without_control_and_a_text_family_says_controls_are_ignored(tmp_path, caplog):
    folder = tmp_path / "suffix"
    folder.mkdir()
    for name in ("a", "b"):
        asymmetric((64, 64)).save(folder / f"{name}.png")
    asymmetric((64, 64)).save(folder / "a_control.png")
    refusal = r"dataset.path: .*b\.png has no control image \(b_control\.png or \.jpg beside it\), and Flux.1 Kontext"
    with pytest.raises(InputError, match=refusal):
        collect(folder, controls=1)
    with caplog.at_level(logging.WARNING):
        examples = collect(folder, controls=0, family_name="Flux.1")
    assert sorted(e.image.name for e in examples) == ["a.png", "b.png"]  # the control is no image of its own
    assert all(e.controls == () for e in examples)
    assert "1 image(s) have control images, which are ignored by Flux.1 (" in caplog.text


def test_an_unreadable_control_leaves_its_pair_out_by_name(tmp_path, caplog):
    folder = tmp_path / "suffix"
    folder.mkdir()
    for name in ("a", "b"):
        asymmetric((64, 64)).save(folder / f"{name}.png")
        asymmetric((64, 64)).save(folder / f"{name}_control.png")
    (folder / "b_control.png").write_bytes(b"not a png")
    with caplog.at_level(logging.WARNING):
        examples = collect(folder, controls=1)
    assert [e.image.name for e in examples] == ["a.png"]
    assert "b_control.png" in caplog.text

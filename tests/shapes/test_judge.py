"""The judge: near-perfect on the world's own pictures, and it finds nothing in noise."""

from __future__ import annotations

import numpy as np
import pytest

from trainer.shapes.judge import expectation, read_image, score_samples
from trainer.shapes.world import emblem_instances, new_colour_samples, world_samples


def test_reads_colour_and_shape_of_world_pictures():
    readings = [(read_image(image), scene) for image, _, scene in world_samples(300, seed=11)]
    colour = sum(r.colour == s.colour for r, s in readings) / len(readings)
    shape = sum(r.shape == s.shape for r, s in readings) / len(readings)
    assert colour >= 0.98 and shape >= 0.98


def test_finds_nothing_in_noise():
    rng = np.random.default_rng(0)
    pixel_noise = [rng.integers(0, 256, (64, 64, 3)).astype(np.uint8) for _ in range(30)]
    blobs = [(rng.normal(0, 1, (8, 8, 3)).repeat(8, 0).repeat(8, 1) * 60 + 128).clip(0, 255).astype(np.uint8)
             for _ in range(30)]
    readings = [read_image(image) for image in pixel_noise + blobs]
    assert sum(r.shape != "unknown" for r in readings) / len(readings) <= 0.1
    assert read_image(np.full((64, 64, 3), 128, np.uint8)).shape == "unknown"  # a blank picture


def test_recognises_the_demo_emblem_and_only_it():
    assert all(read_image(image).shape == "emblem" for image in emblem_instances(12, seed=3))
    assert not any(read_image(image).shape == "emblem" for image, _, _ in world_samples(300, seed=12))


def test_knows_the_new_colour():
    assert all(read_image(image).colour == "teal" for image, _ in new_colour_samples(20))


@pytest.mark.parametrize(("prompt", "wanted"), [
    ("a red circle on a white background", ("red", "circle")),
    ("a large blue star", ("blue", "star")),
    ("a sks shape", (None, "emblem")),
    ("a white background", ("white", None)),
])
def test_reads_what_a_prompt_asks_for(prompt, wanted):
    assert expectation(prompt, {"sks": "emblem"}) == wanted


def test_scores_a_prompt_over_samples():
    images = [image for image, _, scene in world_samples(60, seed=2) if (scene.colour, scene.shape) == ("red", "star")]
    images += [image for image, _, scene in world_samples(60, seed=2) if scene.shape == "circle"][:len(images)]
    score = score_samples("a red star", images)
    assert score.samples == len(images) and score.shape == pytest.approx(0.5)
    assert score.both is not None and score.both <= score.shape

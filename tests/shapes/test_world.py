"""The shapes world: same seed, same pictures; captions say what is drawn."""

from __future__ import annotations

import numpy as np

from trainer.shapes.world import (
    BACKGROUND_COLOURS,
    SHAPE_COLOURS,
    SHAPES,
    emblem_instances,
    sample_scene,
    scene_rng,
    world_samples,
    write_demo_dataset,
)


def test_same_seed_same_pictures_other_seed_other_pictures():
    first = [(np.asarray(image), caption) for image, caption, _ in world_samples(12, seed=5)]
    again = [(np.asarray(image), caption) for image, caption, _ in world_samples(12, seed=5)]
    other = [(np.asarray(image), caption) for image, caption, _ in world_samples(12, seed=6)]
    assert all((a == b).all() and ca == cb for (a, ca), (b, cb) in zip(first, again, strict=True))
    assert any((a != b).any() for (a, _), (b, _) in zip(first, other, strict=True))


def test_any_picture_can_be_made_alone():
    _, caption, _ = next(world_samples(1, seed=3, start=7))
    scene = sample_scene(scene_rng(3, 7))
    assert scene.caption == caption
    assert [c for _, c, _ in world_samples(8, seed=3)][7] == caption


def test_captions_name_colour_shape_and_background():
    for image, caption, scene in world_samples(200, seed=1):
        assert image.size == (64, 64) and image.mode == "RGB"
        assert scene.shape in SHAPES and scene.colour in SHAPE_COLOURS and scene.colour != scene.background
        words = caption.split()
        assert words[0] in ("a", "an") and f"{scene.colour} {scene.shape}" in caption
        assert (f"on a {scene.background} background" in caption) == scene.say_background
        assert (scene.size in words) == scene.say_size
        # The corner is background, and the shape keeps a margin from every edge.
        corner = np.asarray(image)[0, 0].astype(int)
        assert np.abs(corner - np.asarray(BACKGROUND_COLOURS[scene.background])).max() < 25


def test_the_world_is_varied():
    scenes = [scene for _, _, scene in world_samples(300, seed=0)]
    assert {s.shape for s in scenes} == set(SHAPES)
    assert {s.colour for s in scenes} == set(SHAPE_COLOURS)
    assert {s.background for s in scenes} == set(BACKGROUND_COLOURS)
    assert {s.size for s in scenes} == {"small", "large"}
    assert 0.3 < sum(s.texture_seed is not None for s in scenes) / len(scenes) < 0.7


def test_demo_dataset_is_reproducible(tmp_path):
    paths = write_demo_dataset(tmp_path / "a", count=3)
    again = write_demo_dataset(tmp_path / "b", count=3)
    assert [p.read_bytes() for p in paths] == [p.read_bytes() for p in again]
    assert all(p.with_suffix(".txt").read_text() == "a sks shape" for p in paths)
    assert len(emblem_instances(6)) == 6

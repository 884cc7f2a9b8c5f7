"""Several concepts in one run: every concept's images train with its own captions, repeats and
resolution, and prior preservation pairs each concept with its own class set."""

from __future__ import annotations

from collections import Counter

import pytest
from PIL import Image

from tests.diffusion.conftest import diffusion_config, draw_shapes, straight_and_resumed
from tests.trainer.helpers import run_in_process
from trainer.protocol import EXIT_BAD_INPUT, EXIT_OK, Failed, Sample


def draw_squares(folder, count):
    """Blue squares with no caption files: their captions come from the concept's template."""
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(count):
        image = Image.new("RGB", (64, 64), (250, 250, 250))
        image.paste((30, 60, 220), (12 + 4 * i, 12, 44 + 4 * i, 44))
        image.save(folder / f"square-{i:02d}.png")
    return folder


def spy_on_batches(monkeypatch) -> list[tuple[bool, list]]:
    """Every batch the job trains on: (is_class, [example, ...])."""
    from trainer.jobs.diffusion import DiffusionJob

    seen: list[tuple[bool, list]] = []
    original = DiffusionJob._batch_loss

    def spy(self, examples, is_class, indices):
        seen.append((is_class, [examples[i] for i in indices]))
        return original(self, examples, is_class, indices)

    monkeypatch.setattr(DiffusionJob, "_batch_loss", spy)
    return seen


@pytest.mark.slow
def test_both_concepts_train_with_their_captions_repeats_and_resolution(tmp_path, tiny_sd15, monkeypatch):
    circles = draw_shapes(tmp_path / "circles", 3)  # captioned "a red circle", ...
    squares = draw_squares(tmp_path / "squares", 2)
    seen = spy_on_batches(monkeypatch)
    # One epoch = 3 circles × 1 + 2 squares × 3 repeats = 9 draws at batch size 1.
    config = diffusion_config(
        tiny_sd15, circles, training={"steps": 9, "batch_size": 1, "eval_every": 9},
        concepts=[{"name": "squares", "path": str(squares), "instance_token": "zwx",
                   "caption_template": "a photo of {token} square", "repeats": 3, "resolution": 128}],
        sampling={"prompts": [], "inference_steps": 2, "at_start": False})
    code, rec = run_in_process(config, tmp_path / "run")
    assert code == EXIT_OK, rec.of(Failed)
    drawn = [example for is_class, batch in seen if not is_class for example in batch][:9]
    counts = Counter(example.image.name for example in drawn)
    assert counts == {"shape-00.png": 1, "shape-01.png": 1, "shape-02.png": 1,
                      "square-00.png": 3, "square-01.png": 3}
    for example in drawn:
        if example.image.parent == squares:
            assert example.concept == 1 and example.caption == "a photo of zwx square"
            assert example.bucket == (128, 128)  # the concept's own resolution
        else:
            assert example.concept == 0 and example.caption.endswith("circle") and example.bucket == (64, 64)
    # With no sampling prompts, the previews cover each concept's token.
    prompts = rec.of(Sample)[-1].prompts
    assert prompts[0].endswith("circle") and "a photo of zwx square" in prompts
    log = (tmp_path / "run" / "log.txt").read_text()
    assert "Concept 'squares': 2 image(s) × 3 repeat(s) at 128 px" in log


@pytest.mark.slow
def test_each_concept_is_regularised_by_its_own_class_set(tmp_path, tiny_sd15, monkeypatch):
    circles = draw_shapes(tmp_path / "circles", 2)
    squares = draw_squares(tmp_path / "squares", 2)
    circle_class = draw_shapes(tmp_path / "circle-class", 2, with_captions=False)
    square_class = draw_squares(tmp_path / "square-class", 1)  # one short: generated from its own prompt
    seen = spy_on_batches(monkeypatch)
    config = diffusion_config(
        tiny_sd15, circles, mode="dreambooth",
        dreambooth={"instance_prompt": "a sks circle", "class_prompt": "a circle", "class_dir": str(circle_class),
                    "num_class_images": 2},
        concepts=[{"path": str(squares), "instance_token": "zwx", "caption_template": "a {token} square",
                   "class_dir": str(square_class), "class_prompt": "a square", "num_class_images": 2}],
        training={"steps": 8, "batch_size": 1, "eval_every": 8}, sampling={"inference_steps": 2})
    code, rec = run_in_process(config, tmp_path / "run")
    assert code == EXIT_OK, rec.of(Failed)
    assert sorted(p.name for p in square_class.iterdir()) == ["class-00000.png", "square-00.png"]
    assert len(list(circle_class.iterdir())) == 2  # enough already: nothing generated there
    log = (tmp_path / "run" / "log.txt").read_text()
    assert "Generating 1 class image(s) for 'a square'" in log
    # Every instance batch is followed by a class batch of the same concept, from its own folder.
    assert [is_class for is_class, _ in seen] == [False, True] * 8
    own_folder = {0: circle_class, 1: square_class}
    for (_, instance), (_, classes) in zip(seen[0::2], seen[1::2], strict=True):
        concept = instance[0].concept
        assert all(example.image.parent == own_folder[concept] for example in classes)
        assert classes[0].caption == ("a circle" if concept == 0 else "a square")
    assert {batch[0].concept for _, batch in seen[0::2]} == {0, 1}


def test_a_concept_without_images_is_named(tmp_path, tiny_sd15, shapes_dataset):
    (tmp_path / "empty").mkdir()
    config = diffusion_config(tiny_sd15, shapes_dataset, concepts=[{"path": str(tmp_path / "empty")}])
    code, rec = run_in_process(config, tmp_path / "run")
    assert code == EXIT_BAD_INPUT and "concepts[0].path" in rec.of(Failed)[0].message


@pytest.mark.slow
def test_one_folder_in_two_concepts_is_cached_once_per_resolution_and_caption(tmp_path, tiny_sd15, monkeypatch):
    from trainer.jobs.diffusion import DiffusionJob

    circles = draw_shapes(tmp_path / "circles", 2, with_captions=False)
    captions: set[str] = set()
    original = DiffusionJob._text_for

    def recording(self, texts, training=True, **pairs):
        captions.update(texts)
        return original(self, texts, training, **pairs)

    monkeypatch.setattr(DiffusionJob, "_text_for", recording)
    config = diffusion_config(
        tiny_sd15, circles, training={"steps": 4, "batch_size": 1, "eval_every": 4},  # one epoch: 4 draws
        dataset={"cache_latents": "disk", "caption_template": "a {token} circle"},
        concepts=[{"path": str(circles), "instance_token": "zwx", "caption_template": "a {token} circle",
                   "resolution": 128}])
    code, rec = run_in_process(config, tmp_path / "run")
    assert code == EXIT_OK, rec.of(Failed)
    # Same files, two resolutions: two latents each; two tokens: two captions.
    assert len(list((tmp_path / "run" / "cache" / "latents").glob("*.safetensors"))) == 4
    assert {"a sks circle", "a zwx circle"} <= captions


@pytest.mark.slow
def test_resume_with_two_class_sets_equals_uninterrupted(tmp_path, tiny_sd15):
    import torch


    circles, squares = draw_shapes(tmp_path / "circles", 3), draw_squares(tmp_path / "squares", 3)
    config = diffusion_config(
        tiny_sd15, circles, mode="dreambooth",
        dreambooth={"class_prompt": "a circle", "num_class_images": 2,
                    "class_dir": str(draw_shapes(tmp_path / "circle-class", 2, with_captions=False))},
        concepts=[{"path": str(squares), "class_dir": str(draw_squares(tmp_path / "square-class", 2)),
                   "class_prompt": "a square", "num_class_images": 2}],
        training={"steps": 4, "batch_size": 2, "eval_every": 4})  # batches of 2 mix the concepts
    _, _, (a, b) = straight_and_resumed(config, tmp_path, stop_at=2)
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)

"""What the dataset panel edits is what training sees; class images come from a task with progress and cancel."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
import torch
from PIL import Image

from tests.diffusion.conftest import diffusion_config, draw_shapes
from tests.trainer.helpers import Recorder
from tests.trainer.test_tasks import Commands
from trainer.dataset import CropRecord, DatasetCache
from trainer.diffusion import data as ds
from trainer.protocol import EXIT_ERROR, EXIT_OK, Failed, TaskDone, TaskProgress
from trainer.tasks.runner import run_task


def test_removed_edited_and_cropped_images_reach_training_as_edited(tmp_path):
    folder = draw_shapes(tmp_path / "shapes", 3, size=(128, 64))
    half = Image.new("RGB", (128, 64), (20, 20, 230))
    half.paste((230, 20, 20), (0, 0, 64, 64))  # left half red, right half blue
    half.save(folder / "shape-02.png")
    originals = {p.name: p.read_bytes() for p in folder.iterdir()}
    edits = DatasetCache.for_folder(folder)
    edits.set_removed([folder / "shape-00.png"])
    edits.write_caption(folder / "shape-01.png", "an edited caption")
    edits.write_crop(folder / "shape-02.png", CropRecord((0, 0, 64, 64), (128, 64)))

    buckets = ds.training_buckets(64, 64, 128, True)
    examples = ds.collect_examples(str(folder), "dataset.path", ds.caption_maker("a photo of {token}", "sks"),
                                   buckets, False, ".txt", logging.getLogger("test"))
    assert [e.image.name for e in examples] == ["shape-01.png", "shape-02.png"]
    assert examples[0].caption == "an edited caption" and examples[0].crop is None
    cropped = examples[1]
    assert cropped.crop == (0, 0, 64, 64) and cropped.bucket == (64, 64)  # square crop → square bucket
    pixels, _ = ds.load_pixels(cropped, "center", False, torch.Generator().manual_seed(0))
    red, _green, blue = pixels.mean(dim=(1, 2)).tolist()
    assert red > 0.5 and blue < -0.5  # only the red half is trained on
    assert {p.name: p.read_bytes() for p in folder.iterdir() if p.is_file()} == {
        name: data for name, data in originals.items() if not (folder / name).is_dir()}


def test_a_crop_made_for_another_version_of_the_image_is_ignored(tmp_path):
    folder = draw_shapes(tmp_path / "shapes", 1)
    DatasetCache.for_folder(folder).write_crop(folder / "shape-00.png", CropRecord((0, 0, 10, 10), (640, 480)))
    (example,) = ds.collect_examples(str(folder), "dataset.path", ds.caption_maker("{token}", "sks"),
                                     ds.training_buckets(64, 64, 128, True), False, ".txt", logging.getLogger("t"))
    assert example.crop is None


def class_config(tiny_sd15: Path, dataset: Path, class_dir: Path, count: int):
    return diffusion_config(tiny_sd15, dataset, mode="dreambooth",
                            dreambooth={"class_dir": str(class_dir), "num_class_images": count,
                                        "class_prompt": "a circle"},
                            sampling={"inference_steps": 2})


@pytest.mark.slow
def test_the_class_images_task_generates_the_missing_ones_with_progress(tiny_sd15, shapes_dataset, tmp_path):
    class_dir = tmp_path / "class"
    class_dir.mkdir()
    Image.new("RGB", (64, 64), "white").save(class_dir / "mine.png")  # the user's own class image stays
    events = Recorder()
    config = class_config(tiny_sd15, shapes_dataset, class_dir, 3)
    assert run_task("generate-class-images", {"config": config.to_dict()}, Commands(), events) == EXIT_OK
    (done,) = events.of(TaskDone)
    assert done.result == {"class_dir": str(class_dir), "generated": 2, "total": 3}
    assert [(p.done, p.total) for p in events.of(TaskProgress)] == [(0, 2), (1, 2), (2, 2)]
    assert sorted(p.name for p in class_dir.iterdir()) == ["class-00000.png", "class-00001.png", "mine.png"]


def test_cancelling_the_class_images_task_keeps_what_was_made(tiny_sd15, shapes_dataset, tmp_path):
    class_dir = tmp_path / "class"
    events = Recorder()
    config = class_config(tiny_sd15, shapes_dataset, class_dir, 3)
    # Polls: before loading, after loading, after the first image → Stop arrives there.
    assert run_task("generate-class-images", {"config": config.to_dict()}, Commands(after=2), events) == EXIT_ERROR
    assert events.of(Failed)[0].kind == "cancelled"
    assert [p.name for p in class_dir.iterdir()] == ["class-00000.png"]

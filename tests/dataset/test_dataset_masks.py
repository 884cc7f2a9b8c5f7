"""Loss masks beside images (``NAME.mask.png``): listed with their image, never as images, copied on import, and
checked by the health check and ``kamaal-train dataset check`` with the mask file named."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest
from PIL import Image

from trainer.dataset import check_dataset, list_images
from trainer.dataset.cli import dataset_main
from trainer.dataset.importing import import_images
from trainer.dataset.masks import MaskError, load_mask, mask_path_for


def picture(path: Path, size: tuple[int, int] = (96, 64)) -> Path:
    Image.new("RGB", size, (120, 40, 200)).save(path)
    return path


def mask(path: Path, size: tuple[int, int] = (96, 64), value: int = 255, mode: str = "L") -> Path:
    Image.new(mode, size, value).save(path)
    return path


def test_a_mask_belongs_to_its_image_and_is_never_listed_as_one(tmp_path):
    picture(tmp_path / "Photo.jpg")
    mask(tmp_path / "photo.MASK.png")  # any case, as captions
    picture(tmp_path / "plain.png")
    mask(tmp_path / "gone.mask.png")
    listing = list_images(tmp_path)
    assert [(item.image.name, item.mask and item.mask.name) for item in listing.items] == [
        ("Photo.jpg", "photo.MASK.png"), ("plain.png", None)]
    assert [p.name for p in listing.orphan_masks] == ["gone.mask.png"]
    assert mask_path_for(tmp_path / "a.b.jpg") == tmp_path / "a.b.mask.png"


def test_the_health_check_names_every_mask_problem(tmp_path):
    for name in ("good", "wide", "broken", "black", "small", "colour", "gray16"):
        picture(tmp_path / f"{name}.png")
    mask(tmp_path / "good.mask.png")
    mask(tmp_path / "wide.mask.png", (64, 64))  # another aspect ratio
    (tmp_path / "broken.mask.png").write_bytes(b"\x89PNG\r\n\x1a\n not really")
    mask(tmp_path / "black.mask.png", value=0)
    mask(tmp_path / "small.mask.png", (48, 32))  # same shape, half the size
    mask(tmp_path / "colour.mask.png", mode="RGB", value=(255, 0, 0))  # type: ignore[arg-type]
    mask(tmp_path / "gray16.mask.png", mode="I;16", value=65535)
    mask(tmp_path / "nobody.mask.png")
    originals = {p.name: p.read_bytes() for p in tmp_path.iterdir()}

    report = check_dataset(tmp_path, 64)
    found = {(f.file.name, f.code.value, f.severity.value): f.message for f in report.findings
             if f.code.value.startswith("mask") or f.code.value == "orphan_mask"}
    assert set(found) == {
        ("wide.png", "mask_size", "warning"), ("broken.png", "mask_unreadable", "warning"),
        ("black.png", "mask_empty", "warning"), ("small.png", "mask_scaled", "info"),
        ("colour.png", "mask_colour", "info"), ("nobody.mask.png", "orphan_mask", "warning")}
    assert "wide.mask.png is 64×64 but the image is 96×64" in found["wide.png", "mask_size", "warning"]
    assert "broken.mask.png cannot be read" in found["broken.png", "mask_unreadable", "warning"]
    assert "black.mask.png is black everywhere" in found["black.png", "mask_empty", "warning"]
    assert "no image named nobody" in found["nobody.mask.png", "orphan_mask", "warning"]
    assert len(report.usable_images) == 7  # a mask never makes its image unusable: that depends on masked loss
    assert {p.name: p.read_bytes() for p in tmp_path.iterdir()} == originals


def test_dataset_check_cli_reports_masks_by_file(tmp_path, capsys: pytest.CaptureFixture[str]):
    picture(tmp_path / "a.png")
    mask(tmp_path / "a.mask.png", (64, 64))
    assert dataset_main(["check", str(tmp_path)]) == 0
    line = next(line for line in capsys.readouterr().out.splitlines() if "[mask_size]" in line)
    assert line.startswith("warning a.png") and "a.mask.png" in line
    assert dataset_main(["check", str(tmp_path), "--json"]) == 0
    findings = json.loads(capsys.readouterr().out)["findings"]
    assert [f["file"] for f in findings if f["code"] == "mask_size"] == ["a.png"]


def test_load_mask_scales_a_smaller_copy_and_refuses_another_shape(tmp_path):
    small = Image.new("L", (48, 32), 0)
    small.paste(255, (0, 0, 24, 32))  # left half white
    small.save(tmp_path / "s.mask.png")
    loaded = load_mask(tmp_path / "s.mask.png", (96, 64))
    assert loaded.mode == "L" and loaded.size == (96, 64)
    assert loaded.getpixel((10, 30)) == 255 and loaded.getpixel((80, 30)) == 0
    layer = Image.new("RGBA", (96, 64), (255, 255, 255, 0))  # an editor's layer: white where painted, else clear
    layer.paste((255, 255, 255, 255), (48, 0, 96, 64))
    layer.save(tmp_path / "layer.mask.png")
    read = load_mask(tmp_path / "layer.mask.png", (96, 64))
    assert read.getpixel((10, 30)) == 0 and read.getpixel((80, 30)) == 255
    with pytest.raises(MaskError, match=r"s\.mask\.png: the mask is 48×32 but its image is 64×64"):
        load_mask(tmp_path / "s.mask.png", (64, 64))


def test_import_copies_each_mask_with_its_image_and_renames_it_along(tmp_path):
    source = tmp_path / "source"
    source.mkdir()
    picture(source / "cat.png")
    mask(source / "cat.mask.png", value=128)
    destination = tmp_path / "project" / "datasets" / "cats"
    destination.mkdir(parents=True)
    picture(destination / "cat.png", (64, 64))  # the name is taken: the copy becomes cat-2.png
    before = {p.name: p.read_bytes() for p in source.iterdir()}

    result = import_images([source], destination)
    assert [p.name for p in result.copied] == ["cat-2.png"]
    assert (destination / "cat-2.mask.png").read_bytes() == (source / "cat.mask.png").read_bytes()
    assert not (destination / "cat.mask.png").exists()
    assert {p.name: p.read_bytes() for p in source.iterdir()} == before
    # A file chosen on its own brings its mask too; a mask chosen alone is not an image.
    alone = import_images([source / "cat.png", source / "cat.mask.png"], tmp_path / "other")
    assert [p.name for p in alone.copied] == ["cat.png"] and (tmp_path / "other" / "cat.mask.png").is_file()


def test_training_leaves_out_an_image_whose_mask_cannot_line_up(tmp_path, caplog):
    from trainer.diffusion import data as ds

    picture(tmp_path / "a.png")
    picture(tmp_path / "b.png")
    mask(tmp_path / "a.mask.png", (64, 64))
    mask(tmp_path / "b.mask.png")
    buckets = ds.training_buckets(64, 64, 128, True)
    args = (str(tmp_path), "dataset.path", ds.caption_maker("{token}", "sks"), buckets, False, ".txt",
            logging.getLogger("masks"))
    with caplog.at_level(logging.WARNING):
        masked = ds.collect_examples(*args, masks=True)
    assert [(e.image.name, e.mask and e.mask.name) for e in masked] == [("b.png", "b.mask.png")]
    assert "a.png" in caplog.text and "a.mask.png" in caplog.text and "64×64" in caplog.text
    plain = ds.collect_examples(*args)  # masked loss off: masks are not read
    assert [(e.image.name, e.mask) for e in plain] == [("a.png", None), ("b.png", None)]

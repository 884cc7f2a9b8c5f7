"""Listing a dataset folder: extensions in any case, odd names, captions found beside images."""

from __future__ import annotations

import unicodedata
from pathlib import Path

import pytest
from conftest import picture

from trainer.dataset import DatasetCache, list_images, scan_headers
from trainer.dataset.cache import CropRecord


def _touch_image(path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    picture(0, 64, 64).save(path, format="PNG")  # the content format does not matter for listing


def test_extensions_are_case_insensitive_and_junk_is_skipped(tmp_path: Path) -> None:
    for name in ("a.JPG", "b.Jpeg", "c.PNG", "d.webp", "e.BMP", "f.gif", "g.tif", "h.TIFF",
                 "._a.jpg", ".hidden.png", "notes.md", "model.safetensors"):
        _touch_image(tmp_path / name)
    (tmp_path / "folder.png").mkdir()
    names = [item.image.name for item in list_images(tmp_path).items]
    assert names == ["a.JPG", "b.Jpeg", "c.PNG", "d.webp", "e.BMP", "f.gif", "g.tif", "h.TIFF"]


def test_captions_are_matched_by_name_whatever_the_case_and_normalisation(tmp_path: Path) -> None:
    composed = unicodedata.normalize("NFC", "Café dog")
    decomposed = unicodedata.normalize("NFD", "Café dog")
    _touch_image(tmp_path / f"{composed}.JPG")
    (tmp_path / f"{decomposed}.TXT").write_text("x", encoding="utf-8")
    _touch_image(tmp_path / "with space.png")
    (tmp_path / "with space.txt").write_text("y", encoding="utf-8")
    (tmp_path / "alone.txt").write_text("z", encoding="utf-8")
    listing = list_images(tmp_path)
    captions = {item.image.name: item.caption.name if item.caption else None for item in listing.items}
    assert captions == {f"{composed}.JPG": f"{decomposed}.TXT", "with space.png": "with space.txt"}
    assert [p.name for p in listing.orphan_captions] == ["alone.txt"]


def test_recursive_listing(tmp_path: Path) -> None:
    _touch_image(tmp_path / "top.png")
    _touch_image(tmp_path / "10_sks dog" / "inner.png")
    assert len(list_images(tmp_path).items) == 1
    assert [i.image.name for i in list_images(tmp_path, recursive=True).items] == ["inner.png", "top.png"]


def test_scan_headers_returns_errors_instead_of_raising(corpus: Path) -> None:
    paths = [corpus / "good one.jpg", corpus / "bomb.png", corpus / "notes.png", corpus / "rotated.jpg"]
    seen: list[int] = []
    results = scan_headers(paths, on_result=lambda index, _: seen.append(index))
    good, bomb, notes, rotated = results
    assert (good.width, good.height) == (640, 512)  # type: ignore[union-attr]
    assert bomb.code == "decompression_bomb" and notes.code == "not_an_image"  # type: ignore[union-attr]
    assert rotated.oriented_size == (520, 640)  # type: ignore[union-attr]
    assert seen == [0, 1, 2, 3]


def test_cache_writes_captions_and_crops_beside_nothing_original(tmp_path: Path) -> None:
    dataset = tmp_path / "data"
    _touch_image(dataset / "sub" / "a.png")
    cache = DatasetCache(tmp_path / "cache", dataset)
    image = dataset / "sub" / "a.png"
    assert cache.read_caption(image) is None
    cache.write_caption(image, "  edited  ")
    assert cache.read_caption(image).text == "edited"  # type: ignore[union-attr]
    cache.write_crop(image, CropRecord((0, 0, 32, 48), (64, 64)))
    assert cache.read_crop(image) == CropRecord((0, 0, 32, 48), (64, 64))
    assert sorted(p.name for p in dataset.rglob("*")) == ["a.png", "sub"]
    assert not list((tmp_path / "cache").rglob("*.tmp"))
    with pytest.raises(ValueError):
        cache.write_crop(image, CropRecord((0, 0, 100, 10), (64, 64)))
    cache.crop_path(image).write_text("{broken", encoding="utf-8")
    assert cache.read_crop(image) is None
    cache.forget_caption(image)
    assert cache.read_caption(image) is None

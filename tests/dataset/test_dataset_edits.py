"""The project's edits (captions, crops, removals), bulk caption operations, imports and token counts."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

from tests.dataset.conftest import picture
from trainer.dataset import CropRecord, DatasetCache, check_dataset
from trainer.dataset.caption_ops import BulkEdit, add_token, prefix, remove_token, replace, suffix
from trainer.dataset.importing import import_images
from trainer.dataset.tokens import load_clip_tokenizer


def small_folder(folder: Path, count: int = 3) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(count):
        picture(100 + i, 320, 256).save(folder / f"img {i}.jpg", quality=85)
        (folder / f"img {i}.txt").write_text(f"a photo of sks, number {i}", encoding="utf-8")
    return folder


def snapshot(folder: Path) -> dict[str, tuple[bytes, int]]:
    return {p.name: (p.read_bytes(), p.stat().st_mtime_ns) for p in folder.iterdir() if p.is_file()}


# ------------------------------------------------------------------ bulk caption operations

@pytest.mark.parametrize(("text", "expected"), [
    ("a photo of dog", "sks, a photo of dog"),
    ("a photo of sks dog", "a photo of sks dog"),  # already there as a word
    ("", "sks"),
    ("sksy dog", "sks, sksy dog"),  # part of another word does not count
])
def test_add_token(text, expected):
    assert add_token(text, "sks") == expected


@pytest.mark.parametrize(("text", "expected"), [
    ("sks, a photo of dog", "a photo of dog"),
    ("a photo of sks dog", "a photo of dog"),
    ("a, sks, b, sks", "a, b"),
    ("sksy dog", "sksy dog"),
])
def test_remove_token(text, expected):
    assert remove_token(text, "sks") == expected


def test_prefix_suffix_and_replace():
    assert prefix("a dog", "photo,") == "photo, a dog"
    assert prefix("masterpiece a dog", "masterpiece") == "masterpiece a dog"
    assert suffix("a dog", "studio light") == "a dog, studio light"
    assert replace("a dog, a dog on grass", "dog", "cat") == "a cat, a cat on grass"
    assert replace("red, blue, green", "blue", "") == "red, green"
    assert BulkEdit("replace", "a", "the").apply("a b a") == "the b the"
    with pytest.raises(ValueError, match="unknown caption operation"):
        BulkEdit("shout", "x")


# ------------------------------------------------------------------ edits beside a project folder

def test_removed_images_are_remembered_and_left_out_of_the_check(tmp_path):
    folder = small_folder(tmp_path / "subject")
    edits = DatasetCache.for_folder(folder)
    assert edits.removed() == set()
    edits.set_removed([folder / "img 1.jpg"])
    assert edits.removed() == {folder / "img 1.jpg"}
    report = check_dataset(folder, 256, cache=edits)
    assert sorted(p.name for p in report.usable_images) == ["img 0.jpg", "img 2.jpg"]
    assert (folder / "img 1.jpg").is_file()  # removed from the dataset, not from disk
    edits.set_removed([folder / "img 1.jpg"], removed=False)
    assert edits.removed() == set()
    assert [p.name for p in folder.iterdir() if p.suffix == ".jpg"].count("img 1.jpg") == 1


def test_a_damaged_removed_list_removes_nothing(tmp_path):
    folder = small_folder(tmp_path / "subject")
    edits = DatasetCache.for_folder(folder)
    edits.removed_path.parent.mkdir(parents=True)
    edits.removed_path.write_text("{not json", encoding="utf-8")
    assert edits.removed() == set()


def test_edits_live_in_a_hidden_folder_that_is_never_listed_as_images(tmp_path):
    folder = small_folder(tmp_path / "subject")
    edits = DatasetCache.for_folder(folder)
    edits.write_caption(folder / "img 0.jpg", "edited")
    edits.write_crop(folder / "img 0.jpg", CropRecord((0, 0, 200, 200), (320, 256)))
    report = check_dataset(folder, 256, cache=edits)
    assert len(report.images) == 3
    assert report.images[0].caption == "edited"
    assert (folder / "img 0.txt").read_text(encoding="utf-8") == "a photo of sks, number 0"


# ------------------------------------------------------------------ importing

def test_import_copies_images_with_captions_and_never_touches_the_originals(tmp_path):
    source = small_folder(tmp_path / "originals")
    (source / "notes.md").write_text("not an image", encoding="utf-8")
    before = snapshot(source)
    target = tmp_path / "project" / "datasets" / "subject"
    progress: list[tuple[int, int]] = []
    result = import_images([source], target, progress=lambda d, t: progress.append((d, t)))
    assert sorted(p.name for p in result.copied) == ["img 0.jpg", "img 1.jpg", "img 2.jpg"]
    assert (target / "img 1.txt").read_text(encoding="utf-8") == "a photo of sks, number 1"
    assert (target / "img 1.jpg").read_bytes() == (source / "img 1.jpg").read_bytes()
    assert not (target / "notes.md").exists()
    assert progress[-1] == (3, 3)
    assert snapshot(source) == before
    assert not [p for p in target.iterdir() if p.name.endswith(".tmp")]


def test_import_skips_identical_files_and_renames_clashing_names(tmp_path):
    source = small_folder(tmp_path / "originals", 2)
    target = tmp_path / "subject"
    import_images([source], target)
    again = import_images([source / "img 0.jpg"], target)
    assert again.copied == [] and again.skipped == [source / "img 0.jpg"]
    other = tmp_path / "other"
    other.mkdir()
    picture(7, 300, 300).save(other / "img 0.jpg")
    clash = import_images([other / "img 0.jpg"], target)
    assert [p.name for p in clash.copied] == ["img 0-2.jpg"]


def test_import_stops_when_cancelled(tmp_path):
    source = small_folder(tmp_path / "originals", 3)
    cancel = threading.Event()
    cancel.set()
    result = import_images([source], tmp_path / "subject", cancel=cancel)
    assert result.cancelled and result.copied == []


# ------------------------------------------------------------------ token counts

CAPTIONS = ["a photo of sks dog on a beach", "ein Foto von sks Hund im Café, 1234 !!!",
            "masterpiece, best quality, (detailed:1.2), Schwarzwälder-Kirschtorte",
            " ".join(["sks dog running"] * 35), "日本の犬", "it's   a\tdog's   LIFE,\nisn't it? 3.14159 ©®™ 😀🐶",
            "photorealistic__underscores and emoji_tags, 8k uhd, dslr", ""]


def test_the_light_tokenizer_gives_exactly_the_ids_of_transformers_clip_tokenizer():
    from transformers import CLIPTokenizer

    from trainer.models.clip_vocab import CLIP_TOKENIZER_DIR

    light = load_clip_tokenizer()
    assert light is not None
    reference = CLIPTokenizer.from_pretrained(CLIP_TOKENIZER_DIR)
    for text in CAPTIONS:
        assert list(light(text)) == reference(text, add_special_tokens=False).input_ids, text


def test_the_cli_check_counts_exactly_and_sees_the_panels_edits(tmp_path, capsys):
    import json

    from trainer.dataset.cli import dataset_main

    folder = small_folder(tmp_path / "subject")
    edits = DatasetCache.for_folder(folder)
    edits.set_removed([folder / "img 2.jpg"])
    edits.write_caption(folder / "img 0.jpg", " ".join(["Schwarzwälder-Kirschtorte"] * 6))
    assert dataset_main(["check", str(folder), "--json", "--resolution", "256"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["settings"]["exact_token_count"] is True
    assert [i["file"] for i in report["images"]] == ["img 0.jpg", "img 1.jpg"]
    assert report["images"][0]["caption_tokens"] == len(load_clip_tokenizer()(report["images"][0]["caption"]))
    assert load_clip_tokenizer(Path("/nonexistent")) is None


def test_all_edits_at_once_are_keyed_like_the_listing(tmp_path):
    from trainer.dataset import list_images

    folder = small_folder(tmp_path / "subject")
    small_folder(folder / "sub dir", 1)
    edits = DatasetCache.for_folder(folder)
    images = [item.image for item in list_images(folder, recursive=True).items]
    edits.write_caption(images[0], "first")
    edits.write_caption(images[-1], "nested")
    edits.write_crop(images[-1], CropRecord((0, 0, 100, 100), (320, 256)))
    assert {path: c.text for path, c in edits.all_captions().items()} == {images[0]: "first", images[-1]: "nested"}
    assert edits.all_crops() == {images[-1]: CropRecord((0, 0, 100, 100), (320, 256))}
    assert DatasetCache.for_folder(tmp_path / "nothing").all_captions() == {}

"""Before/after pairs (issue 28): both layouts users bring are listed as targets with their controls."""

from __future__ import annotations

import unicodedata
from pathlib import Path

import pytest
from conftest import picture

from trainer.dataset import list_images
from trainer.dataset.importing import add_control, found_file, import_found, import_images
from trainer.dataset.pairs import control_paths_for, is_control_name, target_folder


def _image(path: Path, seed: int = 0) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    picture(seed, 32, 32).save(path, format="PNG")
    return path


def test_control_names_follow_the_suffix_convention() -> None:
    for name in ("a_control.png", "a_CONTROL.JPG", "a_control_2.webp", "a b_control_12.png", "x_control.jxl"):
        assert is_control_name(name), name
    for name in ("a.png", "control.png", "_control.png", "a_control_1.png", "a_control_02.png", "a_control.txt",
                 "a_controls.png", "a_control.mask.png", "._a_control.png"):
        assert not is_control_name(name), name


def test_suffix_pairs_are_found_beside_their_targets_in_reference_order(tmp_path: Path) -> None:
    _image(tmp_path / "a.png")
    (tmp_path / "a.txt").write_text("make it red", encoding="utf-8")
    third, second, first = (_image(tmp_path / name) for name in ("a_Control_3.jpg", "a_control_2.PNG",
                                                                  "A_CONTROL.png"))
    _image(tmp_path / "b.jpg")
    alone = _image(tmp_path / "gone_control.png")
    listing = list_images(tmp_path)
    assert {item.image.name: item.controls for item in listing.items} == {"a.png": (first, second, third),
                                                                         "b.jpg": ()}
    assert listing.items[0].caption == tmp_path / "a.txt"
    assert listing.orphan_controls == (alone,)
    assert control_paths_for(tmp_path / "a.png") == (first, second, third)
    assert control_paths_for(tmp_path / "b.jpg") == ()


def test_suffix_pairs_match_whatever_the_case_and_normalisation(tmp_path: Path) -> None:
    target = _image(tmp_path / f"{unicodedata.normalize('NFC', 'Café')}.PNG")
    control = _image(tmp_path / f"{unicodedata.normalize('NFD', 'café')}_control.jpg")
    assert [(item.image, item.controls) for item in list_images(tmp_path).items] == [(target, (control,))]
    assert control_paths_for(target) == (control,)


def test_folder_pairs_list_the_targets_from_the_parent_or_the_target_folder(tmp_path: Path) -> None:
    concept = tmp_path / "concept"
    a, b = _image(concept / "target" / "a.png"), _image(concept / "target" / "b.png")
    (concept / "target" / "a.txt").write_text("make it red", encoding="utf-8")
    control_a = _image(concept / "control" / "A.jpg")
    second_a = _image(concept / "Control_2" / "a.webp")
    stray = _image(concept / "control" / "z.png")
    assert target_folder(concept) == concept / "target"
    assert target_folder(concept / "target") == concept / "target"
    for folder in (concept, concept / "target"):
        listing = list_images(folder)
        assert [(item.image, item.controls) for item in listing.items] == [(a, (control_a, second_a)), (b, ())]
        assert listing.items[0].caption == concept / "target" / "a.txt"
        assert listing.orphan_controls == (stray,)
    assert control_paths_for(a) == (control_a, second_a)
    assert control_paths_for(b) == ()


def test_a_recursive_listing_never_takes_controls_for_images(tmp_path: Path) -> None:
    target = _image(tmp_path / "edits" / "target" / "a.png")
    control = _image(tmp_path / "edits" / "control" / "a.png")
    plain = _image(tmp_path / "portraits" / "p.png")
    _image(tmp_path / "portraits" / "p.mask.png")
    listing = list_images(tmp_path, recursive=True)
    assert [(item.image, item.controls) for item in listing.items] == [(target, (control,)), (plain, ())]
    assert listing.items[1].mask == tmp_path / "portraits" / "p.mask.png"
    assert listing.orphan_controls == ()


def test_a_target_folder_without_control_folders_is_an_ordinary_folder(tmp_path: Path) -> None:
    image = _image(tmp_path / "target" / "a.png")
    control = _image(tmp_path / "target" / "a_control.png")
    assert target_folder(tmp_path) == tmp_path
    assert [(item.image, item.controls) for item in list_images(tmp_path / "target").items] == [(image, (control,))]


# ------------------------------------------------------------------ importing


def _snapshot(folder: Path) -> dict[str, bytes]:
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def test_importing_a_folders_layout_keeps_the_pairs_by_the_suffix_convention(tmp_path: Path) -> None:
    concept = tmp_path / "edits"
    _image(concept / "target" / "a.png")
    (concept / "target" / "a.txt").write_text("make it red", encoding="utf-8")
    _image(concept / "target" / "b.png", seed=1)
    _image(concept / "control" / "a.jpg", seed=2)
    _image(concept / "control_2" / "a.png", seed=3)
    before = _snapshot(concept)
    destination = tmp_path / "project" / "datasets" / "edits"
    result = import_images([concept], destination)
    assert sorted(p.name for p in result.copied) == ["a.png", "b.png"]
    assert sorted(p.name for p in destination.iterdir()) == ["a.png", "a.txt", "a_control.jpg", "a_control_2.png",
                                                              "b.png"]
    assert (destination / "a_control_2.png").read_bytes() == (concept / "control_2" / "a.png").read_bytes()
    listing = list_images(destination)
    assert [(i.image.name, [c.name for c in i.controls]) for i in listing.items] == [
        ("a.png", ["a_control.jpg", "a_control_2.png"]), ("b.png", [])]
    assert _snapshot(concept) == before


def test_importing_files_brings_their_controls_and_renames_them_along(tmp_path: Path) -> None:
    source = tmp_path / "source"
    x, x_control = _image(source / "x.png"), _image(source / "x_control.png", seed=1)
    _image(source / "y.png", seed=2)
    _image(source / "y_control.webp", seed=3)
    (source / "y_control_2.png").symlink_to(tmp_path / "nowhere.png")  # a dead link is never copied
    lone = _image(source / "z_control.png", seed=4)
    destination = tmp_path / "subject"
    _image(destination / "x.png", seed=9)  # taken by another picture
    _image(destination / "y_control.webp", seed=8)  # an orphan control takes the name y too
    result = import_images([x, x_control, source / "y.png", lone], destination)
    assert [p.name for p in result.copied] == ["x-2.png", "y-2.png"]
    assert (destination / "x-2_control.png").read_bytes() == x_control.read_bytes()
    assert (destination / "y-2_control.webp").read_bytes() == (source / "y_control.webp").read_bytes()
    assert not (destination / "z_control.png").exists() and not (destination / "y-2_control_2.png").exists()


def test_a_pair_made_by_hand_and_a_control_added_later(tmp_path: Path) -> None:
    source = tmp_path / "source"
    before, after = _image(source / "before.jpg"), _image(source / "after.png", seed=1)
    originals = _snapshot(source)
    destination = tmp_path / "subject"
    import_found([found_file(after, controls=(before,))], destination)
    assert sorted(p.name for p in destination.iterdir()) == ["after.png", "after_control.jpg"]
    # A control dropped on an image's slot replaces the one there, whatever its suffix.
    replaced = add_control(destination / "after.png", _image(source / "better.png", seed=2))
    assert replaced == destination / "after_control.png" and not (destination / "after_control.jpg").exists()
    second = add_control(destination / "after.png", before, number=2)
    assert control_paths_for(destination / "after.png") == (replaced, second)
    (source / "notes.md").write_text("x", encoding="utf-8")
    with pytest.raises(ValueError, match=r"notes\.md is not an image file"):
        add_control(destination / "after.png", source / "notes.md")
    # In a folders layout the control goes into its folder, made when missing.
    target = _image(tmp_path / "kept" / "target" / "t.png")
    _image(tmp_path / "kept" / "control" / "other.png")
    assert add_control(target, before, number=2) == tmp_path / "kept" / "control_2" / "t.jpg"
    assert control_paths_for(target) == (tmp_path / "kept" / "control_2" / "t.jpg",)
    assert _snapshot(source) == {**originals, "better.png": (source / "better.png").read_bytes(),
                                 "notes.md": b"x"}

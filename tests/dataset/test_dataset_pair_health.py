"""The health check and ``kamaal-train dataset check`` on before/after pairs: every finding names its file."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from conftest import picture

from trainer.dataset import check_dataset
from trainer.dataset.cli import dataset_main
from trainer.dataset.pair_health import PairUse
from trainer.dataset.pairs import stretch

KONTEXT = PairUse("Flux.1 Kontext", 1)


def _image(path: Path, size: tuple[int, int] = (96, 64), seed: int = 0) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    picture(seed, *size).save(path)
    return path


@pytest.fixture
def pairs(tmp_path: Path) -> Path:
    """Five targets of 96×64: a fine pair, a smaller control, one of another shape, a broken one, none."""
    for seed, name in enumerate("abcde"):
        _image(tmp_path / f"{name}.png", seed=seed)
    _image(tmp_path / "a_control.png", seed=10)
    _image(tmp_path / "a_control_2.png", seed=11)
    _image(tmp_path / "b_control.png", (48, 32), seed=12)
    _image(tmp_path / "c_control.png", (64, 64), seed=13)
    (tmp_path / "d_control.jpg").write_bytes(b"\xff\xd8\xff not a jpeg")
    _image(tmp_path / "gone_control.png", seed=14)
    return tmp_path


def _found(report) -> dict[tuple[str, str], tuple[str, str]]:
    return {(report.relative(f.file), f.code.value): (f.severity.value, f.message) for f in report.findings}


def test_a_partly_paired_folder_names_each_missing_partner_and_bad_control(pairs: Path) -> None:
    report = check_dataset(pairs, 64)
    found = _found(report)
    assert {key: severity for key, (severity, _) in found.items() if key[1] not in ("near_duplicate", "too_small")} == {
        ("b.png", "control_scaled"): "info", ("c.png", "control_aspect"): "warning",
        ("d.png", "control_unreadable"): "warning", ("e.png", "missing_control"): "warning",
        (".", "partly_paired"): "warning", ("gone_control.png", "orphan_control"): "warning",
        **{(f"{name}.png", "missing_caption"): "info" for name in "abcde"}}
    assert "c_control.png is 64×64 but its target is 96×64" in found["c.png", "control_aspect"][1]
    assert "stretches it 50 % wider than it is" in found["c.png", "control_aspect"][1]
    assert "d_control.jpg cannot be read" in found["d.png", "control_unreadable"][1]
    assert "e_control.png or .jpg beside it" in found["e.png", "missing_control"][1]
    assert "1 of 5 images have no control image" in found[".", "partly_paired"][1]
    assert "gone.png, .jpg, ... beside it" in found["gone_control.png", "orphan_control"][1]
    assert len(report.usable_images) == 5 and report.pairs == 4  # without a family nothing is left out


def test_an_edit_family_leaves_out_targets_it_cannot_train(pairs: Path) -> None:
    report = check_dataset(pairs, 64, pairs=KONTEXT)
    found = _found(report)
    assert found["e.png", "missing_control"][0] == "error" and "Flux.1 Kontext trains on" in found["e.png",
                                                                                                    "missing_control"][1]
    assert found["d.png", "control_unreadable"][0] == "error"
    assert found["a.png", "extra_controls"] == ("info", "Flux.1 Kontext takes 1 control image per pair, so "
                                                "a_control_2.png is not used. Nothing to do, unless you meant another "
                                                "family.")
    assert sorted(p.name for p in report.usable_images) == ["a.png", "b.png", "c.png"]


def test_a_text_to_image_family_says_once_that_controls_are_ignored(pairs: Path) -> None:
    report = check_dataset(pairs, 64, pairs=PairUse("Stable Diffusion 1.x", 0))
    codes = {(report.relative(f.file), f.code.value) for f in report.findings}
    assert {c for c in codes if "control" in c[1] or "paired" in c[1]} == {
        (".", "controls_ignored"), ("gone_control.png", "orphan_control")}
    assert len(report.usable_images) == 5


def test_an_edit_family_on_plain_images_names_every_one(tmp_path: Path) -> None:
    _image(tmp_path / "a.png")
    report = check_dataset(tmp_path, 64, pairs=KONTEXT)
    assert report.codes_for(tmp_path / "a.png") >= {"missing_control"} and not report.usable


def test_the_folders_layout_names_controls_with_their_folder(tmp_path: Path) -> None:
    _image(tmp_path / "target" / "a.png")
    _image(tmp_path / "target" / "b.png", seed=1)
    _image(tmp_path / "control" / "a.jpg", (64, 96), seed=2)
    _image(tmp_path / "control" / "z.png", seed=3)
    found = _found(check_dataset(tmp_path, 64))
    assert "control/a.jpg is 64×96 but its target is 96×64" in found["target/a.png", "control_aspect"][1]
    assert "stretches it 125 % wider" in found["target/a.png", "control_aspect"][1]
    assert "control/b.png or .jpg beside target/" in found["target/b.png", "missing_control"][1]
    assert "target/z.png, .jpg, ... beside control/" in found["control/z.png", "orphan_control"][1]


def test_a_control_of_another_shape_says_how_much_resizing_stretches_it() -> None:
    assert stretch((64, 64), (96, 64)) == 1.5  # a square control of a 3:2 target: widened by half
    assert stretch((96, 64), (64, 64)) == pytest.approx(2 / 3)  # made taller: "50 % taller"
    assert stretch((201, 100), (402, 200)) == 1.0


def test_the_cli_prints_pair_counts_and_names_the_files(pairs: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert dataset_main(["check", str(pairs), "--resolution", "64"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert "(4 before/after pairs)" in lines[0]
    assert lines[1] == "Pairs: 4 of 5 images have control images (5 control images in all)"
    assert any(line.startswith("warning e.png: e.png has no control image") and "[missing_control]" in line
               for line in lines)
    assert dataset_main(["check", str(pairs), "--resolution", "64", "--json", "--architecture", "sd15"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["counts"]["pairs"] == 4 and data["settings"]["pairs"]["control_images"] == 0
    assert {f["code"] for f in data["findings"]} >= {"controls_ignored", "orphan_control"}
    assert next(i for i in data["images"] if i["file"] == "a.png")["controls"] == ["a_control.png", "a_control_2.png"]

"""``kamaal-train dataset check``: exit codes, human and JSON output, no tracebacks."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from conftest import GOOD, write_corpus
from PIL import Image

from trainer.dataset.cli import dataset_main


def test_usable_dataset_exits_0_with_a_line_per_finding(corpus: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert dataset_main(["check", str(corpus)]) == 0
    out = capsys.readouterr().out
    assert out.splitlines()[0].startswith(f"Dataset {corpus}")
    line = next(line for line in out.splitlines() if "truncated.jpg" in line)
    assert line.startswith("error") and "[truncated]" in line and "Copy it again" in line
    assert any(line.startswith("warning dup_b.png") for line in out.splitlines())


def test_json_output(corpus: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert dataset_main(["check", str(corpus), "--json", "--resolution", "768"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["resolution"] == 768 and sorted(data["usable_images"]) == sorted(GOOD)
    too_small = {f["file"] for f in data["findings"] if f["code"] == "too_small"}
    assert {"good one.jpg", "photo.webp"} <= too_small  # 640×512 and 600×600 are below 768


def test_unusable_dataset_exits_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "a.png").write_bytes(b"")
    (tmp_path / "b.jpg").write_text("not a picture")
    assert dataset_main(["check", str(tmp_path)]) == 2
    assert "No usable image" in capsys.readouterr().out
    assert dataset_main(["check", str(tmp_path), "--json"]) == 2
    data = json.loads(capsys.readouterr().out)
    assert data["usable"] is False and {f["code"] for f in data["findings"]} == {"zero_byte", "not_an_image"}


def test_empty_folder_exits_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert dataset_main(["check", str(tmp_path)]) == 2
    assert "[no_images]" in capsys.readouterr().out


@pytest.mark.parametrize("target", ["missing", "file.png"])
def test_bad_folder_exits_2_naming_it(tmp_path: Path, target: str, capsys: pytest.CaptureFixture[str]) -> None:
    Image.new("RGB", (8, 8)).save(tmp_path / "file.png")
    path = tmp_path / target
    assert dataset_main(["check", str(path)]) == 2
    err = capsys.readouterr().err
    assert str(path) in err and "Traceback" not in err
    assert dataset_main(["check", str(path), "--json"]) == 2
    assert json.loads(capsys.readouterr().out)["usable"] is False


@pytest.mark.parametrize("argv", [[], ["check"], ["frobnicate"], ["check", ".", "--resolution", "big"],
                                  ["check", ".", "--resolution", "100"]])
def test_bad_arguments_exit_2_without_traceback(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    assert dataset_main(argv) == 2
    captured = capsys.readouterr()
    assert "Traceback" not in captured.out + captured.err and captured.err


def test_help_exits_0(capsys: pytest.CaptureFixture[str]) -> None:
    assert dataset_main(["check", "--help"]) == 0
    assert "--resolution" in capsys.readouterr().out


def test_non_ascii_names_print_on_an_ascii_terminal(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import io
    import sys

    folder = write_corpus(tmp_path / "corpus")
    stream = io.TextIOWrapper(io.BytesIO(), encoding="ascii")
    monkeypatch.setattr(sys, "stdout", stream)
    assert dataset_main(["check", str(folder)]) == 0
    stream.flush()
    assert b"caf\\xe9" in stream.buffer.getvalue()  # type: ignore[attr-defined]

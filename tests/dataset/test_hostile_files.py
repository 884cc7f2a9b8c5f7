"""Hostile dataset files: FIFOs, devices, huge captions and broken links are named, never waited on or read whole.

Each reader that could hang or eat memory on a regression runs in a child process with a time limit and an
address-space limit (``tests.hostile``), or in a thread that fails after a few seconds, so a regression fails
the test instead of hanging the suite.  Linux/macOS only: Windows has no FIFOs or ``/dev/zero``.
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image

from tests.hostile import run_limited, within
from trainer.dataset import CaptionStatus, DatasetCache, check_dataset, list_images, load_rgb, read_caption
from trainer.dataset.captions import MAX_CAPTION_BYTES
from trainer.dataset.imaging import DatasetImageError

pytestmark = pytest.mark.skipif(sys.platform == "win32" or not hasattr(os, "mkfifo"),
                                reason="FIFOs and /dev/zero are POSIX")

BIG_CAPTION = ("a photo of sks dog " * 60_000).encode()  # 1.1 MB of real words


def picture(path: Path, shade: int) -> Path:
    Image.new("RGB", (96, 96), (shade, 255 - shade, 40)).save(path)
    return path


def hostile_folder(root: Path) -> Path:
    """Good images with hostile captions, hostile "images", and links that go wrong."""
    folder = root / "hostile"
    folder.mkdir()
    for index, name in enumerate(["fifo", "zero", "big", "good", "outside"]):
        picture(folder / f"{name}.png", 40 * index)
    os.mkfifo(folder / "fifo.txt")
    (folder / "zero.txt").symlink_to("/dev/zero")
    (folder / "big.txt").write_bytes(BIG_CAPTION)
    (folder / "good.txt").write_text("a photo of sks dog", encoding="utf-8")
    os.mkfifo(folder / "pipe.png")
    (folder / "device.png").symlink_to("/dev/zero")
    (folder / "dangling.png").symlink_to(root / "nowhere.png")
    (folder / "loop.png").symlink_to("loop.png")
    elsewhere = picture(root / "elsewhere.png", 200)
    (folder / "outside.png").unlink()
    (folder / "outside.png").symlink_to(elsewhere)
    return folder


EXPECTED = {
    "fifo.png": {"caption_not_a_file"},
    "zero.png": {"caption_not_a_file"},
    "big.png": {"caption_too_large"},
    "pipe.png": {"not_a_file"},
    "device.png": {"not_a_file"},
    "dangling.png": {"broken_link"},
    "loop.png": {"broken_link"},
    "outside.png": {"link_outside"},
}


def test_dataset_check_names_every_hostile_file_without_hanging(tmp_path: Path) -> None:
    """As a user runs it: one line per file, exit 0 (good images remain), no hang, no MemoryError."""
    folder = hostile_folder(tmp_path)
    result = run_limited(["-m", "trainer", "dataset", "check", str(folder), "--json"], seconds=60)
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    codes: dict[str, set[str]] = {}
    for finding in report["findings"]:
        codes.setdefault(finding["file"], set()).add(finding["code"])
    for name, expected in EXPECTED.items():
        assert expected <= codes.get(name, set()), (name, codes.get(name))
    assert sorted(report["usable_images"]) == ["big.png", "fifo.png", "good.png", "outside.png", "zero.png"]
    messages = {f["file"]: f["message"] for f in report["findings"]}
    assert "named pipe (FIFO)" in messages["pipe.png"] and "nowhere.png" in messages["dangling.png"]
    text = run_limited(["-m", "trainer", "dataset", "check", str(folder)], seconds=60).stdout
    line = next(line for line in text.splitlines() if line.startswith("warning big.png"))
    assert "1.1 MB, over the 64 KiB limit" in line and "[caption_too_large]" in line


def test_read_caption_never_blocks_nor_reads_a_device_or_a_huge_file(tmp_path: Path) -> None:
    os.mkfifo(tmp_path / "fifo.txt")
    (tmp_path / "zero.txt").symlink_to("/dev/zero")
    with open(tmp_path / "sparse.txt", "wb") as handle:
        handle.truncate(200 * 1024 * 1024)  # 200 MB on paper, nothing on disk
    (tmp_path / "dangling.txt").symlink_to(tmp_path / "gone.txt")
    (tmp_path / "loop.txt").symlink_to("loop.txt")
    names = ["fifo.txt", "zero.txt", "sparse.txt", "dangling.txt", "loop.txt"]
    script = ("import json, sys; from trainer.dataset.captions import read_caption\n"
              "print(json.dumps([[c.status.value, c.error] for c in map(read_caption, sys.argv[1:])]))")
    result = run_limited(["-c", script, *(str(tmp_path / name) for name in names)], seconds=30,
                         memory_bytes=1 << 30)
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == [
        ["not_a_file", "a named pipe (FIFO)"],
        ["not_a_file", "a character device"],
        ["too_large", "209.7 MB"],
        ["unreadable", f"it is a link to {tmp_path / 'gone.txt'}, which does not exist"],
        ["unreadable", "it is a link that leads back to itself (loop.txt, a symbolic link loop)"],
    ]


def test_a_caption_at_the_limit_is_read_and_one_byte_more_is_not(tmp_path: Path) -> None:
    (tmp_path / "edge.txt").write_bytes(b"sks " * (MAX_CAPTION_BYTES // 4))
    (tmp_path / "over.txt").write_bytes(b"sks " * (MAX_CAPTION_BYTES // 4) + b"x")
    assert read_caption(tmp_path / "edge.txt").status is CaptionStatus.OK
    over = read_caption(tmp_path / "over.txt")
    assert (over.status, over.text) == (CaptionStatus.TOO_LARGE, "")
    assert over.problem == "is 64.0 KiB, over the 64 KiB limit for a caption, so it was not read"


def test_images_that_are_not_files_are_refused_before_opening(tmp_path: Path) -> None:
    os.mkfifo(tmp_path / "pipe.png")
    (tmp_path / "loop.png").symlink_to("loop.png")
    (tmp_path / "dangling.png").symlink_to(tmp_path / "gone.png")
    codes = {}
    for name in ("pipe.png", "loop.png", "dangling.png"):
        with pytest.raises(DatasetImageError) as caught:
            within(10, lambda name=name: load_rgb(tmp_path / name), fifos=[tmp_path / "pipe.png"])
        codes[name] = caught.value.code
        assert str(tmp_path / name) in str(caught.value)
    assert codes == {"pipe.png": "not_a_file", "loop.png": "broken_link", "dangling.png": "broken_link"}
    assert [item.image.name for item in list_images(tmp_path).items] == ["dangling.png", "loop.png", "pipe.png"]


def test_edits_of_a_linked_image_live_under_its_own_name(tmp_path: Path) -> None:
    """A link out of the folder (or to nothing) used to crash the panel's edits and the check."""
    folder = tmp_path / "data"
    folder.mkdir()
    (folder / "outside.png").symlink_to(picture(tmp_path / "elsewhere.png", 9))
    (folder / "dangling.png").symlink_to(tmp_path / "gone.png")
    edits = DatasetCache.for_folder(folder)
    edits.write_caption(folder / "outside.png", "an edited caption")
    assert edits.caption_path(folder / "outside.png") == folder / ".kamaal" / "captions" / "outside.png.txt"
    assert edits.read_caption(folder / "dangling.png") is None
    report = check_dataset(folder, 64, cache=edits)
    assert [info.caption for info in report.images if info.usable] == ["an edited caption"]


# ----------------------------------------------------------------------------- property: the caption reader

FILE_KINDS = ["bytes", "oversize", "folder", "fifo", "device", "dangling", "loop"]


@settings(max_examples=150, deadline=None, derandomize=True)
@given(kind=st.sampled_from(FILE_KINDS), data=st.binary(max_size=512),
       extra=st.integers(1, 4 * MAX_CAPTION_BYTES))
def test_the_caption_reader_returns_a_status_for_any_file(kind: str, data: bytes, extra: int) -> None:
    """Whatever sits at the caption's path, ``read_caption`` returns quickly with a status; it never raises,
    blocks or reads past the limit, and only a regular file's text is ever used."""
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "photo.txt"
        if kind == "bytes":
            path.write_bytes(data)
        elif kind == "oversize":
            with open(path, "wb") as handle:
                handle.write(data)
                handle.truncate(MAX_CAPTION_BYTES + extra)
        elif kind == "folder":
            path.mkdir()
        elif kind == "fifo":
            os.mkfifo(path)
        elif kind == "device":
            path.symlink_to("/dev/null")  # a character device; /dev/zero only in a child (run_limited)
        elif kind == "dangling":
            path.symlink_to(Path(folder) / "gone.txt")
        else:
            path.symlink_to(path.name)
        caption = within(10, lambda: read_caption(path), fifos=[path])
    expected = {"bytes": {CaptionStatus.OK, CaptionStatus.EMPTY}, "oversize": {CaptionStatus.TOO_LARGE},
                "folder": {CaptionStatus.DIRECTORY}, "fifo": {CaptionStatus.NOT_A_FILE},
                "device": {CaptionStatus.NOT_A_FILE}, "dangling": {CaptionStatus.UNREADABLE},
                "loop": {CaptionStatus.UNREADABLE}}[kind]
    assert caption.status in expected and caption.path == path
    assert (caption.text != "") == (caption.status is CaptionStatus.OK)
    assert (caption.problem is None) == (caption.status in (CaptionStatus.OK, CaptionStatus.EMPTY))
    assert len(caption.text) <= MAX_CAPTION_BYTES and "\n" not in caption.text

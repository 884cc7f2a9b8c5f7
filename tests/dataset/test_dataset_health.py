"""The health check on the generated corpus: every awkward file gets the right finding."""

from __future__ import annotations

import hashlib
import json
import threading
from pathlib import Path

import pytest
from conftest import BAD, EXPECTED, GOOD, write_corpus
from PIL import Image

from trainer.dataset import CheckCancelled, DatasetCache, DatasetImageError, Report, Severity, check_dataset, load_rgb


def test_every_file_gets_its_findings(corpus: Path, corpus_report: Report) -> None:
    for name, codes in EXPECTED.items():
        found = corpus_report.codes_for(corpus / name)
        assert codes <= found, f"{name}: expected {codes}, got {found}"
        if not codes:
            assert not found, f"{name} is a good image but got {found}"


def test_errors_are_exactly_the_broken_files(corpus: Path, corpus_report: Report) -> None:
    with_errors = {f.file.name for f in corpus_report.findings if f.severity is Severity.ERROR}
    assert with_errors == BAD
    assert {path.name for path in corpus_report.usable_images} == GOOD
    assert corpus_report.usable


def test_every_finding_says_what_to_do(corpus_report: Report) -> None:
    for finding in corpus_report.findings:
        assert finding.message.endswith("."), finding
        assert len(finding.message) > 40, finding


def test_usable_images_load_as_8_bit_rgb_of_the_reported_size(corpus_report: Report) -> None:
    for info in corpus_report.images:
        if not info.usable:
            continue
        image = load_rgb(info.path)
        assert image.mode == "RGB", info.path.name
        assert image.size == (info.width, info.height), info.path.name


def test_exif_rotation_is_applied(corpus: Path) -> None:
    image = load_rgb(corpus / "rotated.jpg")
    assert image.size == (520, 640)  # stored 640×520 with orientation 6
    with Image.open(corpus / "rotated.jpg") as raw:
        assert raw.size == (640, 520)


@pytest.mark.parametrize("name", sorted(BAD - {"pixel.png"}))
def test_broken_files_raise_an_error_naming_them(corpus: Path, name: str) -> None:
    with pytest.raises(DatasetImageError) as caught:
        load_rgb(corpus / name)
    assert name in str(caught.value)
    assert caught.value.code == next(iter(EXPECTED[name]))


def test_missing_captions_use_the_template(corpus: Path, corpus_report: Report) -> None:
    captions = {info.path.name: info.caption for info in corpus_report.images}
    assert captions["nocaption.bmp"] == "a photo of sks"
    assert captions["captiondir.jpg"] == "a photo of sks"
    assert captions["latin1.jpg"] == "café crème, sks dog"
    report = check_dataset(corpus, token="ohwx", template="{token} person, photo")
    assert {i.path.name: i.caption for i in report.images}["nocaption.bmp"] == "ohwx person, photo"


def test_missing_caption_is_only_a_note_when_no_image_has_one(tmp_path: Path) -> None:
    for seed in range(2):
        Image.new("RGB", (512, 512), (seed * 100, 50, 50)).save(tmp_path / f"{seed}.png")
    report = check_dataset(tmp_path)
    assert [f.severity for f in report.findings if f.code == "missing_caption"] == [Severity.INFO] * 2


def test_json_round_trips(corpus_report: Report) -> None:
    data = json.loads(corpus_report.to_json())
    assert data["usable"] is True
    assert sorted(data["usable_images"]) == sorted(GOOD)
    codes = {(f["file"], f["code"]) for f in data["findings"]}
    assert ("truncated.jpg", "truncated") in codes
    assert ("dup_b.png", "duplicate") in codes
    near = next(f for f in data["findings"] if f["code"] == "near_duplicate")
    assert (near["file"], near["related"]) == ("near_b.jpg", "near_a.jpg")


def test_progress_is_reported_on_the_calling_thread(corpus: Path) -> None:
    calls: list[tuple[int, int, threading.Thread]] = []
    check_dataset(corpus, progress=lambda done, total: calls.append((done, total, threading.current_thread())))
    total = len(GOOD) + len(BAD)
    assert [done for done, _, _ in calls] == list(range(total + 1))
    assert {t for _, _, t in calls} == {threading.current_thread()}


def test_cancel_stops_the_check(corpus: Path) -> None:
    cancel = threading.Event()

    def cancel_after_first(done: int, total: int) -> None:
        if done >= 1:
            cancel.set()

    with pytest.raises(CheckCancelled):
        check_dataset(corpus, progress=cancel_after_first, cancel=cancel, workers=1)
    with pytest.raises(CheckCancelled):
        check_dataset(corpus, cancel=cancel)  # already set: stops before decoding anything


def test_bad_folders_raise_os_errors(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        check_dataset(tmp_path / "missing")
    (tmp_path / "file.txt").write_text("x")
    with pytest.raises(NotADirectoryError):
        check_dataset(tmp_path / "file.txt")
    (tmp_path / "empty").mkdir()
    report = check_dataset(tmp_path / "empty")
    assert [f.code for f in report.findings] == ["no_images"] and not report.usable


def _snapshot(folder: Path) -> dict[str, tuple[int, str]]:
    return {p.name: (p.stat().st_mtime_ns, hashlib.sha256(p.read_bytes()).hexdigest())
            for p in folder.iterdir() if p.is_file()}


def test_originals_are_never_modified(tmp_path: Path) -> None:
    folder = write_corpus(tmp_path / "corpus")
    before = _snapshot(folder)
    cache = DatasetCache(tmp_path / "cache", folder)
    cache.write_caption(folder / "nocaption.bmp", "an edited caption of sks")
    report = check_dataset(folder, cache=cache)
    for path in report.usable_images:
        load_rgb(path)
    assert _snapshot(folder) == before
    assert {i.path.name: i.caption for i in report.images}["nocaption.bmp"] == "an edited caption of sks"
    assert "missing_caption" not in report.codes_for(folder / "nocaption.bmp")


def test_lower_pixel_limit_refuses_large_images(corpus: Path) -> None:
    report = check_dataset(corpus, max_pixels=500 * 500)
    assert "decompression_bomb" in report.codes_for(corpus / "good one.jpg")
    assert "small.png" in {p.name for p in report.usable_images}  # 300×300 is under the limit


def test_too_small_says_which_side_falls_short():
    from trainer.dataset import messages

    wide = messages.too_small(2000, 200, (1024, 256), 512)
    assert "(height 200 < 256)" in wide and "width" not in wide.split("(")[1].split(")")[0]
    both = messages.too_small(300, 200, (512, 512), 512)
    assert "(width 300 < 512 and height 200 < 512)" in both


def test_the_summary_counts_in_words():
    from pathlib import Path

    from trainer.dataset.report import Code, Finding, Report, Severity

    finding = Finding(Path("a.png"), Code.UNREADABLE, Severity.ERROR, "cannot be read")
    assert Report(Path("."), 512, (), (finding,)).summary() == "0 images, 0 usable: 1 error, 0 warnings, 0 notes"

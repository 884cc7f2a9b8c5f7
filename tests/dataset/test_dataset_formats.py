"""Every kind of image file people bring is read, or named by the health check with what to do.

Read: HEIC/HEIF (the iPhone's default, through pi-heif), AVIF (Pillow's own decoder), ``.jfif`` and
``.jpe`` (plain JPEG): listed by the scan, sized by the health check, trained on as pixels, shown as
thumbnails.  Named: JPEG XL, camera RAW, editor documents: listed too, refused by the check with a
message that says how to convert them, and left out of training with their name in the log.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch
from PIL import Image

from tests.dataset.conftest import picture, save_heic
from trainer.dataset import Code, Severity, check_dataset, imaging, list_images, load_thumbnail
from trainer.diffusion import data as training

SIZE = (128, 96)


def halves() -> Image.Image:
    """Red on the left, blue on the right: survives lossy codecs, and shows a mirrored or rotated decode."""
    image = Image.new("RGB", SIZE, (20, 20, 230))
    image.paste((230, 20, 20), (0, 0, SIZE[0] // 2, SIZE[1]))
    return image


@dataclass(frozen=True)
class Case:
    write: Callable[[Path], None]
    format: str = ""  # what Pillow calls it, for a format that is read
    advice: str = ""  # what the health check must tell the user to do, for one that is not


CASES = {
    "IMG_0001.HEIC": Case(lambda path: save_heic(halves(), path), format="HEIF"),
    "photo.avif": Case(lambda path: halves().save(path, "AVIF", quality=90), format="AVIF"),
    "photo.jfif": Case(lambda path: halves().save(path, "JPEG", quality=90), format="JPEG"),
    "photo.jpe": Case(lambda path: halves().save(path, "JPEG", quality=90), format="JPEG"),
    # Refused by their suffix before any decoding, so a JPEG XL codestream's signature is enough here.
    "drawing.jxl": Case(lambda path: path.write_bytes(b"\xff\x0a" + bytes(64)), advice="Convert it to PNG or JPEG"),
    "IMG_0002.CR2": Case(lambda path: path.write_bytes(b"II*\x00\x10\x00\x00\x00CR" + bytes(64)),
                         advice="Export it as JPEG or PNG"),
    "layers.psd": Case(lambda path: path.write_bytes(b"8BPS\x00\x01" + bytes(64)),
                       advice="Export it from that editor as PNG or JPEG"),
}


@pytest.mark.parametrize("name", list(CASES))
def test_every_image_file_is_read_or_named_with_what_to_do(tmp_path: Path, caplog: pytest.LogCaptureFixture,
                                                            name: str) -> None:
    case, folder = CASES[name], tmp_path / "dataset"
    folder.mkdir()
    path = folder / name
    case.write(path)
    (folder / f"{path.stem}.txt").write_text("a photo of sks", encoding="utf-8")

    assert [(item.image, item.caption) for item in list_images(folder).items] == [(path, folder / f"{path.stem}.txt")]
    report = check_dataset(folder, resolution=128)
    buckets = training.training_buckets(128, 64, 256, True)
    with caplog.at_level(logging.WARNING):
        examples = training.collect_examples(str(folder), "dataset.path", training.caption_maker("{token}", "sks"),
                                             buckets, False, ".txt", logging.getLogger("formats"))

    if case.format:
        (info,) = report.images
        assert info.usable and (info.width, info.height) == SIZE and info.format == case.format
        assert not [f for f in report.findings if f.severity is Severity.ERROR], report.findings
        (example,) = examples
        assert example.size == SIZE and example.caption == "a photo of sks"
        pixels, _ = training.load_pixels(example, "center", False, torch.Generator().manual_seed(0))
        assert pixels.shape == (3, example.bucket[1], example.bucket[0])
        quarter = pixels.shape[2] // 4
        left, right = pixels[:, :, :quarter].mean(dim=(1, 2)), pixels[:, :, -quarter:].mean(dim=(1, 2))
        assert left[0] > 0.6 and left[2] < -0.6, left  # red on the left (values in [-1, 1])
        assert right[2] > 0.6 and right[0] < -0.6, right  # blue on the right
        assert load_thumbnail(path, 64).size == (64, 48)
    else:
        (finding,) = report.findings_for(path)
        assert (finding.code, finding.severity) == (Code.UNSUPPORTED_FORMAT, Severity.ERROR)
        assert path.suffix in finding.message and case.advice in finding.message, finding.message
        assert report.usable_images == [] and examples == []
        assert str(path) in caplog.text and case.advice.lower() in caplog.text.lower()


def test_without_its_decoder_heic_is_named_and_every_other_image_still_reads(tmp_path: Path,
                                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    """A broken install, or a packaged app that lost libheif, costs the HEIC photos only, each named."""
    monkeypatch.setattr(imaging, "heif_available", lambda: False)
    save_heic(picture(1, 320, 240), tmp_path / "IMG_0001.HEIC")
    picture(2, 320, 240).save(tmp_path / "IMG_0002.jpg", quality=90)
    report = check_dataset(tmp_path, resolution=128)
    assert report.usable_images == [tmp_path / "IMG_0002.jpg"]
    (finding,) = report.findings_for(tmp_path / "IMG_0001.HEIC")
    assert finding.code is Code.UNSUPPORTED_FORMAT and "pi-heif" in finding.message and "JPEG" in finding.message

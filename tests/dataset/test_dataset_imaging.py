"""Loading and converting images: every mode becomes 8-bit RGB, bombs are never decoded."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
from conftest import bomb_png, picture
from PIL import Image, ImageFile

from trainer.dataset import DatasetImageError, DecompressionBomb, load_rgb, load_thumbnail, read_header, to_rgb8
from trainer.dataset.hashing import Fingerprint, hamming, near_duplicates


@pytest.mark.parametrize("mode", ["1", "L", "LA", "P", "PA", "RGBA", "RGBa", "CMYK", "I;16", "I", "F",
                                  "YCbCr", "LAB", "HSV"])
def test_every_mode_becomes_8_bit_rgb(mode: str) -> None:
    image = to_rgb8(picture(1, 32, 16).convert(mode) if mode not in ("I;16", "RGBa") else _odd(mode))
    assert image.mode == "RGB" and image.size == (32, 16)


def _odd(mode: str) -> Image.Image:
    if mode == "I;16":
        return Image.fromarray(np.full((16, 32), 40000, dtype=np.uint16))
    return picture(1, 32, 16).convert("RGBA").convert(mode)


def test_sixteen_bit_uses_the_full_range() -> None:
    ramp = Image.fromarray(np.array([[0, 257 * 128, 65535]], dtype=np.uint16))
    assert ramp.mode == "I;16"
    assert np.asarray(to_rgb8(ramp))[0, :, 0].tolist() == [0, 128, 255]


def test_transparent_pixels_become_white() -> None:
    rgba = Image.new("RGBA", (2, 1), (255, 0, 0, 255))
    rgba.putpixel((1, 0), (0, 0, 0, 0))
    assert np.asarray(to_rgb8(rgba)).tolist() == [[[255, 0, 0], [255, 255, 255]]]
    palette = rgba.convert("P")
    palette.info["transparency"] = palette.getpixel((1, 0))
    assert np.asarray(to_rgb8(palette))[0, 1].tolist() == [255, 255, 255]


def test_bombs_are_refused_without_decoding(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    bomb = tmp_path / "bomb.png"
    bomb.write_bytes(bomb_png())
    big = tmp_path / "big.png"
    picture(2, 600, 600).save(big)
    decoded: list[object] = []
    real_load = ImageFile.ImageFile.load
    monkeypatch.setattr(ImageFile.ImageFile, "load", lambda self: decoded.append(self) or real_load(self))
    for path, limit in ((bomb, None), (big, 1000)):
        with pytest.raises(DatasetImageError) as caught:
            load_rgb(path, max_pixels=limit)
        assert caught.value.code == "decompression_bomb" and path.name in str(caught.value)
    with pytest.raises(DecompressionBomb) as caught:
        read_header(big, max_pixels=1000)
    assert (caught.value.width, caught.value.height) == (600, 600)
    assert decoded == []


def test_header_reads_do_not_decode(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "a.png"
    picture(3, 300, 200).convert("RGBA").save(path)
    monkeypatch.setattr(ImageFile.ImageFile, "load", lambda self: pytest.fail("decoded a header read"))
    header = read_header(path)
    assert (header.width, header.height, header.mode, header.format) == (300, 200, "RGBA", "PNG")


def test_thumbnails_are_small_rgb_and_oriented(corpus: Path) -> None:
    for name in ("rotated.jpg", "sixteen.png", "cmyk.jpg", "palette.png", "photo.webp"):
        thumb = load_thumbnail(corpus / name, 128)
        assert thumb.mode == "RGB" and max(thumb.size) == 128, name
    assert load_thumbnail(corpus / "rotated.jpg").size == (104, 128)  # portrait after rotation


def test_cmyk_colours_survive(corpus: Path) -> None:
    original = np.asarray(picture(5), dtype=np.int16)
    loaded = np.asarray(load_rgb(corpus / "cmyk.jpg"), dtype=np.int16)
    assert np.abs(original - loaded).mean() < 12


def test_fingerprints_match_near_copies_but_not_other_pictures() -> None:
    base = picture(4, 400, 300)
    near = base.resize((300, 225)).point(lambda v: min(255, v + 8))
    other = picture(5, 400, 300)
    a, b, c = (Fingerprint.of(i) for i in (base, near, other))
    assert hamming(a.dhash, b.dhash) <= 6 < hamming(a.dhash, c.dhash)
    assert near_duplicates([a, b, c]) == {1: (0, hamming(a.dhash, b.dhash))}


def test_flat_images_of_different_colours_are_not_near_duplicates() -> None:
    flats = [Fingerprint.of(Image.new("RGB", (64, 64), colour)) for colour in ("red", "blue", "white")]
    assert len({f.dhash for f in flats}) == 1  # the gradient hash alone cannot tell them apart
    assert near_duplicates(flats) == {}


@pytest.mark.parametrize("fmt", ["PNG", "WEBP", "GIF", "TIFF", "BMP", "JPEG"])
def test_truncated_files_of_every_format_are_refused(tmp_path: Path, fmt: str) -> None:
    buffer = io.BytesIO()
    picture(6, 300, 300).save(buffer, fmt)
    path = tmp_path / f"cut.{fmt.lower()}"
    path.write_bytes(buffer.getvalue()[: len(buffer.getvalue()) * 7 // 10])
    with pytest.raises(DatasetImageError) as caught:
        load_rgb(path)
    assert caught.value.code in ("truncated", "unreadable") and "cut." in str(caught.value)


def test_an_invalid_orientation_tag_is_ignored(tmp_path: Path) -> None:
    exif = Image.Exif()
    exif[0x0112] = 9  # out of range: viewers ignore it, so do we
    picture(7, 100, 80).save(tmp_path / "odd.jpg", exif=exif.tobytes())
    assert load_rgb(tmp_path / "odd.jpg").size == (100, 80)
    assert read_header(tmp_path / "odd.jpg").orientation == 1

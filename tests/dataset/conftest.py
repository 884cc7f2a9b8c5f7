"""A corpus of good, broken and awkward dataset files, generated once per test session.

Nothing binary is committed: every file is drawn here with Pillow and numpy (HEIC: pillow-heif).  ``GOOD`` lists
the images training must accept, ``BAD`` the ones it must refuse, and ``EXPECTED`` the finding
codes each file must get.
"""

from __future__ import annotations

import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageEnhance

from trainer.dataset import Report, check_dataset

# file name -> codes the health check must report for it (at least these)
EXPECTED: dict[str, set[str]] = {
    "good one.jpg": set(),
    "café ünïcode.png": set(),
    "photo.webp": set(),
    "scan.tiff": set(),
    "cmyk.jpg": {"cmyk"},
    "sixteen.png": {"high_bit_depth", "grayscale"},
    "palette.png": {"palette", "transparency"},
    "rotated.jpg": {"exif_orientation"},
    "latin1.jpg": {"caption_encoding"},
    "captiondir.jpg": {"caption_is_directory"},
    "dup_a.png": set(),
    "dup_b.png": {"duplicate"},
    "near_a.jpg": set(),
    "near_b.jpg": {"near_duplicate"},
    "long.png": {"caption_too_long"},
    "small.png": {"too_small"},
    "wide.png": {"extreme_aspect"},
    "nocaption.bmp": {"missing_caption"},
    "anim.gif": {"animated", "palette"},
    "same.jpg": set(),
    "same.png": {"shared_caption"},
    "truncated.jpg": {"truncated"},
    "empty.png": {"zero_byte"},
    "notes.png": {"not_an_image"},
    "bomb.png": {"decompression_bomb"},
    "pixel.png": {"tiny"},
    "orphan.txt": {"orphan_caption"},
}
BAD = {"truncated.jpg", "empty.png", "notes.png", "bomb.png", "pixel.png"}
GOOD = {name for name in EXPECTED if name not in BAD and not name.endswith(".txt")}
ROTATED_RAW_SIZE = (640, 520)  # stored landscape, EXIF orientation 6 turns it portrait


def picture(seed: int, width: int = 600, height: int = 600) -> Image.Image:
    """A smooth random picture: distinct per seed, so no two seeds look like near-duplicates."""
    rng = np.random.default_rng(seed)
    coarse = Image.fromarray(rng.integers(0, 256, (6, 6, 3), dtype=np.uint8), mode="RGB")
    return coarse.resize((width, height), Image.Resampling.BICUBIC)


def bomb_png(width: int = 50_000, height: int = 50_000) -> bytes:
    """A valid PNG signature and IHDR claiming ``width``×``height``, with a tiny body."""
    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)  # 8-bit RGB
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 64))
            + chunk(b"IEND", b""))


def jpeg_bytes(image: Image.Image, **options: object) -> bytes:
    import io

    buffer = io.BytesIO()
    image.save(buffer, "JPEG", quality=90, **options)
    return buffer.getvalue()


def save_heic(image: Image.Image, path: Path) -> None:
    """Write a real HEIC file (HEVC-coded, as an iPhone does) with pillow-heif, a test-only dependency: Kamaal
    itself reads HEIC through pi-heif, which has no encoder.  Not registered with Pillow, so it cannot stand
    in for pi-heif's reader."""
    import pillow_heif

    pillow_heif.from_pillow(image).save(path, quality=90)


def write_corpus(folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    captions = {"good one": "a photo of sks dog on a beach", "café ünïcode": "ein Foto von sks Hund im Café",
                "photo": "sks dog, studio light", "scan": "a scan of sks", "cmyk": "a printed sks poster",
                "sixteen": "a gray sks", "palette": "an icon of sks", "rotated": "sks dog standing",
                "captiondir": None, "dup_a": "sks", "dup_b": "sks", "near_a": "sks at the park",
                "near_b": "sks at the park again", "long": " ".join(["sks dog running"] * 35),
                "small": "a small sks", "wide": "a panorama with sks", "anim": "sks moving", "same": "shared"}
    for stem, text in captions.items():
        if text is not None:
            (folder / f"{stem}.txt").write_text(text, encoding="utf-8")
    (folder / "latin1.txt").write_bytes("café crème, sks dog".encode("cp1252"))
    (folder / "captiondir.txt").mkdir()
    (folder / "orphan.txt").write_text("an image that was deleted", encoding="utf-8")

    picture(1, 640, 512).save(folder / "good one.jpg", quality=90)
    picture(2).save(folder / "café ünïcode.png", compress_level=1)
    picture(3).save(folder / "photo.webp", quality=90)
    picture(4).save(folder / "scan.tiff")
    picture(5).convert("CMYK").save(folder / "cmyk.jpg", quality=90)
    ramp = np.linspace(0, 65535, 600 * 600).reshape(600, 600).astype(np.uint16)
    Image.fromarray(ramp).save(folder / "sixteen.png", compress_level=1)  # mode I;16: a 16-bit grayscale PNG
    palette = picture(6).quantize(16, method=Image.Quantize.FASTOCTREE)
    palette.save(folder / "palette.png", transparency=0, compress_level=1)
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90° clockwise to display"
    picture(7, *ROTATED_RAW_SIZE).save(folder / "rotated.jpg", exif=exif.tobytes(), quality=90)
    picture(8).save(folder / "latin1.jpg", quality=90)
    picture(9).save(folder / "captiondir.jpg", quality=90)
    picture(10).save(folder / "dup_a.png", compress_level=1)
    (folder / "dup_b.png").write_bytes((folder / "dup_a.png").read_bytes())
    near = picture(11, 640, 640)
    near.save(folder / "near_a.jpg", quality=90)
    ImageEnhance.Brightness(near).enhance(1.06).resize((560, 560)).save(folder / "near_b.jpg", quality=85)
    picture(12).save(folder / "long.png", compress_level=1)
    picture(13, 300, 300).save(folder / "small.png", compress_level=1)
    picture(14, 2400, 400).save(folder / "wide.png", compress_level=1)
    picture(15).save(folder / "nocaption.bmp")
    frames = [picture(seed).quantize(64, method=Image.Quantize.FASTOCTREE) for seed in (16, 17)]
    frames[0].save(folder / "anim.gif", save_all=True, append_images=frames[1:], duration=100)
    picture(18).save(folder / "same.jpg", quality=90)
    picture(19).save(folder / "same.png", compress_level=1)

    good_jpeg = jpeg_bytes(picture(20))
    (folder / "truncated.jpg").write_bytes(good_jpeg[: len(good_jpeg) * 6 // 10])
    (folder / "empty.png").write_bytes(b"")
    (folder / "notes.png").write_text("these are my notes, not a picture\n", encoding="utf-8")
    (folder / "bomb.png").write_bytes(bomb_png())
    Image.new("RGB", (1, 1), (200, 30, 30)).save(folder / "pixel.png", compress_level=1)
    return folder


@pytest.fixture(scope="session")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_corpus(tmp_path_factory.mktemp("dataset") / "corpus")


@pytest.fixture(scope="session")
def corpus_report(corpus: Path) -> Report:
    return check_dataset(corpus, resolution=512)

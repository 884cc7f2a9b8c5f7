"""Render docs/screenshots/dataset-20.png, dataset-concepts.png, dataset-500.png, dataset-mask.png and the
captioning pair: the Dataset page on drawn images.

    QT_QPA_PLATFORM=offscreen .venv/bin/python docs/screenshots/make_dataset_screenshots.py [OUT_DIR]

20 images (plus a few awkward files from the test corpus) in a DreamBooth project with a second
concept (a cat, its own token, repeats and class set), showing the health findings; the same
project with the second concept selected; 500 images in a LoRA project with a multi-selection
for bulk edits; the crop view with a loss mask painted around the dog; the "Caption images…" dialog after a
preview, and the page after the run (dataset-caption-dialog.png, dataset-captioned.png).  Everything
happens in a throwaway folder; the pictures are drawn here (a dog-ish shape in a landscape).
"""

from __future__ import annotations

import os
import random
import shutil
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))

from PIL import Image, ImageDraw, ImageFilter  # noqa: E402

WORDS = ["on the beach", "in the park", "sitting on grass", "at sunset", "running", "in the snow", "close-up"]


def scene(seed: int, width: int, height: int) -> tuple[Image.Image, tuple[int, int]]:
    """The picture, and where the dog's body is centred."""
    rnd = random.Random(seed)
    top = (rnd.randint(90, 160), rnd.randint(140, 200), rnd.randint(200, 255))
    bottom = (rnd.randint(230, 255), rnd.randint(180, 230), rnd.randint(150, 210))
    image = Image.new("RGB", (width, height))
    draw = ImageDraw.Draw(image)
    for y in range(height):
        t = y / height
        draw.line([(0, y), (width, y)], fill=tuple(int(top[k] * (1 - t) + bottom[k] * t) for k in range(3)))
    horizon = int(height * rnd.uniform(0.55, 0.75))
    for layer in range(3):
        hills = [(x, horizon - layer * 25 + int(rnd.uniform(-30, 30))) for x in range(0, width + 60, 60)]
        draw.polygon([(0, height), *hills, (width, height)],
                     fill=(rnd.randint(40, 90) + layer * 20, rnd.randint(100, 150) - layer * 15, rnd.randint(50, 90)))
    sx, sy, r = rnd.randint(40, width - 40), rnd.randint(30, horizon // 2), rnd.randint(18, 40)
    draw.ellipse((sx - r, sy - r, sx + r, sy + r), fill=(255, rnd.randint(200, 240), 120))
    cx, cy = rnd.randint(width // 4, 3 * width // 4), horizon + rnd.randint(10, 40)
    fur = (rnd.randint(120, 200), rnd.randint(80, 130), rnd.randint(40, 80))
    draw.ellipse((cx - 60, cy - 30, cx + 60, cy + 30), fill=fur)
    draw.ellipse((cx + 40, cy - 60, cx + 90, cy - 10), fill=fur)
    draw.ellipse((cx + 70, cy - 45, cx + 78, cy - 37), fill=(20, 20, 20))
    for leg in (-45, -20, 20, 45):
        draw.rectangle((cx + leg - 6, cy + 15, cx + leg + 6, cy + 55), fill=fur)
    return image.filter(ImageFilter.SMOOTH), (cx, cy)


def make_images(folder: Path, count: int, awkward: bool) -> None:
    folder.mkdir(parents=True)
    for i in range(count):
        width, height = random.Random(i).choice([(640, 512), (512, 640), (576, 576), (768, 512), (512, 768)])
        scene(i, width, height)[0].save(folder / f"dog_{i:03d}.jpg", quality=88)
        if i % 7 != 3:  # some without a caption, as in real folders
            (folder / f"dog_{i:03d}.txt").write_text(f"a photo of sks dog {WORDS[i % len(WORDS)]}", encoding="utf-8")
    if awkward:
        from tests.dataset.conftest import write_corpus

        corpus = write_corpus(folder.parent / "corpus")
        for name in ("truncated.jpg", "rotated.jpg", "rotated.txt", "small.png", "small.txt", "long.png", "long.txt"):
            shutil.copy(corpus / name, folder / name)
        shutil.copy(folder / "dog_002.jpg", folder / "dog_002 copy.jpg")


def make_cats(folder: Path, count: int) -> None:
    """A second concept: a grey cat-ish shape on plain backgrounds, no captions (the template is used)."""
    folder.mkdir(parents=True)
    for i in range(count):
        rnd = random.Random(1000 + i)
        image = Image.new("RGB", (512, 512), (rnd.randint(200, 240), rnd.randint(190, 230), rnd.randint(170, 220)))
        draw = ImageDraw.Draw(image)
        grey = rnd.randint(70, 130)
        cx, cy = rnd.randint(200, 312), rnd.randint(260, 330)
        draw.ellipse((cx - 90, cy - 50, cx + 90, cy + 80), fill=(grey, grey, grey + 10))
        draw.ellipse((cx - 60, cy - 150, cx + 60, cy - 30), fill=(grey, grey, grey + 10))
        draw.polygon([(cx - 55, cy - 110), (cx - 45, cy - 185), (cx - 10, cy - 140)], fill=(grey, grey, grey + 10))
        draw.polygon([(cx + 55, cy - 110), (cx + 45, cy - 185), (cx + 10, cy - 140)], fill=(grey, grey, grey + 10))
        for eye in (-25, 25):
            draw.ellipse((cx + eye - 9, cy - 100, cx + eye + 9, cy - 82), fill=(120, 200, 90))
        image.filter(ImageFilter.SMOOTH).save(folder / f"cat_{i:02d}.png")


def render(scratch: Path, count: int, preset: str, out: Path, concepts_out: Path | None = None) -> None:
    from PySide6.QtCore import QEventLoop, QTimer

    from desktop_app.dataset import DatasetPanel
    from desktop_app.train.config_model import ConfigModel
    from trainer.config import apply_overrides, config_from_dict, load_config

    root = scratch / f"my-dog-{count}"
    make_images(root / "datasets" / "subject", count, awkward=count <= 30)
    base = load_config(REPO / "resources" / "presets" / f"{preset}.toml")
    overrides = ["dataset.path=datasets/subject", "dataset.name=my dog", "dreambooth.class_prompt=a photo of a dog",
                 "dreambooth.num_class_images=100"]
    data = apply_overrides(base.to_dict(), overrides)
    if concepts_out is not None:
        make_cats(root / "datasets" / "cat", 9)
        data["concepts"] = [{"name": "my cat", "path": "datasets/cat", "instance_token": "zwx",
                             "caption_template": "a photo of {token} cat", "repeats": 3,
                             "class_dir": "datasets/class-cat", "class_prompt": "a photo of a cat",
                             "num_class_images": 50}]
    config = config_from_dict(data)
    panel = DatasetPanel(ConfigModel(config), root)
    panel.resize(1280, 800)
    panel.show()

    def spin(ms: int) -> None:
        loop = QEventLoop()
        QTimer.singleShot(ms, loop.quit)
        loop.exec()

    started = time.perf_counter()
    while time.perf_counter() - started < 60 and not panel.dataset.report_summary:
        spin(100)
    spin(1500)  # the thumbnails of the first screen
    if count <= 30:
        panel.select_rows([1])
        panel.tabs.setCurrentWidget(panel.findings)
    else:
        panel.select_rows(list(range(3, 40, 2)))
    spin(800)
    panel.grab().save(str(out))
    if concepts_out is not None:
        panel.store.select(1)
        started = time.perf_counter()
        while time.perf_counter() - started < 30 and len(panel.dataset.entries) != 9:
            spin(100)
        spin(1500)
        panel.tabs.setCurrentIndex(0)  # the caption editor: the concept's template fills missing captions
        panel.select_rows([0])
        spin(500)
        panel.grab().save(str(concepts_out))
        print(f"wrote {concepts_out}")
    panel.shutdown()
    print(f"wrote {out}: {panel.dataset.report_summary}")


def render_mask(scratch: Path, out: Path) -> None:
    """The crop view of an image whose loss mask keeps the dog (an ellipse around it) and ignores the landscape."""
    from PySide6.QtCore import QEventLoop, QTimer

    from desktop_app.dataset import DatasetPanel
    from desktop_app.train.config_model import ConfigModel
    from trainer.config import apply_overrides, config_from_dict, load_config

    root = scratch / "my-dog-masked"
    folder = root / "datasets" / "subject"
    make_images(folder, 6, awkward=False)
    first = Image.open(folder / "dog_000.jpg")
    _, (cx, cy) = scene(0, *first.size)  # make_images drew image 0 with seed 0
    mask = Image.new("L", first.size, 0)
    ImageDraw.Draw(mask).ellipse((cx - 85, cy - 80, cx + 110, cy + 75), fill=255)
    mask.filter(ImageFilter.GaussianBlur(6)).save(folder / "dog_000.mask.png")
    data = apply_overrides(load_config(REPO / "resources" / "presets" / "sd15-lora-8gb.toml").to_dict(),
                           ["dataset.path=datasets/subject", "dataset.name=my dog", "dataset.masked_loss=true"])
    panel = DatasetPanel(ConfigModel(config_from_dict(data)), root)
    panel.resize(1280, 800)
    panel.show()

    def spin(ms: int) -> None:
        loop = QEventLoop()
        QTimer.singleShot(ms, loop.quit)
        loop.exec()

    started = time.perf_counter()
    while time.perf_counter() - started < 30 and not (len(panel.dataset.entries) == 6
                                                     and all(e.size for e in panel.dataset.entries)):
        spin(100)
    panel.tabs.setCurrentWidget(panel.crop)
    panel.select_rows([0])
    spin(1500)
    panel.crop.findChild(type(panel.crop.reset), "paintTool").click()
    spin(300)
    panel.grab().save(str(out))
    panel.shutdown()
    print(f"wrote {out}")


def render_captioning(scratch: Path, out: Path, page_out: Path) -> None:
    """The "Caption images…" dialog after a preview by a tiny WD14-style tagger (built here, the tests' own: its
    tags follow the picture's colours), then the page after captioning the images that had none, Undo offered."""
    from PySide6.QtCore import QEventLoop, QTimer

    from desktop_app.dataset import DatasetPanel
    from desktop_app.train.config_model import ConfigModel
    from tests.dataset.test_captioning import write_tagger
    from trainer.config import apply_overrides, config_from_dict, load_config

    root = scratch / "my-dog-captioned"
    make_images(root / "datasets" / "subject", 14, awkward=False)
    tagger = write_tagger(scratch / "models" / "wd-vit-tagger-v3",
                          [("brown_dog", 0), ("blue_sky", 0), ("outdoors", 0), ("sks_character", 4), ("safe", 9)])
    data = apply_overrides(load_config(REPO / "resources" / "presets" / "sd15-dreambooth.toml").to_dict(),
                           ["dataset.path=datasets/subject", "dataset.name=my dog"])
    panel = DatasetPanel(ConfigModel(config_from_dict(data)), root)
    panel.resize(1280, 800)
    panel.show()

    def spin(ms: int) -> None:
        loop = QEventLoop()
        QTimer.singleShot(ms, loop.quit)
        loop.exec()

    def wait(done, seconds: float = 60) -> None:
        started = time.perf_counter()
        while time.perf_counter() - started < seconds and not done():
            spin(100)

    wait(lambda: len(panel.dataset.entries) == 14)
    spin(1500)
    dialog = panel.open_caption_dialog()
    dialog.model.setText(str(tagger))
    dialog.preview()
    wait(lambda: dialog.table.rowCount() > 0 and not panel.auto_captioner.is_busy())
    spin(300)
    dialog.grab().save(str(out))
    print(f"wrote {out}")
    dialog.run()
    wait(lambda: not panel.auto_captioner.is_busy())
    dialog.close()
    panel.select_rows([3])
    wait(lambda: bool(panel.dataset.report_summary))
    spin(800)
    panel.grab().save(str(page_out))
    panel.shutdown()
    print(f"wrote {page_out}")


def main() -> int:
    from PySide6.QtWidgets import QApplication

    from desktop_app.style import apply_style

    out_dir = Path(sys.argv[1]) if len(sys.argv) > 1 else Path(__file__).resolve().parent
    app = QApplication.instance() or QApplication([])
    apply_style(app)  # type: ignore[arg-type]
    with tempfile.TemporaryDirectory(prefix="kamaal-dataset-shot-") as scratch:
        render(Path(scratch), 20, "sd15-dreambooth", out_dir / "dataset-20.png", out_dir / "dataset-concepts.png")
        render(Path(scratch), 500, "sd15-lora-8gb", out_dir / "dataset-500.png")
        render_mask(Path(scratch), out_dir / "dataset-mask.png")
        render_captioning(Path(scratch), out_dir / "dataset-caption-dialog.png", out_dir / "dataset-captioned.png")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

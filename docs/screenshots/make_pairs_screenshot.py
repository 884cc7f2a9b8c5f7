"""Render docs/screenshots/dataset-pairs.png: the Dataset page on a concept of before/after pairs (issue 28).

    QT_QPA_PLATFORM=offscreen .venv/bin/python docs/screenshots/make_pairs_screenshot.py [OUT_DIR]

Twelve "make it red" pairs by the suffix convention (``scene_03.jpg`` + ``scene_03_control.jpg``: the control
is the landscape, the target the same picture turned red), one target whose control is missing and one control
of another shape, in a project of the first edit family's preset (Flux.1 when the registry has none); one pair
selected on the Caption tab.  Everything happens in a throwaway folder; the pictures are drawn here.
"""

from __future__ import annotations

import os
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))

from PIL import Image, ImageOps  # noqa: E402

from docs.screenshots.make_dataset_screenshots import scene  # noqa: E402


def redden(image: Image.Image) -> Image.Image:
    """The edit the pairs teach: the picture's brightness, in reds."""
    return ImageOps.colorize(ImageOps.grayscale(image), black=(40, 0, 0), white=(255, 200, 190), mid=(200, 40, 30))


def make_pairs(folder: Path, count: int) -> None:
    folder.mkdir(parents=True)
    for i in range(count):
        picture, _ = scene(i, 640, 512)
        redden(picture).save(folder / f"scene_{i:02d}.jpg", quality=90)
        (folder / f"scene_{i:02d}.txt").write_text("make it red, keep everything else", encoding="utf-8")
        if i == 5:
            continue  # a target whose control is missing
        control = scene(i, 512, 512)[0] if i == 8 else picture  # one control of another shape
        control.save(folder / f"scene_{i:02d}_control.jpg", quality=90)


def preset() -> Path:
    from trainer.families import FAMILIES

    edit = [name for name, f in FAMILIES.items() if getattr(f, "control_images", 0)]
    found = sorted((REPO / "resources" / "presets").glob(f"{edit[0]}-*.toml")) if edit else []
    return found[0] if found else REPO / "resources" / "presets" / "flux-lora-16gb.toml"


def main() -> int:
    from PySide6.QtCore import QEventLoop, QTimer
    from PySide6.QtWidgets import QApplication

    from desktop_app.dataset import DatasetPanel
    from desktop_app.style import apply_style
    from desktop_app.train.config_model import ConfigModel
    from trainer.config import apply_overrides, config_from_dict, load_config

    out = (Path(sys.argv[1]) if len(sys.argv) > 1 else Path(__file__).resolve().parent) / "dataset-pairs.png"
    out.parent.mkdir(parents=True, exist_ok=True)
    app = QApplication.instance() or QApplication([])
    apply_style(app)  # type: ignore[arg-type]

    def spin(ms: int) -> None:
        loop = QEventLoop()
        QTimer.singleShot(ms, loop.quit)
        loop.exec()

    with tempfile.TemporaryDirectory(prefix="kamaal-pairs-shot-") as scratch:
        root = Path(scratch) / "make-it-red"
        make_pairs(root / "datasets" / "red", 12)
        overrides = ["dataset.path=datasets/red", "dataset.name=make it red", "dataset.resolution=512"]
        data = apply_overrides(load_config(preset()).to_dict(), overrides)
        panel = DatasetPanel(ConfigModel(config_from_dict(data)), root)
        panel.resize(1280, 800)
        panel.show()
        started = time.perf_counter()
        while time.perf_counter() - started < 60 and not panel.dataset.report_summary:
            spin(100)
        panel.select_rows([3])
        spin(2000)  # the thumbnails of the first screen and of the pair
        if not panel.grab().save(str(out)):
            raise SystemExit(f"could not write {out}")
        print(f"wrote {out}: {panel.dataset.report_summary}")
        panel.shutdown()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

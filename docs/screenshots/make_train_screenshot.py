"""Render docs/screenshots/train-concepts.png: the Train page of a DreamBooth project with three
concepts, scrolled to the Dataset group (a card per concept: images, token, repeats, resolution,
folder, class set).

    QT_QPA_PLATFORM=offscreen .venv/bin/python docs/screenshots/make_train_screenshot.py [OUT_DIR] [CONCEPTS]

CONCEPTS (1 to 3, default 3) picks how many; the file is train-concepts.png for 3, else
train-concepts-N.png.  Everything happens in a throwaway folder, with the drawn images of
``make_dataset_screenshots``.
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
sys.path.insert(0, str(Path(__file__).resolve().parent))

from make_dataset_screenshots import make_cats, make_images  # noqa: E402

FURTHER_CONCEPTS = [
    {"name": "my cat", "path": "datasets/cat", "instance_token": "zwx", "caption_template": "a photo of {token} cat",
     "repeats": 3, "class_dir": "datasets/class-cat", "class_prompt": "a photo of a cat", "num_class_images": 50},
    {"name": "", "path": "datasets/grandmas-garden-in-summer", "instance_token": "ohwx",
     "caption_template": "a photo of {token} garden", "repeats": 2, "resolution": 768},
]


def render(scratch: Path, concepts: int, out: Path) -> None:
    from PySide6.QtCore import QEventLoop, QTimer
    from PySide6.QtWidgets import QScrollArea

    from desktop_app.main_window import MainWindow
    from trainer.config import apply_overrides, config_from_dict
    from trainer.project import Project

    project = Project.create(scratch / "my-dog", REPO / "resources" / "presets" / "sd15-dreambooth.toml")
    make_images(project.root / "datasets" / "subject", 12, awkward=False)
    make_cats(project.root / "datasets" / "cat", 9)
    make_cats(project.root / "datasets" / "grandmas-garden-in-summer", 5)
    data = apply_overrides(project.config.to_dict(), [
        "dataset.path=datasets/subject", "dataset.name=my dog", "dreambooth.class_prompt=a photo of a dog",
        "dreambooth.class_dir=datasets/class-dog"])
    data["concepts"] = FURTHER_CONCEPTS[:concepts - 1]
    project.save(config_from_dict(data))
    window = MainWindow(Project.open(project.root), ask=lambda *_args: True)
    window.resize(1280, 800)
    window.show()
    window.show_page(window.splitter)

    def spin(ms: int) -> None:
        loop = QEventLoop()
        QTimer.singleShot(ms, loop.quit)
        loop.exec()

    store = window.dataset_panel.store
    started = time.perf_counter()
    while time.perf_counter() - started < 30 and len(store.counts) < store.count():
        spin(100)  # the image counts, listed on the Dataset page's worker threads
    form = window.hyperparameters_panel
    scroll = form.findChild(QScrollArea)
    scroll.verticalScrollBar().setValue(form.groups["dataset"].y() - 8)
    spin(500)
    window.grab().save(str(out))
    window.close()
    print(f"wrote {out}")


def main() -> int:
    from PySide6.QtWidgets import QApplication

    from desktop_app.style import apply_style

    out_dir = Path(sys.argv[1]) if len(sys.argv) > 1 else Path(__file__).resolve().parent
    concepts = int(sys.argv[2]) if len(sys.argv) > 2 else 3
    app = QApplication.instance() or QApplication([])
    apply_style(app)  # type: ignore[arg-type]
    name = "train-concepts.png" if concepts == 3 else f"train-concepts-{concepts}.png"
    with tempfile.TemporaryDirectory(prefix="kamaal-train-shot-") as scratch:
        os.environ["KAMAAL_DATA_DIR"] = str(Path(scratch) / "data")
        render(Path(scratch), concepts, out_dir / name)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""Render docs/screenshots/preview-edit-pairs.png: the sample grid of a tiny Flux.1 Kontext edit LoRA trained on
before/after pairs — each preview pair as three columns, its control, the model's edit at that step and its target,
one row per sampling step (step 0 is the base model).

    QT_QPA_PLATFORM=offscreen .venv/bin/python docs/screenshots/make_edit_preview_screenshot.py [OUT_DIR]

The model is the tiny random one the tests use (its edits are noise that training moves toward the target's
colours); everything happens in a throwaway folder.
"""

from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))


def train(scratch: Path) -> list:
    """Samples of a short Kontext LoRA run on hue-shift pairs, at steps 0, 20 and 40."""
    from tests.diffusion.conftest import diffusion_config
    from tests.families.test_fluxkontext import TARGETS, make_it_red
    from tests.trainer.helpers import run_in_process
    from trainer.models.tiny import build_tiny_model
    from trainer.protocol import Sample

    model = build_tiny_model(scratch / "model", "fluxkontext", seed=0)
    pairs = make_it_red(scratch / "pairs", 8, seed=0)
    config = diffusion_config(model, pairs, "fluxkontext", training={"steps": 40, "learning_rate": 2e-2},
                              lora={"rank": 4, "alpha": 8.0, "target_modules": TARGETS},
                              sampling={"inference_steps": 4, "at_start": True, "every_n_steps": 20, "seeds": [7]})
    _, recorder = run_in_process(config, scratch / "run")
    return recorder.of(Sample)


def render(samples: list, out: Path) -> None:
    from PySide6.QtCore import QEventLoop, QTimer
    from PySide6.QtWidgets import QApplication

    from desktop_app.preview.sample_grid import SampleGrid
    from desktop_app.preview.sample_history import SampleHistory
    from desktop_app.style import apply_style

    app = QApplication.instance() or QApplication([])
    apply_style(app)
    history = SampleHistory()
    grid = SampleGrid(history)
    grid.resize(980, 560)
    grid.show()
    for sample in samples:
        history.add(sample)
    loop = QEventLoop()
    QTimer.singleShot(1500, loop.quit)  # thumbnails decode in the loader's pool
    loop.exec()
    grid.grab().save(str(out / "preview-edit-pairs.png"))
    grid.shutdown()


if __name__ == "__main__":
    target = Path(sys.argv[1]) if len(sys.argv) > 1 else REPO / "docs" / "screenshots"
    with tempfile.TemporaryDirectory(prefix="kamaal-edit-shot-") as scratch:
        render(train(Path(scratch)), target)
    print(target / "preview-edit-pairs.png")

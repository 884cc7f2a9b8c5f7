"""Render docs/screenshots/merge.png: the Merge page after a real checkpoint merge of two tiny models
and its preview (rows A, B and the merge; one column per prompt).  With ``--flux``, merge-flux.png: two tiny
Flux.1 diffusers folders merged (the transformer only; A's text encoders and VAE kept), previewed by FluxPipeline.

    QT_QPA_PLATFORM=offscreen .venv/bin/python docs/screenshots/make_merge_screenshot.py [--flux] [OUT.png]

Everything happens in a throwaway folder; the tiny models are random, so their samples are abstract.
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

PROMPTS = "a portrait photo of a woman, soft light\na red sports car on a mountain road\na cosy cabin in a snowy forest"


def main() -> int:
    arguments = sys.argv[1:]
    flux = "--flux" in arguments
    arguments = [argument for argument in arguments if argument != "--flux"]
    default = "merge-flux.png" if flux else "merge.png"
    out = Path(arguments[0]) if arguments else Path(__file__).resolve().parent / default
    with tempfile.TemporaryDirectory(prefix="kamaal-merge-shot-") as scratch:
        os.environ["KAMAAL_DATA_DIR"] = str(Path(scratch) / "data")
        return render(Path(scratch), out, flux)


def render(scratch: Path, out: Path, flux: bool) -> int:
    from PySide6.QtCore import QEventLoop
    from PySide6.QtWidgets import QApplication

    from desktop_app.main_window import MainWindow
    from desktop_app.style import apply_style
    from trainer.models.tiny import build_tiny_model
    from trainer.project import Project

    models = scratch / "models"
    for name, seed in (("tiny-a", 0), ("tiny-b", 1)):
        build_tiny_model(models / name, "flux" if flux else "sd15", seed)
    app = QApplication([])
    apply_style(app)
    window = MainWindow(Project.create(scratch / "project", REPO / "resources/presets/toy.toml"),
                        ask=lambda *_: True)
    window.resize(1280, 800)
    window.show()
    panel = window.merge_panel
    window.show_page(panel)
    panel.operation.setCurrentIndex(2)  # Merge checkpoints
    form = panel.form
    form.a.set_path(str(models / "tiny-a"))
    form.b.set_path(str(models / "tiny-b"))
    form.alpha.setValue(0.35)
    if flux:
        form.components.setCurrentIndex(1)  # the transformer only
    else:
        form.blocks.setText("IN*=0.2, M00=0.5, OUT*=0.6")
    form.out.set_path(str(models / "tiny-ab"))
    panel.prompts.setPlainText(PROMPTS)
    panel.steps.setValue(4 if flux else 10)

    def click_and_wait(button) -> None:
        loop = QEventLoop()
        panel.runner.busyChanged.connect(lambda busy: loop.quit() if not busy else None)
        button.click()
        loop.exec()

    click_and_wait(panel.run_button)
    click_and_wait(panel.preview_button)
    app.processEvents()
    window.grab().save(str(out))
    window.close()
    print(f"Wrote {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

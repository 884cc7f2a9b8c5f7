"""Render the README screenshots: the main window idle, and mid-run (toy: curves and heatmaps;
a diffusion preset such as demo: curves and the growing sample grid, saved as main-PRESET.png), then
the Runs page after the run (runs.png for a diffusion preset, with a run waiting in the queue).

    QT_QPA_PLATFORM=offscreen .venv/bin/python docs/screenshots/make_screenshots.py [OUT_DIR] [PRESET | CONFIG.toml]

Runs the real trainer on the toy preset in a throwaway data folder (nothing touches your own
projects) and grabs the window at 1280×800 once the run has gone far enough to be interesting.
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


def main() -> int:
    out_dir = Path(sys.argv[1]) if len(sys.argv) > 1 else Path(__file__).resolve().parent
    preset = sys.argv[2] if len(sys.argv) > 2 else "toy"
    with tempfile.TemporaryDirectory(prefix="kamaal-shots-") as data_dir:
        os.environ["KAMAAL_DATA_DIR"] = data_dir
        return render(out_dir, preset)


def render(out_dir: Path, preset: str) -> int:
    from PySide6.QtWidgets import QApplication

    from desktop_app.main_window import MainWindow
    from desktop_app.paths import demo_project_dir, preset_path
    from desktop_app.session import SessionState
    from desktop_app.style import apply_style
    from trainer.project import Project

    app = QApplication.instance() or QApplication([sys.argv[0]])
    apply_style(app)
    source = Path(preset) if preset.endswith(".toml") else preset_path(preset)
    preset = source.stem
    window = MainWindow(Project.open_or_create(demo_project_dir(), source))
    window.resize(1280, 800)
    window.show()

    def settle(seconds: float, until: object = None) -> None:
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline and not (callable(until) and until()):
            app.processEvents()
            time.sleep(0.01)

    window.show_page(window.splitter)
    settle(0.3)
    out_dir.mkdir(parents=True, exist_ok=True)
    window.grab().save(str(out_dir / "main-idle.png"))
    window.start_training()
    total = window.run_model.total_steps
    run = window.run_model
    if preset == "toy":  # mid-run, with the weights preview caught up
        settle(120, until=lambda: run.step >= total * 0.45 and run.layers is not None
               and run.layers.step >= total * 0.4)
        name = "main-training.png"
    else:  # Stable Diffusion: wait for samples from a trained model, not just the base model's
        settle(600, until=lambda: run.samples is not None and run.samples.step >= total * 3 // 4)
        name = f"main-{preset}.png"
    settle(0.2)
    window.grab().save(str(out_dir / name))
    window.session.shutdown(kill_after_s=600)  # stop with a save, and wait for the trainer to exit
    settle(0.2, until=lambda: window.session.state in (SessionState.FINISHED, SessionState.FAILED))
    if preset != "toy":  # the Runs page: the run just stopped, its samples, and a run waiting in the queue
        window.extras.queue.add(window.config_model.config, "demo-longer")
        page = window.extras.runs_page
        window.show_page(page)
        page.tabs.setCurrentWidget(page.sample_grid)
        settle(1.0, until=lambda: page.sample_grid.loader.pending() == 0)
        settle(0.3)
        window.grab().save(str(out_dir / "runs.png"))
        window.extras.queue.take_next()
    window.close()
    print(f"screenshots in {out_dir}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

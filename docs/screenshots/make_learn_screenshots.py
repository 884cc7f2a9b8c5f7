"""Render docs/screenshots/learn-N-LANG.png: every lesson of the Learn page at 1280×800, in English and
Hinglish, the training lessons after their experiment ran (the real trainer process, two minutes or so; the
DreamBooth demo once with and once without prior preservation, each run's wall time printed).

    make translations  # the Hinglish interface strings (.qm)
    QT_QPA_PLATFORM=offscreen .venv/bin/python docs/screenshots/make_learn_screenshots.py [OUT_DIR]

Everything happens in a throwaway folder (project, settings, lesson runs).
"""

from __future__ import annotations

import os
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))


def main() -> int:
    out = Path(sys.argv[1]) if len(sys.argv) > 1 else Path(__file__).resolve().parent
    with tempfile.TemporaryDirectory(prefix="kamaal-learn-shot-") as scratch:
        os.environ["KAMAAL_DATA_DIR"] = str(Path(scratch) / "data")
        return render(Path(scratch), out)


def render(scratch: Path, out: Path) -> int:
    from PySide6.QtWidgets import QApplication

    from desktop_app import paths
    from desktop_app.learn.i18n import qm_path
    from desktop_app.learn.lessons import LESSONS
    from desktop_app.learn.run_lessons import FreezingLesson
    from desktop_app.main_window import MainWindow
    from desktop_app.style import apply_style
    from trainer.project import Project

    if not qm_path("hi-Latn").is_file():
        print("run `make translations` first: the Hinglish interface strings are not compiled", file=sys.stderr)
        return 1
    app = QApplication.instance() or QApplication([])
    apply_style(app)
    FreezingLesson.STEP_DELAY_MS = 0  # the picture is of the result, not of the wait
    window = MainWindow(Project.open_or_create(scratch / "project", paths.preset_path("toy")))
    window.resize(1280, 800)
    window.show()
    window.show_page(window.learn.frame)
    page = window.learn.page
    ran: set[str] = set()
    for language in ("en", "hi-Latn"):
        page.set_language(language)
        for row, lesson in enumerate(LESSONS):
            page.lesson_list.setCurrentRow(row)
            experiment = page.stack.currentWidget()
            runner = getattr(experiment, "runner", None)
            # Each run once (the other language shows the result); the DreamBooth demo with, then without prior
            # preservation, so both rows show.
            if runner is not None and lesson.name not in ran:
                ran.add(lesson.name)
                demo = getattr(experiment, "demo", None)
                for prior in ((True, False) if demo is not None else (None,)):
                    if demo is not None:
                        demo.prior.setChecked(prior)
                    done: list[bool] = []
                    runner.allDone.connect(lambda done=done: done.append(True))
                    started = time.monotonic()
                    (demo or experiment).start_button.click()
                    deadline = started + 300
                    while not done and time.monotonic() < deadline:
                        app.processEvents()
                        time.sleep(0.02)
                    print(f"{lesson.name}{'' if prior is None else f' (prior preservation {prior})'}: "
                          f"{time.monotonic() - started:.1f} s from the click to the end")
            for _ in range(10):
                app.processEvents()
                time.sleep(0.02)
            if hasattr(experiment, "show_demo"):
                experiment.show_demo()  # the DreamBooth demo's samples and verdict, as they show after a run
                app.processEvents()
            target = out / f"learn-{lesson.number}-{language}.png"
            window.grab().save(str(target))
            print(target)
    page.shutdown()
    window.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())

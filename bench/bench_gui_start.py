"""Process start to the main window's first frame (offscreen Qt, a fresh project in a temp ``KAMAAL_DATA_DIR``),
against ``python -c "import torch, diffusers"``: what the user waits for before the window, next to
what they would wait for if the window loaded the ML stack (DESIGN.md §1: it must not).

Each is a fresh interpreter; the snippet prints the seconds since its process started (from
``/proc/self/stat``, so interpreter start-up counts), the reference is timed from outside.
Median of ``REPEAT`` each, alternated.  The ratio is window ÷ import (below 1: the window is shown
sooner than torch + diffusers alone would load).  The first frame is the first paint event of the window; the
live preview's pyqtgraph plots are built right after it (``LazyPage(after_first_paint=True)``), and the preset
chooser reads its files then too, so a second row says when both are there.
"""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
REPEAT = 3

WINDOW = r"""
import os, time
def since_start():
    try:
        ticks = int(open("/proc/self/stat").read().rsplit(")", 1)[1].split()[19])
        boot = time.clock_gettime(time.CLOCK_BOOTTIME)
        return boot - ticks / os.sysconf("SC_CLK_TCK")
    except Exception:
        return float("nan")
from PySide6.QtCore import QEvent, QObject
from PySide6.QtWidgets import QApplication
app = QApplication([])
from desktop_app.main_window import MainWindow
from desktop_app.paths import preset_path
from trainer.project import Project
painted = []
class FirstPaint(QObject):
    def eventFilter(self, watched, event):
        if event.type() == QEvent.Type.Paint and not painted:
            painted.append(since_start())
        return False
window = MainWindow(Project.open_or_create(os.path.join(os.environ["KAMAAL_DATA_DIR"], "bench-project"),
                                           preset_path("toy")))
window.resize(1280, 800)
watcher = FirstPaint()
window.installEventFilter(watcher)
window.show()
while not painted:
    app.processEvents()
frames = (window.preview_panel.loss_frame, window.preview_panel.weights_frame)
while not (all(frame.is_built() for frame in frames if frame.isVisible()) and window.controls.presets_read()):
    app.processEvents()
for _ in range(5):
    app.processEvents()
print(f"{painted[0]:.4f} {since_start():.4f}")
window.close()
"""


def _env(data_dir: str) -> dict[str, str]:
    """The children's environment: offscreen, offline, the temp data folder, this tree's code — and bytecode
    caching allowed (``PYTHONDONTWRITEBYTECODE`` dropped), so the warm-up run writes the ``__pycache__`` an
    installed app has (pip and PyInstaller compile it): otherwise every start compiles Kamaal's own modules from
    source (about 0.07 s of a 0.45 s start on 2 cores), while ``import torch, diffusers`` reads site-packages'
    bytecode."""
    env = {key: value for key, value in os.environ.items() if key != "PYTHONDONTWRITEBYTECODE"}
    return {**env, "QT_QPA_PLATFORM": "offscreen", "HF_HUB_OFFLINE": "1", "KAMAAL_DATA_DIR": data_dir,
            "PYTHONPATH": str(REPO)}


def window_seconds(data_dir: str) -> tuple[float, float]:
    """Seconds from process start to the window's first frame, and to the live preview's plots built and the
    presets read after it (and five more turns of the event loop); wall time from outside for both when /proc is
    missing."""
    started = time.perf_counter()
    result = subprocess.run([sys.executable, "-c", WINDOW], capture_output=True, text=True, cwd=REPO,
                            env=_env(data_dir), timeout=120, check=True)
    outside = time.perf_counter() - started
    first, complete = (float(v) for v in result.stdout.strip().splitlines()[-1].split())
    return (outside, outside) if first != first else (first, complete)


def import_seconds(data_dir: str) -> float:
    started = time.perf_counter()
    subprocess.run([sys.executable, "-c", "import torch, diffusers"], capture_output=True, cwd=REPO,
                   env=_env(data_dir), timeout=120, check=True)
    return time.perf_counter() - started


def rows() -> list[dict[str, str]]:
    shown, complete, imports = [], [], []
    with tempfile.TemporaryDirectory(prefix="kamaal-bench-gui-") as tmp:
        window_seconds(tmp)  # first run creates the project, writes the bytecode and warms the file cache for both
        for _ in range(REPEAT):
            first, built = window_seconds(tmp)
            shown.append(first)
            complete.append(built)
            imports.append(import_seconds(tmp))
    window, reference = statistics.median(shown), statistics.median(imports)
    plots = statistics.median(complete)
    note = f"vs python -c 'import torch, diffusers'; offscreen; median of {REPEAT}; lower is better"
    return [{"name": "gui: process start -> main window's first frame", "kamaal": f"{window:.2f} s",
             "reference": f"{reference:.2f} s", "ratio": f"{window / reference:.2f}", "note": note},
            {"name": "gui: process start -> preview's plots built and presets read too", "kamaal": f"{plots:.2f} s",
             "reference": f"{reference:.2f} s", "ratio": f"{plots / reference:.2f}", "note": note}]

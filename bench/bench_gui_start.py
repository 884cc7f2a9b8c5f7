"""Process start to main window shown (offscreen Qt, a fresh project in a temp ``KAMAAL_DATA_DIR``),
against ``python -c "import torch, diffusers"``: what the user waits for before the window, next to
what they would wait for if the window loaded the ML stack (DESIGN.md §1: it must not).

Each is a fresh interpreter; the snippet prints the seconds since its process started (from
``/proc/self/stat``, so interpreter start-up counts), the reference is timed from outside.
Median of ``REPEAT`` each, alternated.  The ratio is window ÷ import (below 1: the window is shown
sooner than torch + diffusers alone would load).
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
from PySide6.QtWidgets import QApplication
app = QApplication([])
from desktop_app.main_window import MainWindow
from desktop_app.paths import preset_path
from trainer.project import Project
window = MainWindow(Project.open_or_create(os.path.join(os.environ["KAMAAL_DATA_DIR"], "bench-project"),
                                           preset_path("toy")))
window.resize(1280, 800)
window.show()
for _ in range(5):
    app.processEvents()
print(f"{since_start():.4f}")
window.close()
"""


def _env(data_dir: str) -> dict[str, str]:
    return {**os.environ, "QT_QPA_PLATFORM": "offscreen", "HF_HUB_OFFLINE": "1", "KAMAAL_DATA_DIR": data_dir,
            "PYTHONPATH": str(REPO)}


def window_seconds(data_dir: str) -> float:
    """Seconds from process start to the window shown; wall time from outside when /proc is missing."""
    started = time.perf_counter()
    result = subprocess.run([sys.executable, "-c", WINDOW], capture_output=True, text=True, cwd=REPO,
                            env=_env(data_dir), timeout=120, check=True)
    outside = time.perf_counter() - started
    inside = float(result.stdout.strip().splitlines()[-1])
    return outside if inside != inside else inside


def import_seconds(data_dir: str) -> float:
    started = time.perf_counter()
    subprocess.run([sys.executable, "-c", "import torch, diffusers"], capture_output=True, cwd=REPO,
                   env=_env(data_dir), timeout=120, check=True)
    return time.perf_counter() - started


def rows() -> list[dict[str, str]]:
    shown, imports = [], []
    with tempfile.TemporaryDirectory(prefix="kamaal-bench-gui-") as tmp:
        window_seconds(tmp)  # first run creates the project and warms the file cache for both
        for _ in range(REPEAT):
            shown.append(window_seconds(tmp))
            imports.append(import_seconds(tmp))
    window, reference = statistics.median(shown), statistics.median(imports)
    return [{"name": "gui: process start -> main window shown", "kamaal": f"{window:.2f} s",
             "reference": f"{reference:.2f} s", "ratio": f"{window / reference:.2f}",
             "note": f"vs python -c 'import torch, diffusers'; offscreen; median of {REPEAT}; lower is better"}]

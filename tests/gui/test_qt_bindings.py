"""The Qt bindings must not leak references to None/True/False.

PySide6 6.12.0 drops one reference per void call or bool signal; on Python 3.11 that aborts the
app within seconds of a live plot ("Fatal Python error: none_dealloc").  Run in a fresh
interpreter so a leaking binding crashes that process, not the test session.
"""

from __future__ import annotations

import os
import subprocess
import sys

CHECK = """
import sys
from PySide6.QtCore import QObject, Signal
from PySide6.QtWidgets import QApplication, QWidget
app = QApplication([])
widget = QWidget()
class Emitter(QObject):
    fired = Signal(bool)
emitter = Emitter()
emitter.fired.connect(lambda value: None)
before = sys.getrefcount(None), sys.getrefcount(True)
for _ in range(500):
    widget.setObjectName("x")
    emitter.fired.emit(True)
after = sys.getrefcount(None), sys.getrefcount(True)
print(after[0] - before[0], after[1] - before[1])
"""


def test_bindings_do_not_leak_singleton_references():
    result = subprocess.run([sys.executable, "-c", CHECK], capture_output=True, text=True, timeout=120,
                            env={**os.environ, "QT_QPA_PLATFORM": "offscreen"})
    assert result.returncode == 0, result.stderr[-2000:]
    none_drift, true_drift = map(int, result.stdout.split())
    assert abs(none_drift) < 50 and abs(true_drift) < 50, (none_drift, true_drift)

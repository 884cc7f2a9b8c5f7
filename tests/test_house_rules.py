"""DESIGN.md §1: the trainer never imports Qt; the GUI's light trainer modules never import torch."""

from __future__ import annotations

import json
import pkgutil
import subprocess
import sys

import trainer
from tests.conftest import REPO

HEAVY = ("torch", "diffusers", "transformers", "peft", "accelerate", "safetensors")
QT = ("PySide6", "pyqtgraph", "desktop_app")
# The trainer modules the GUI process may import: they must stay free of the heavy libraries.
LIGHT_TRAINER_MODULES = ["trainer.config", "trainer.protocol", "trainer.runfolder", "trainer.process",
                         "trainer.fsutil"]


def loaded_after_import(modules: list[str]) -> set[str]:
    code = (f"import importlib, json, sys\nfor m in {modules!r}: importlib.import_module(m)\n"
            "print(json.dumps(sorted({name.split('.')[0] for name in sys.modules})))")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, timeout=120)
    assert result.returncode == 0, result.stderr
    return set(json.loads(result.stdout))


def test_trainer_never_imports_qt():
    every_module = [info.name for info in pkgutil.walk_packages(trainer.__path__, "trainer.")
                    if not info.name.endswith("__main__")]
    assert "trainer.worker" in every_module and "trainer.jobs.toy" in every_module
    loaded = loaded_after_import(every_module)
    assert not loaded & set(QT), loaded & set(QT)


def test_light_trainer_modules_stay_light():
    loaded = loaded_after_import(LIGHT_TRAINER_MODULES)
    assert not loaded & set(HEAVY), loaded & set(HEAVY)

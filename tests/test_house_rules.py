"""DESIGN.md §1: the trainer never imports Qt; the GUI's light trainer modules never import torch.
DESIGN.md §2: in the GUI, only the bridges talk to trainer processes (the opening of the window and its
heavy libraries are checked in tests/gui/test_launcher.py)."""

from __future__ import annotations

import ast
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
                         "trainer.fsutil", "trainer.lora_names", "trainer.preflight", "trainer.families"]


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


def test_the_dataset_worker_processes_load_neither_qt_nor_ml_libraries():
    """What a Dataset-page worker process imports before and for its jobs (spawn children start light)."""
    loaded = loaded_after_import(["desktop_app.dataset.worker", "desktop_app.dataset.jobs"])
    assert "PIL" in loaded  # the scan sees what the jobs need
    assert not loaded & {"PySide6", "pyqtgraph", *HEAVY}, loaded & {"PySide6", "pyqtgraph", *HEAVY}


# The GUI modules that may hold a trainer process and its queues: the session bridge (training runs),
# the task bridge (short tasks) and the self-test (headless, no widgets).  Widgets see only their signals.
# Besides them, the Dataset page's own worker pool (Pillow work, never a trainer): its parent and child halves.
PROCESS_OWNERS = {"desktop_app/session.py", "desktop_app/tasks.py", "desktop_app/self_test.py",
                  "desktop_app/dataset/processes.py", "desktop_app/dataset/worker.py"}


def test_only_the_bridges_touch_trainer_processes():
    owners = set()
    for path in sorted((REPO / "desktop_app").rglob("*.py")):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            names = ([alias.name for alias in node.names] if isinstance(node, ast.Import)
                     else [node.module or ""] if isinstance(node, ast.ImportFrom) else [])
            if any(name == "trainer.process" or name.startswith("multiprocessing") for name in names):
                owners.add(path.relative_to(REPO).as_posix())
    owners.discard("desktop_app/launcher.py")  # multiprocessing.freeze_support() only: a frozen child starts there
    assert "desktop_app/session.py" in owners  # the scan sees the one that must be there
    assert owners <= PROCESS_OWNERS, owners - PROCESS_OWNERS


def test_no_module_imports_one_that_imports_it_back():
    """The GUI's frame and rooms, and the trainer, import one way: no cycles (type-only imports count too)."""
    import grimp

    graph = grimp.build_graph("desktop_app", "trainer", include_external_packages=False)
    cycles = sorted({tuple(sorted((module, imported))) for module in graph.modules
                     for imported in graph.find_modules_directly_imported_by(module)
                     if graph.chain_exists(importer=imported, imported=module)})
    assert not cycles, cycles


# Files that still name model families outside the registry, and how often (issue 19 moves them into
# trainer/families slice by slice): the counts may only go down, and no other file may start.
NOT_YET_IN_THE_REGISTRY: dict[str, int] = {}  # none left: every file asks the registry


def family_branches(path) -> int:
    """How often ``path`` names a diffusion family ("sd15", "sdxl" …) or compares an architecture with a
    family's name (``architecture == "toy"``): what the registry is for.  Docstrings do not count."""
    from trainer.families import MODEL_FAMILIES, NAMES

    source = path.read_text(encoding="utf-8")
    tree = ast.parse(source)
    docstrings = {id(node.body[0].value) for node in ast.walk(tree)
                  if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef))
                  and node.body and isinstance(node.body[0], ast.Expr)
                  and isinstance(node.body[0].value, ast.Constant)}
    count = 0
    for node in ast.walk(tree):
        if isinstance(node, ast.Constant) and node.value in MODEL_FAMILIES and id(node) not in docstrings:
            count += 1
        elif isinstance(node, ast.Compare):
            operands = [node.left, *node.comparators]
            names = [o for o in operands if isinstance(o, ast.Constant) and o.value in NAMES
                     and o.value not in MODEL_FAMILIES]
            if names and "arch" in (ast.get_source_segment(source, node) or ""):
                count += 1
    return count


def test_family_knowledge_lives_in_the_registry():
    """No `if architecture == "sdxl"` outside trainer/families: the engine, exports, merges and the GUI ask
    the registry (issue 19), so a new family is a new module there, not branches everywhere."""
    found = {}
    for root in ("trainer", "desktop_app"):
        for path in sorted((REPO / root).rglob("*.py")):
            relative = path.relative_to(REPO).as_posix()
            if relative.startswith("trainer/families/"):
                continue
            count = family_branches(path)
            if count:
                found[relative] = count
    grown = {name: count for name, count in found.items() if count > NOT_YET_IN_THE_REGISTRY.get(name, 0)}
    assert not grown, f"family names outside trainer/families (ask the registry instead): {grown}"
    assert found.keys() <= NOT_YET_IN_THE_REGISTRY.keys()
    moved = {name for name in NOT_YET_IN_THE_REGISTRY if found.get(name, 0) < NOT_YET_IN_THE_REGISTRY[name]}
    assert not moved, f"fewer family names left in {sorted(moved)}: lower NOT_YET_IN_THE_REGISTRY to match"

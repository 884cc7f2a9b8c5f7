"""The `kamaal` entry point: the house rule on imports, --screenshot, and the headless demo."""

from __future__ import annotations

import json
import os
import struct
import subprocess
import sys
from pathlib import Path

import pytest

from desktop_app import launcher, paths
from tests.conftest import REPO
from trainer.config import load_config

HEAVY = ("torch", "diffusers", "transformers", "peft", "accelerate", "safetensors")


def clean_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("DISPLAY", "WAYLAND_DISPLAY", "QT_QPA_PLATFORM")}
    env.update(extra)
    return env


def png_size(path: Path) -> tuple[int, int]:
    header = path.read_bytes()[:24]
    assert header[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG file"
    return struct.unpack(">II", header[16:24])


def test_the_window_never_loads_the_heavy_libraries(settings_in_tmp):
    """House rule (DESIGN.md §1): in a fresh interpreter, opening the whole main window imports no ML library."""
    code = f"""
import json, sys
import desktop_app
from PySide6.QtWidgets import QApplication
app = QApplication([])
from desktop_app.main_window import MainWindow
from desktop_app.paths import demo_project_dir, preset_path
from trainer.project import Project
window = MainWindow(Project.open_or_create(demo_project_dir(), preset_path("toy")))
window.resize(1280, 800)
window.show()
for _ in range(5):
    app.processEvents()
window.grab()
print(json.dumps(sorted(name for name in sys.modules if name.split(".")[0] in {HEAVY!r})))
window.close()
"""
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, timeout=120,
                            env=clean_env(QT_QPA_PLATFORM="offscreen", KAMAAL_DATA_DIR=str(settings_in_tmp)))
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout.strip().splitlines()[-1]) == []


def test_launcher_and_package_do_not_load_qt():
    """The trainer's spawn child re-imports the parent's main module: it must not drag Qt in."""
    code = ("import json, sys, desktop_app, desktop_app.launcher, desktop_app.__main__\n"
            "print(json.dumps(sorted({n.split('.')[0] for n in sys.modules})))")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, timeout=60)
    assert result.returncode == 0, result.stderr
    loaded = set(json.loads(result.stdout))
    assert not loaded & {"PySide6", "pyqtgraph", "shiboken6", *HEAVY}, loaded


def test_screenshot_cli_writes_a_png(tmp_path, settings_in_tmp):
    target = tmp_path / "shots" / "out.png"
    result = subprocess.run([sys.executable, "-m", "desktop_app", "--screenshot", str(target)], capture_output=True,
                            text=True, cwd=REPO, timeout=120, env=clean_env(KAMAAL_DATA_DIR=str(settings_in_tmp)))
    assert result.returncode == 0, result.stderr
    width, height = png_size(target)
    assert 1200 <= width <= 1400 and 750 <= height <= 900, (width, height)
    assert (settings_in_tmp / "projects" / "demo" / "project.toml").is_file()  # the demo project was created


def test_no_display_without_demo_says_what_to_do(monkeypatch, capsys):
    for name in ("DISPLAY", "WAYLAND_DISPLAY", "QT_QPA_PLATFORM"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setattr(sys, "platform", "linux")
    assert not paths.has_display()
    assert launcher.main([]) == 1
    assert "no display" in capsys.readouterr().err


def test_demo_without_display_trains_headless_through_the_cli(monkeypatch, capsys, settings_in_tmp):
    for name in ("DISPLAY", "WAYLAND_DISPLAY", "QT_QPA_PLATFORM"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setattr(sys, "platform", "linux")
    calls: list[list[str]] = []
    import trainer.cli

    monkeypatch.setattr(trainer.cli, "main", lambda argv: calls.append(argv) or 0)  # the real one is tested there
    assert launcher.main(["--demo"]) == 0
    out = capsys.readouterr().out
    assert "no display" in out
    [argv] = calls
    project = settings_in_tmp / "projects" / "demo"
    assert argv[0] == "train" and argv[2] == "--run-dir"
    trained = load_config(Path(argv[1]))  # the demo project's settings, made from the demo preset
    assert Path(argv[1]).parent == project
    assert trained.mode == load_config(paths.preset_path(paths.DEMO_PRESET)).mode
    assert Path(trained.dataset.path).resolve().is_relative_to(project.resolve())  # its pictures, copied
    run_dir = Path(argv[3])
    assert run_dir.parent == project / "runs"
    assert str(run_dir) in out


def test_unknown_preset_is_a_clear_error(capsys):
    assert launcher.main(["--preset", "nope", "--screenshot", "x.png"]) == 2
    assert "no preset called 'nope'" in capsys.readouterr().err


def test_help_lists_the_options(capsys):
    with pytest.raises(SystemExit):
        launcher.main(["--help"])
    text = capsys.readouterr().out
    assert all(option in text for option in ("project", "--demo", "--screenshot", "--preset"))

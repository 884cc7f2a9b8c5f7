"""``kamaal``: the desktop app's entry point (also ``python -m desktop_app``).

Kept light — no Qt at module level — because the trainer's spawn-context child re-imports the
parent's main module: anything heavy imported here would load into the trainer process too.
Qt is imported only once we know we are opening a window.
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import sys
from collections.abc import Sequence
from pathlib import Path

from desktop_app import paths


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="kamaal", description="Kamaal: offline, local fine-tuning of diffusion models (desktop app).")
    parser.add_argument("project", nargs="?", type=Path,
                        help="project folder to open (created from --preset if it holds no project yet)")
    parser.add_argument("--demo", action="store_true",
                        help="open the demo project (DreamBooth-LoRA on the bundled shapes model, a few minutes "
                             "on a CPU); with no display, train it headless instead")
    parser.add_argument("--preset", metavar="NAME", default=None,
                        help="preset for a new project (a file in resources/presets, e.g. demo, toy or toy-frozen); "
                             f"default: {paths.DEMO_PRESET}")
    parser.add_argument("--screenshot", metavar="PNG", type=Path, default=None,
                        help="open the main window offscreen at 1280×800, save it as PNG and exit")
    parser.add_argument("--self-test", action="store_true",
                        help="check this installation headless: start the trainer, train the toy network and a few "
                             "steps of the diffusion demo, draw the main window offscreen; exit 0 only if all "
                             "worked (writes only to a temporary folder)")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    give_windowed_builds_streams()  # before freeze_support: the trainer child needs them as well
    multiprocessing.freeze_support()  # a frozen (PyInstaller) trainer child starts here too
    args = build_parser().parse_args(argv)
    if args.self_test:
        from desktop_app.self_test import run_self_test

        return run_self_test()
    try:
        preset = paths.preset_path(args.preset or paths.DEMO_PRESET)
    except FileNotFoundError as exc:
        print(f"kamaal: {exc}", file=sys.stderr)
        return 2

    if args.screenshot is None and not paths.has_display():
        if args.demo:
            return run_headless_demo(preset)
        print("kamaal: no display found (DISPLAY and WAYLAND_DISPLAY are not set). Use 'kamaal --demo' to "
              "train the demo in the terminal, 'kamaal-train' for headless training, or set "
              "QT_QPA_PLATFORM=offscreen.", file=sys.stderr)
        return 1

    if args.screenshot is None:
        from desktop_app.platform_check import check_window_platform

        if (problem := check_window_platform()) is not None:
            print(problem, file=sys.stderr)
            return 1

    from desktop_app.app import run_app  # Qt from here on

    return run_app(project_dir=args.project, demo=args.demo, preset=preset, screenshot=args.screenshot)


def give_windowed_builds_streams() -> None:
    """A windowed program (the packaged Kamaal.exe, pythonw) has ``sys.stdout``/``sys.stderr`` set to None;
    anything that prints or draws a progress bar (tqdm, in diffusers' loading) would crash on them, so they
    write to the null device instead."""
    for name in ("stdout", "stderr"):
        if getattr(sys, name) is None:
            setattr(sys, name, open(os.devnull, "w", encoding="utf-8"))  # open as long as the process lives


def run_headless_demo(preset: Path) -> int:
    """No display: train the demo through the headless CLI, in this process, and say where the run is."""
    from trainer.cli import main as cli_main  # heavy (torch, when training starts): only on this branch
    from trainer.config import ConfigError
    from trainer.project import Project

    print("kamaal: no display found (DISPLAY and WAYLAND_DISPLAY are not set), so the demo runs headless "
          "in this terminal. Ctrl-C stops it and saves.", flush=True)
    try:
        project, note = Project.open_demo(paths.demo_project_dir(), preset)
    except (ConfigError, OSError) as exc:
        print(f"kamaal: cannot open the demo project: {exc}", file=sys.stderr)
        return 2
    if note:
        print(f"kamaal: {note}", flush=True)
    run_dir = project.new_run_dir()
    # The project's own settings: the preset's, with its pictures copied into the project (or what the
    # user changed since in the app).
    code = cli_main(["train", str(project.config_path), "--run-dir", str(run_dir)])
    print(f"kamaal: the demo run folder is {run_dir}", flush=True)
    return code

"""``kamaal --self-test``: does this installation work?  Headless; exit code 0 only if every check passed.

Made for the packaged app (``dist/Kamaal/Kamaal --self-test``, run by ``make package`` after every build),
where the things that break are the ones a source checkout never exercises: the frozen executable
starting its own trainer child (spawn + ``freeze_support``), modules that only the child imports (torch,
diffusers, peft, …, invisible to PyInstaller's import scan because the GUI never imports them), data files
(presets, the bundled shapes model, Qt's plugins).  So every check goes through the same doors the app
uses: the trainer runs in a :class:`~trainer.process.TrainerProcess` child exactly as a **Start** in the
window would, and the main window is drawn offscreen with the app's own start-up code.

Checks, in order: the trainer process starts and reports its torch build (task ``device-info``); the toy
training; a few steps of the diffusion demo (``resources/presets/demo.toml`` on the bundled shapes
model: load, DreamBooth-LoRA steps with prior preservation, samples, export); the main window; the
Dataset page's worker processes (a thumbnail and a health check through them); and that this (the
app's) process never loaded an ML library.  A training check passes when its child exits 0
with ``Finished``, every expected output exists and is not empty, and every logged loss is finite.

Nothing is written into the user's data folder nor into the bundle: run folders, the window's project and
its settings go to a fresh temporary folder (``KAMAAL_DATA_DIR`` points there while the checks run),
deleted after a pass and kept after a failure, so that each run's ``log.txt`` can be read.  The children
run with one torch thread unless ``OMP_NUM_THREADS`` says otherwise: on a busy two-core machine two
threads wait on each other at every barrier and a step can take ten times longer.

Light at module level (the launcher imports it only for ``--self-test``; Qt only in the window check).
"""

from __future__ import annotations

import contextlib
import io
import math
import os
import shutil
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TextIO

from desktop_app import paths
from trainer.config import ConfigError, load_config
from trainer.process import ChildProcess, TaskProcess, TrainerProcess, describe_exit
from trainer.protocol import Event, Failed, Finished, TaskDone
from trainer.runfolder import RunFolder

HEAVY_MODULES = ("torch", "diffusers", "transformers", "peft", "accelerate", "safetensors")
REPORT_FILE = "kamaal-self-test.txt"  # in the temp folder, when there is no stdout (windowed build on Windows)
POLL_S = 0.05


@dataclass(frozen=True)
class TrainingCheck:
    """One short training run from a bundled preset, and what it must leave in its run folder."""

    name: str
    preset: str
    overrides: tuple[str, ...]
    expected: tuple[str, ...]  # files relative to the run folder that must exist and not be empty
    timeout_s: float = 300.0


TOY_CHECK = TrainingCheck(
    name="toy training", preset="toy",
    overrides=("training.steps=40", "training.warmup_steps=0", "training.log_every=5", "training.eval_every=10",
               "toy.step_delay_ms=0", "toy.samples=256", "toy.weights_every=10", "output.checkpoint_every=0"),
    expected=("output/toy.safetensors", "metrics.jsonl", "log.txt"),
    timeout_s=180.0)
# Two steps of the demo: the step-0 and final samples, a checkpoint and both LoRA files.  The shipped
# class_images folder already holds the preset's num_class_images, so nothing is generated into resources/.
DEMO_CHECK = TrainingCheck(
    name="diffusion demo", preset="demo",
    overrides=("training.steps=2", "training.warmup_steps=0", "training.batch_size=2", "training.eval_every=2",
               "sampling.every_n_steps=2", "sampling.inference_steps=2", "sampling.seeds=[1]",
               "output.checkpoint_every=0"),
    expected=("output/demo.safetensors", "output/diffusers/pytorch_lora_weights.safetensors",
              "samples/step-000000/p00-seed1.png", "samples/step-000002/p00-seed1.png", "metrics.jsonl"),
    timeout_s=600.0)
TRAINING_CHECKS = (TOY_CHECK, DEMO_CHECK)


@dataclass(frozen=True)
class CheckResult:
    name: str
    ok: bool
    detail: str
    seconds: float


def run_self_test(checks: Sequence[TrainingCheck] = TRAINING_CHECKS, *, window: bool = True,
                  stream: TextIO | None = None) -> int:
    """Run every check, print one line each and a verdict; 0 if all passed, 1 otherwise.

    The report goes to ``stream``, else stdout, else (a windowed build on Windows has no stdout) to
    ``kamaal-self-test.txt`` in the temporary folder.
    """
    work = Path(tempfile.mkdtemp(prefix="kamaal-self-test-"))
    with contextlib.ExitStack() as stack:
        out = stream or sys.stdout
        if out is None or getattr(out, "name", None) == os.devnull:  # see launcher.give_windowed_builds_streams
            out = stack.enter_context((work.parent / REPORT_FILE).open("w", encoding="utf-8"))
        return _run_checks(checks, window, work, out)


def _run_checks(checks: Sequence[TrainingCheck], window: bool, work: Path, out: TextIO) -> int:
    import trainer

    if getattr(sys, "frozen", False):
        where = f"packaged app {Path(sys.executable).parent}"
    else:
        where = f"source checkout {paths.resources_dir().parent}"
    say = _printer(out)
    say(f"Kamaal {trainer.__version__} self-test: {where}")
    say(f"work folder: {work}")
    started = time.monotonic()
    results: list[CheckResult] = []

    def record(result: CheckResult) -> None:
        results.append(result)
        status = "ok" if result.ok else "FAILED"
        say(f"  {status:<7} {result.name:<15} {result.detail} ({result.seconds:.1f} s)")

    environment = {paths.DATA_DIR_ENV: str(work / "data")}
    # Quiet children (the report is the output) on one torch thread, unless the caller chose otherwise.
    defaults = {"OMP_NUM_THREADS": "1", "TRANSFORMERS_VERBOSITY": "error", "DIFFUSERS_VERBOSITY": "error",
                "HF_HUB_DISABLE_PROGRESS_BARS": "1"}
    with _environment(environment, defaults):
        record(check_trainer_process())
        for check in checks:
            record(check_training(check, work / "runs"))
        if window:
            record(check_window(work))
            record(check_dataset_workers(work))
    record(check_process_stays_light())

    failed = [result.name for result in results if not result.ok]
    if failed:
        say(f"Self-test FAILED: {', '.join(failed)}.  Its folder is kept: {work} (each run folder under runs/ "
            f"has a log.txt).")
        return 1
    say(f"Self-test passed: {len(results)} checks in {time.monotonic() - started:.0f} s.")
    shutil.rmtree(work, ignore_errors=True)
    return 0


def check_trainer_process() -> CheckResult:
    """The trainer child starts (from inside the bundle, when packaged) and imports torch."""
    started = time.monotonic()
    events, exit_text = _drive(TaskProcess("device-info", {}), timeout_s=180.0)
    done = next((event for event in events if isinstance(event, TaskDone)), None)
    seconds = time.monotonic() - started
    if done is None:
        return CheckResult("trainer process", False, _why_failed(events, exit_text), seconds)
    info = done.result
    device = f"{info.get('name')} (CUDA)" if info.get("cuda") else "the CPU"
    return CheckResult("trainer process", True, f"torch {info.get('torch')} on {device}", seconds)


def check_training(check: TrainingCheck, runs_dir: Path) -> CheckResult:
    """Train ``check`` in a trainer child, then look at what it left in its run folder."""
    started = time.monotonic()

    def result(ok: bool, detail: str) -> CheckResult:
        return CheckResult(check.name, ok, detail, time.monotonic() - started)

    try:
        config = load_config(paths.preset_path(check.preset), check.overrides)
        run = RunFolder.create(config, runs_dir / check.preset)
    except (ConfigError, OSError) as exc:  # FileNotFoundError (no such preset) is an OSError
        return result(False, f"cannot set up the run: {exc}")
    events, exit_text = _drive(TrainerProcess(run.root), check.timeout_s)
    finished = next((event for event in events if isinstance(event, Finished)), None)
    if finished is None or finished.stopped or exit_text != describe_exit(0):
        return result(False, _why_failed(events, exit_text))
    missing = [name for name in check.expected if not _non_empty(run.root / name)]
    if missing:
        return result(False, f"trained, but missing or empty: {', '.join(missing)}")
    losses = [row["loss"] for row in run.read_metrics() if row.get("loss") is not None]
    if not losses or not all(math.isfinite(loss) for loss in losses):
        return result(False, f"no finite loss in metrics.jsonl (read {len(losses)} losses)")
    return result(True, f"{finished.step} steps, last loss {losses[-1]:.4g}, all {len(check.expected)} expected files")


def check_window(work: Path) -> CheckResult:
    """The main window opens (offscreen) on a fresh project, with the app's own start-up code."""
    from desktop_app.app import run_app  # Qt from here on

    started = time.monotonic()
    target = work / "window.png"
    captured = io.StringIO()
    try:
        with contextlib.redirect_stdout(captured), contextlib.redirect_stderr(captured):
            code = run_app(project_dir=work / "project", demo=False, preset=paths.preset_path(paths.DEMO_PRESET),
                           screenshot=target)
    except Exception as exc:  # a missing Qt plugin or module in a bundle shows up here
        return CheckResult("main window", False, f"{type(exc).__name__}: {exc}", time.monotonic() - started)
    seconds = time.monotonic() - started
    if code != 0 or not _non_empty(target):
        said = captured.getvalue().strip().splitlines()
        return CheckResult("main window", False, f"could not draw it: {said[-1] if said else f'exit {code}'}", seconds)
    return CheckResult("main window", True, "drawn offscreen", seconds)


def check_dataset_workers(work: Path, timeout_s: float = 60.0) -> CheckResult:
    """The Dataset page's worker processes start (spawn, from inside the bundle when packaged) and send a
    thumbnail and a health check back, through the page's own ``Processes``; and they can decode HEIC and
    AVIF (libheif and libavif are binaries a bundle could miss)."""
    from functools import partial

    from PIL import Image
    from PySide6.QtCore import QCoreApplication

    from desktop_app.dataset import jobs
    from desktop_app.dataset.entries import DatasetSettings
    from desktop_app.dataset.processes import Processes

    started = time.monotonic()
    folder = work / "dataset-check"
    folder.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (640, 512), (200, 60, 40)).save(folder / "red.jpg")
    app = QCoreApplication.instance() or QCoreApplication([sys.argv[0]])
    pool = Processes(processes=1)
    answers: dict[str, object] = {}
    try:
        for name, work_ in (("thumbnail", partial(jobs.thumbnail, folder / "red.jpg", None, jobs.THUMB_SIZE)),
                            ("check", partial(jobs.check, folder, DatasetSettings(), None, False)),
                            ("decoders", jobs.decoders)):
            pool.run(work_, lambda value, name=name: answers.setdefault(name, value),
                     lambda error, name=name: answers.setdefault(name, error))
        while len(answers) < 3 and time.monotonic() - started < timeout_s:
            app.processEvents()
            time.sleep(0.01)
    finally:
        pool.shutdown()
    seconds = time.monotonic() - started
    thumb, report, decoders = answers.get("thumbnail"), answers.get("check"), answers.get("decoders")
    failure = next((value for value in (thumb, report, decoders) if isinstance(value, BaseException)), None)
    if failure is not None or thumb is None or report is None or not isinstance(decoders, dict):
        why = f"{type(failure).__name__}: {failure}" if failure is not None else f"no answer in {timeout_s:.0f} s"
        return CheckResult("dataset workers", False, why, seconds)
    size, usable = getattr(thumb, "size", None), getattr(report, "usable", 0)
    if size is None or max(size) != jobs.THUMB_SIZE or usable != 1:
        return CheckResult("dataset workers", False, f"wrong answers: thumbnail {size}, {usable} usable images",
                           seconds)
    missing = [name for name, loaded in decoders.items() if not loaded]
    if missing:
        return CheckResult("dataset workers", False, f"cannot decode {' or '.join(missing)} images: "
                                                     "its library is missing from this installation", seconds)
    return CheckResult("dataset workers", True, "a thumbnail and a health check came back; HEIC and AVIF decode",
                       seconds)


def check_process_stays_light() -> CheckResult:
    """House rule: the app's own process never imports the ML libraries (only its trainer children do)."""
    loaded = [name for name in HEAVY_MODULES if name in sys.modules]
    if loaded:
        return CheckResult("app process", False, f"loaded {', '.join(loaded)} (only the trainer child may)", 0.0)
    return CheckResult("app process", True, "loaded none of " + ", ".join(HEAVY_MODULES), 0.0)


# ----------------------------------------------------------------------------------------------------- helpers


def _drive(process: ChildProcess, timeout_s: float) -> tuple[list[Event], str]:
    """Start ``process``, collect its events until it exits (or kill it after ``timeout_s``), close it."""
    events: list[Event] = []
    deadline = time.monotonic() + timeout_s
    process.start()
    try:
        while process.is_alive() and time.monotonic() < deadline:
            events += process.poll_events()
            time.sleep(POLL_S)
        if process.is_alive():
            return events, f"still running after {timeout_s:.0f} s, stopped"
        process.join(5)
        events += process.poll_events()  # the child flushed its queue before it exited
        return events, describe_exit(process.exitcode)
    finally:
        process.close()


def _why_failed(events: Sequence[Event], exit_text: str) -> str:
    failed = next((event for event in events if isinstance(event, Failed)), None)
    if failed is not None:
        return f"{failed.message} (trainer {exit_text})"
    if any(isinstance(event, Finished) and event.stopped for event in events):
        return f"the run stopped early (trainer {exit_text})"
    return f"the trainer {exit_text} without saying why"


def _non_empty(path: Path) -> bool:
    return path.is_file() and path.stat().st_size > 0


def _printer(out: TextIO) -> Callable[[str], None]:
    def say(line: str) -> None:
        print(line, file=out, flush=True)

    return say


@contextlib.contextmanager
def _environment(values: Mapping[str, str], defaults: Mapping[str, str]) -> Iterator[None]:
    """Set ``values`` (and ``defaults`` where unset) for this process and the children it starts; then restore."""
    saved = {name: os.environ.get(name) for name in (*values, *defaults)}
    os.environ.update(values)
    for name, value in defaults.items():
        os.environ.setdefault(name, value)
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value

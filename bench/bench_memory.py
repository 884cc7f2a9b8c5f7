"""Peak memory (resident set, ``ru_maxrss``) of the two processes a user runs, each in a fresh
interpreter and next to a reference measured the same way:

- the GUI with ``IMAGES`` generated JPEGs (512–768 px) open in the Dataset page, the grid scrolled
  page by page to the end (every thumbnail made and shown) and the health check done, against the
  same window on the same page with no images; and the page's worker processes in that run (the
  sum of their peaks), against the GUI process;
- the trainer on the tiny SD 1.5 model (``kamaal-train train``: the same ``run_worker`` the app's
  spawn child runs; LoRA, 64 px, batch 2, latents cached, a sample every 10 steps), against a bare
  ``python -c`` that imports torch and diffusers and loads the same model as a pipeline.

Each process reports its own peak, ``VmHWM`` from ``/proc/self/status`` as it ends (the trainer
through a wrapper that runs ``kamaal-train`` in-process and reads it at exit).  Not ``ru_maxrss``
(``getrusage``, ``wait4``): Linux carries the parent's high-water mark across fork + exec, so a
child of a big bench process would report the parent's size.  The ratio is Kamaal ÷ reference.

    python -m bench --only bench_memory
    python -m bench.bench_memory [--images N]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
IMAGES = 1000
TRAIN_STEPS = 20

PEAK = """
def _peak():
    with open("/proc/self/status", encoding="ascii") as status:
        kib = next(int(line.split()[1]) for line in status if line.startswith("VmHWM:"))
    print(f"PEAK_KIB {kib}", flush=True)
"""
BARE_LOAD = PEAK + """
import sys
import torch, diffusers
pipe = diffusers.StableDiffusionPipeline.from_pretrained(sys.argv[1], safety_checker=None)
_peak()
"""
TRAIN = PEAK + """
import atexit, runpy, sys
atexit.register(_peak)
sys.argv = ["kamaal-train", *sys.argv[1:]]
runpy.run_module("trainer.cli", run_name="__main__")
"""


def peak_mb(pid: int | str = "self") -> float:
    """A process's peak resident set since it started (``VmHWM``; this one by default), in MiB; Linux only."""
    with open(f"/proc/{pid}/status", encoding="ascii") as status:
        return next(int(line.split()[1]) for line in status if line.startswith("VmHWM:")) / 1024


# ---------------------------------------------------------------- inside the measured GUI interpreter

def _gui_child(folder: str, images: int) -> dict[str, Any]:
    from PySide6.QtWidgets import QApplication

    from bench.stalls import wait_until
    from desktop_app.main_window import MainWindow
    from desktop_app.style import apply_style
    from trainer.config import apply_overrides, config_from_dict, load_config
    from trainer.project import Project

    started = time.perf_counter()
    app = QApplication.instance() or QApplication([sys.argv[0]])
    apply_style(app)  # type: ignore[arg-type]
    preset = REPO / "resources" / "presets" / "sd15-lora-8gb.toml"
    project = Project.create(Path(os.environ["KAMAAL_DATA_DIR"]) / "project", preset)
    project.save(config_from_dict(apply_overrides(load_config(preset).to_dict(), [f'dataset.path="{folder}"'])))
    window = MainWindow(project, settings=None)
    window.resize(1280, 800)
    window.show()
    panel = window.dataset_panel
    window.show_page(panel)
    wait_until(lambda: False, 1.0)
    shown = 0
    if folder:
        wait_until(lambda: len(panel.dataset.entries) >= images, 120)
        bar = panel.grid.verticalScrollBar()
        wait_until(lambda: bar.maximum() > 0, 30)  # the grid lays out in batches of 200 rows
        while True:  # a page at a time, each page's thumbnails loaded before the next
            wait_until(lambda: False, 0.05)  # paint the page: that is what asks for its thumbnails
            wait_until(lambda: panel.loader.pending() == 0, 60, step_ms=20)
            if bar.value() >= bar.maximum():
                wait_until(lambda: False, 0.3)
                if bar.value() >= bar.maximum():  # not only the end of the rows laid out so far
                    break
            bar.setValue(bar.value() + bar.pageStep())
        wait_until(lambda: bool(panel.dataset.report_summary), 300)
        shown = panel.grid_model.loaded_count()
    else:
        wait_until(lambda: False, 3.0)
    wait_until(lambda: False, 0.5)
    peak = peak_mb()
    with open("/proc/self/statm", encoding="ascii") as handle:
        now_mb = int(handle.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20
    workers = [peak_mb(process.pid) for process in panel.dataset.processes.processes() if process.pid]
    result = {"peak_mb": round(peak, 1), "rss_end_mb": round(now_mb, 1), "images": len(panel.dataset.entries),
              "thumbnails_held": shown, "seconds": round(time.perf_counter() - started, 1),
              "workers": len(workers), "workers_peak_mb": round(sum(workers), 1)}
    window.close()
    return result


# ---------------------------------------------------------------- the bench process

def _env(data_dir: str) -> dict[str, str]:
    # One torch thread (both sides): on 2 shared cores OpenMP threads fighting other jobs make a short run take
    # minutes; the peak memory hardly depends on it.
    return {**os.environ, "QT_QPA_PLATFORM": "offscreen", "HF_HUB_OFFLINE": "1", "KAMAAL_DATA_DIR": data_dir,
            "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}


def gui_peak(folder: str, images: int) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="kamaal-bench-mem-gui-") as data_dir:
        command = [sys.executable, "-m", "bench.bench_memory", "--gui-child", folder, "--images", str(images)]
        result = subprocess.run(command, capture_output=True, text=True, cwd=REPO, env=_env(data_dir), timeout=900)
    lines = [line for line in result.stdout.splitlines() if line.startswith("RESULT ")]
    if result.returncode != 0 or not lines:
        raise RuntimeError(f"GUI ({folder or 'empty'}): exit {result.returncode}: {result.stderr.strip()[-600:]}")
    return dict(json.loads(lines[-1][len("RESULT "):]))


def child_peak_mb(command: list[str], env: dict[str, str], log: Path) -> float:
    """Run ``command`` (a ``PEAK`` snippet) to its end; the peak resident set it reported, in MiB."""
    with open(log, "wb") as out:
        code = subprocess.run(command, stdout=out, stderr=subprocess.STDOUT, cwd=REPO, env=env, timeout=900).returncode
    text = log.read_text(encoding="utf-8", errors="replace")
    peaks = [int(line.split()[1]) for line in text.splitlines() if line.startswith("PEAK_KIB ")]
    if code != 0 or not peaks:
        raise RuntimeError(f"{command[3:5]} exited {code}: {text[-600:]}")
    return peaks[-1] / 1024


def trainer_peaks(tmp: Path) -> tuple[float, float]:
    """(trainer run, bare pipeline load) peak RSS in MiB on the same tiny model."""
    from bench.bench_training import draw_shapes, kamaal_config
    from trainer.config import apply_overrides, config_from_dict, save_config

    env = _env(str(tmp))
    model_dir = tmp / "tiny-sd15"
    subprocess.run([sys.executable, "-m", "trainer.cli", "tiny-model", str(model_dir)], check=True, cwd=REPO,
                   capture_output=True, env=env, timeout=300)
    config = kamaal_config(model_dir, draw_shapes(tmp / "images"), caching=True, steps=TRAIN_STEPS)
    config = config_from_dict(apply_overrides(config.to_dict(), ["sampling.every_n_steps=10"]))
    save_config(config, tmp / "train.toml")
    train = child_peak_mb([sys.executable, "-c", TRAIN, "train", str(tmp / "train.toml"), "--run-dir",
                           str(tmp / "run")], env, tmp / "train.log")
    bare = child_peak_mb([sys.executable, "-c", BARE_LOAD, str(model_dir)], env, tmp / "bare.log")
    return train, bare


def measure(images: int = IMAGES) -> dict[str, Any]:
    from bench.bench_dataset import generate

    with tempfile.TemporaryDirectory(prefix="kamaal-bench-mem-") as tmp:
        folder = Path(tmp) / "images"
        generate(folder, images)
        if hasattr(os, "sync"):
            os.sync()
        empty = gui_peak("", images)
        loaded = gui_peak(str(folder), images)
        train, bare = trainer_peaks(Path(tmp))
    return {"gui_empty": empty, "gui_images": loaded, "trainer_mb": round(train, 1), "bare_load_mb": round(bare, 1),
            "images": images}


def rows(images: int = IMAGES) -> list[dict[str, str]]:
    r = measure(images)
    empty, loaded = r["gui_empty"], r["gui_images"]
    return [{"name": f"memory: GUI peak RSS, {images:,} images in the Dataset page",
             "kamaal": f"{loaded['peak_mb']:.0f} MB", "reference": f"{empty['peak_mb']:.0f} MB",
             "ratio": f"{loaded['peak_mb'] / empty['peak_mb']:.2f}",
             "note": f"vs the same window with no images; +{loaded['peak_mb'] - empty['peak_mb']:.0f} MB for "
                     f"{loaded['images']} images, grid scrolled to the end ({loaded['thumbnails_held']} thumbnails "
                     f"held), health check done; lower is better"},
            {"name": f"memory: Dataset page worker processes, peak RSS, {images:,} images",
             "kamaal": f"{loaded['workers_peak_mb']:.0f} MB", "reference": f"{loaded['peak_mb']:.0f} MB",
             "ratio": f"{loaded['workers_peak_mb'] / loaded['peak_mb']:.2f}",
             "note": f"the sum over its {loaded['workers']} worker processes (listing, thumbnails, health check), "
                     "vs the GUI process itself in the same run; lower is better"},
            {"name": "memory: trainer peak RSS, tiny SD LoRA run", "kamaal": f"{r['trainer_mb']:.0f} MB",
             "reference": f"{r['bare_load_mb']:.0f} MB", "ratio": f"{r['trainer_mb'] / r['bare_load_mb']:.2f}",
             "note": f"kamaal-train train ({TRAIN_STEPS} steps, 64 px, batch 2, samples) vs python -c 'import "
                     "torch, diffusers' + StableDiffusionPipeline.from_pretrained; VmHWM; lower is better"}]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=IMAGES)
    parser.add_argument("--gui-child", metavar="FOLDER", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.gui_child is not None:
        print("RESULT " + json.dumps(_gui_child(args.gui_child, args.images)), flush=True)
        return
    for row in rows(args.images):
        print(f"{row['name']}: {row['kamaal']} vs {row['reference']} (×{row['ratio']}); {row['note']}")


if __name__ == "__main__":
    main()

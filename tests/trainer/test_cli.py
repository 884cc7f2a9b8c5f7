"""kamaal-train: presets run as they are, bad input exits 2 naming the field, Ctrl-C saves."""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from tests.conftest import PRESETS, REPO
from trainer.config import load_config
from trainer.runfolder import RunFolder


def kamaal_train(*args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    return subprocess.run([sys.executable, "-m", "trainer", *args], capture_output=True, text=True, timeout=timeout,
                          cwd=REPO, env=env)


@pytest.mark.parametrize("preset", sorted(PRESETS.glob("toy*.toml")), ids=lambda p: p.stem)
def test_presets_run_as_they_are(tmp_path, preset):
    # Shortened with --set so the suite stays quick; everything else is the preset as shipped.
    result = kamaal_train("train", str(preset), "--run-dir", str(tmp_path / "run"),
                          "--set", "training.steps=40", "--set", "training.warmup_steps=0",
                          "--set", "toy.step_delay_ms=0")
    assert result.returncode == 0, result.stderr
    assert f"Run folder: {tmp_path / 'run'}" in result.stdout
    run = RunFolder(tmp_path / "run")
    assert run.load_config().training.steps == 40
    assert [row["step"] for row in run.read_metrics()][-1] == 40
    assert (run.output_dir / f"{run.load_config().output.run_name}.safetensors").is_file()
    assert run.latest_checkpoint()[0] == 40
    assert "Finished at step 40" in run.log_path.read_text()
    assert "40/40" in result.stderr  # the terminal progress bar ran to the end


# The Stable Diffusion presets are templates for the user's own base model (Kamaal ships none but the
# tiny demo one): as they are, the only thing missing is model.path, and training says so — exit 2, no traceback.
NEEDS_A_MODEL = sorted(p for p in PRESETS.glob("*.toml") if not p.stem.startswith(("toy", "demo")))


@pytest.mark.parametrize("preset", NEEDS_A_MODEL, ids=lambda p: p.stem)
def test_presets_for_your_own_model_ask_for_it_by_name(tmp_path, preset):
    result = kamaal_train("train", str(preset), "--run-dir", str(tmp_path / "run"))
    assert result.returncode == 2
    assert "model.path: choose the base model" in result.stderr and "Traceback" not in result.stderr
    assert not (tmp_path / "run").exists()  # refused before a run folder was made


@pytest.mark.parametrize(("override", "message"), [
    ("training.steps=0", "--set training.steps=0: must be ≥ 1, got 0"),
    ("training.learning_rate=fast", "--set training.learning_rate=fast: must be a number, got 'fast'"),
    ("training.stepz=5", "--set training.stepz=5: unknown key"),
    ("mode=dreambooth", "--set mode=dreambooth: 'dreambooth' does not work with model.architecture 'toy'"),
    ("training", "expected KEY=VALUE"),
])
def test_bad_overrides_exit_2_naming_the_set_not_the_file(tmp_path, override, message):
    result = kamaal_train("train", str(PRESETS / "toy.toml"), "--run-dir", str(tmp_path / "run"), "--set", override)
    assert result.returncode == 2
    assert message in result.stderr
    assert "toy.toml" not in result.stderr  # the preset file is fine: the --set is what to fix
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "run").exists()  # nothing is created for a refused config


def test_a_problem_that_only_the_overrides_cause_names_them(tmp_path):
    result = kamaal_train("train", str(PRESETS / "toy.toml"), "--run-dir", str(tmp_path / "run"),
                          "--set", "training.steps=60")  # the preset warms up for 100 steps
    assert result.returncode == 2
    assert "toy.toml: training.warmup_steps" in result.stderr and "(with --set training.steps=60)" in result.stderr


def test_dataset_help_is_the_dataset_tools_help(capsys):
    from trainer.cli import main

    assert main(["dataset", "--help"]) == 0 and "kamaal-train dataset" in capsys.readouterr().out


def test_the_terminal_shows_no_nan_loss_and_short_sample_lines(capsys):
    from trainer.cli import TerminalEvents
    from trainer.protocol import Progress, Sample, Started

    events = TerminalEvents()
    events.emit(Started(run_dir="/r", mode="lora", start_step=0, total_steps=10, device="cpu", pid=1))
    events.emit(Progress(step=0, total_steps=10, loss=float("nan"), lr=1e-4, it_per_s=0.0, eta_s=0.0,
                         elapsed_s=0.0, memory_bytes=0, memory_kind="rss", heldout_loss=1.2))
    events.emit(Sample(1, tuple(f"/r/samples/step-000001/p{i:02d}-seed1.png" for i in range(8)), ("a",) * 8,
                       (1,) * 8))
    events._close()
    err = capsys.readouterr().err
    assert "nan" not in err and "lr=1.00e-04" in err
    assert "samples at step 1: 8 images in /r/samples/step-000001" in err and "p07-seed1.png" not in err


def test_missing_config_file_exits_2(tmp_path):
    result = kamaal_train("train", str(tmp_path / "nope.toml"))
    assert result.returncode == 2 and "nope.toml: file not found" in result.stderr


def test_resume_continues_from_last_checkpoint(tmp_path):
    run_dir = tmp_path / "run"
    first = kamaal_train("train", str(PRESETS / "toy.toml"), "--run-dir", str(run_dir), "--set", "training.steps=30",
                         "--set", "training.warmup_steps=0",
                         "--set", "output.checkpoint_every=10", "--set", "toy.step_delay_ms=0")
    assert first.returncode == 0, first.stderr
    output = RunFolder(run_dir).output_dir / "toy.safetensors"
    uninterrupted = load_file(output)
    # Pretend the run was interrupted at step 20: drop the newest checkpoint and the outputs.
    shutil.rmtree(RunFolder(run_dir).checkpoint_dir(30))
    output.unlink()
    second = kamaal_train("resume", str(run_dir))
    assert second.returncode == 0, second.stderr
    assert "Resumed from step-000020 at step 20" in second.stderr
    assert [row["step"] for row in RunFolder(run_dir).read_metrics()] == [0, *range(5, 31, 5)]
    resumed = load_file(output)
    assert resumed.keys() == uninterrupted.keys()
    for name in resumed:  # the resumed run ends with the very weights of the uninterrupted one
        assert torch.equal(resumed[name], uninterrupted[name]), name


def kamaal_train_into_a_closed_pipe(*args: str) -> subprocess.CompletedProcess:
    """``kamaal-train ARGS | head`` at its worst: the reader has gone before the first line is written."""
    reader, writer = os.pipe()
    os.close(reader)
    try:
        return subprocess.run([sys.executable, "-m", "trainer", *args], stdout=writer, stderr=subprocess.PIPE,
                              text=True, timeout=120, cwd=REPO, env={**os.environ, "PYTHONPATH": str(REPO)})
    finally:
        os.close(writer)


def test_a_reader_that_goes_away_ends_the_output_quietly_and_the_run_as_it_would_have(tmp_path):
    """``kamaal-train train … | head``: the run trains to the end and exits 0 (its outputs and log.txt are what
    count); a command whose output is cut short exits 1, as Python does on a broken pipe; neither says more."""
    run = RunFolder(tmp_path / "run")
    trained = kamaal_train_into_a_closed_pipe("train", str(PRESETS / "toy.toml"), "--run-dir", str(run.root),
                                              "--set", "training.steps=5", "--set", "training.warmup_steps=0",
                                              "--set", "toy.step_delay_ms=0")
    assert trained.returncode == 0, trained.stderr
    assert "Broken pipe" not in trained.stderr and "Traceback" not in trained.stderr
    assert "Finished at step 5" in run.log_path.read_text() and "Broken pipe" not in run.log_path.read_text()
    assert (run.output_dir / "toy.safetensors").is_file()

    dataset = tmp_path / "data"
    dataset.mkdir()
    checked = kamaal_train_into_a_closed_pipe("dataset", "check", str(dataset))
    assert (checked.returncode, checked.stderr) == (1, "")


def test_refuses_to_overwrite_a_run(tmp_path):
    args = ("train", str(PRESETS / "toy.toml"), "--run-dir", str(tmp_path / "run"), "--set", "training.steps=5",
            "--set", "training.warmup_steps=0")
    assert kamaal_train(*args).returncode == 0
    again = kamaal_train(*args)
    assert again.returncode == 2 and "already holds a run" in again.stderr


@contextlib.contextmanager
def endless_toy_run(run_dir: Path, **env: str) -> Iterator[tuple[subprocess.Popen, float]]:
    """``kamaal-train train`` on the toy preset with no end in sight, once it has logged a step: yields the
    process and the deadline (60 s from then) for what the test waits for next; killed if still running."""
    process = subprocess.Popen(
        [sys.executable, "-m", "trainer", "train", str(PRESETS / "toy.toml"), "--run-dir", str(run_dir),
         "--set", "training.steps=1000000"], cwd=REPO, env={**os.environ, "PYTHONPATH": str(REPO), **env},
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 60
        metrics = run_dir / "metrics.jsonl"
        while not (metrics.exists() and metrics.stat().st_size > 0):
            assert time.monotonic() < deadline and process.poll() is None, "the run never logged a step"
            time.sleep(0.05)
        yield process, time.monotonic() + 60
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()


def test_ctrl_c_stops_cleanly_with_a_save(tmp_path):
    run_dir = tmp_path / "run"
    with endless_toy_run(run_dir) as (process, _):
        process.send_signal(signal.SIGINT)
        stdout, stderr = process.communicate(timeout=60)
    assert process.returncode == 0, stderr
    assert "Stopping after this step and saving" in stderr
    stopped_at = int(re.search(r"Stopped at step (\d+)\.", stdout).group(1))
    run = RunFolder(run_dir)
    step, _ = run.latest_checkpoint()
    assert step == stopped_at > 0  # saved at the step it stopped at: resume loses nothing
    assert (run.output_dir / "toy.safetensors").is_file()
    assert run.read_metrics()[-1]["step"] <= step


def test_a_second_ctrl_c_says_it_is_still_saving_and_the_save_finishes(tmp_path):
    """Pressing Ctrl-C again while the save runs (here stretched to 3 s by the worker's test hook) must not
    throw the save away: only a third Ctrl-C aborts."""
    run_dir = tmp_path / "run"
    with endless_toy_run(run_dir, KAMAAL_TEST_SLOW_SAVE="1.5/0.5") as (process, deadline):
        process.send_signal(signal.SIGINT)
        while not (run_dir / "log.txt").read_text(encoding="utf-8").count("Stop requested"):
            assert time.monotonic() < deadline and process.poll() is None
            time.sleep(0.05)
        process.send_signal(signal.SIGINT)  # impatient: the save has just begun
        stdout, stderr = process.communicate(timeout=60)
    assert process.returncode == 0, stderr
    assert "Still stopping" in stderr and "Aborted" not in stderr
    stopped_at = int(re.search(r"Stopped at step (\d+)\.", stdout).group(1))
    run = RunFolder(run_dir)
    assert run.latest_checkpoint()[0] == stopped_at
    assert (run.output_dir / "toy.safetensors").is_file()


def test_help_explains_every_flag():
    result = kamaal_train("train", "--help")
    assert result.returncode == 0
    for words in ("--run-dir", "--set", "KEY=VALUE", "Ctrl-C"):
        assert words in result.stdout
    assert Path(REPO / "trainer" / "cli.py").is_file()


def test_demo_preset_trains_the_tiny_model_as_shipped(tmp_path):
    result = kamaal_train("train", str(PRESETS / "demo.toml"), "--run-dir", str(tmp_path / "run"),
                          "--set", "training.steps=4", "--set", "training.warmup_steps=0",
                          "--set", "sampling.every_n_steps=0", "--set", "training.eval_every=2", timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    run = RunFolder(tmp_path / "run")
    assert (run.output_dir / "demo.safetensors").is_file()
    assert (run.output_dir / "diffusers" / "pytorch_lora_weights.safetensors").is_file()
    demo = load_config(PRESETS / "demo.toml")
    pictures = len(demo.sampling.prompts) * len(demo.sampling.seeds)
    assert len(list(run.sample_dir(4).glob("*.png"))) == pictures  # every prompt × seed, at the end
    assert [row["step"] for row in run.read_metrics() if "heldout_loss" in row] == [0, 2, 4]

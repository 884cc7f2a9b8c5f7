"""One trainer per run folder: a second one is refused by name (exit 2); a killed one leaves no stale lock."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.trainer.helpers import run_in_process, toy_config
from trainer.protocol import EXIT_BAD_INPUT, EXIT_OK, Failed, Started
from trainer.runfolder import RunFolder
from trainer.runlock import LOCK_FILE, RunFolderBusy, lock_run_folder

REPO = Path(__file__).resolve().parents[2]
PRESETS = REPO / "resources" / "presets"
ENV = {**os.environ, "PYTHONPATH": str(REPO)}


def wait_for(condition, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


def test_a_second_trainer_is_refused_and_a_killed_one_leaves_the_folder_free(tmp_path):
    run_dir = tmp_path / "run"
    first = subprocess.Popen(
        [sys.executable, "-m", "trainer", "train", str(PRESETS / "toy.toml"), "--run-dir", str(run_dir),
         "--set", "training.steps=100000", "--set", "output.checkpoint_every=50", "--set", "toy.step_delay_ms=2"],
        cwd=REPO, env=ENV, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        checkpoints = RunFolder(run_dir).checkpoints
        wait_for(lambda: bool(checkpoints()), 120, "the first trainer's first checkpoint")
        metrics_rows = len((run_dir / "metrics.jsonl").read_text().splitlines())

        second = subprocess.run([sys.executable, "-m", "trainer", "resume", str(run_dir)], cwd=REPO, env=ENV,
                                capture_output=True, text=True, timeout=120)
        assert second.returncode == EXIT_BAD_INPUT, second.stderr
        assert f"error: {run_dir}: another trainer (process {first.pid}) is using this run folder" in second.stderr
        assert "Traceback" not in second.stderr
        assert first.poll() is None  # the first one trains on, its metrics untouched (they only grow)
        assert len((run_dir / "metrics.jsonl").read_text().splitlines()) >= metrics_rows
        with pytest.raises(RunFolderBusy, match="another trainer"):
            lock_run_folder(run_dir)
    finally:
        first.send_signal(signal.SIGKILL)
        first.wait(timeout=30)
    assert first.returncode == -signal.SIGKILL
    assert (run_dir / LOCK_FILE).exists()  # the file stays; the lock died with its process
    lock_run_folder(run_dir).release()


def test_the_worker_refuses_a_held_folder_before_writing_anything(tmp_path):
    config = toy_config(training={"steps": 10})
    run_dir = tmp_path / "run"
    code, _ = run_in_process(config, run_dir)
    assert code == EXIT_OK
    before = {p: p.stat().st_mtime_ns for p in run_dir.rglob("*") if p.is_file() and p.name != LOCK_FILE}

    with lock_run_folder(run_dir):  # another open file description: refused even inside this process
        code, rec = run_in_process(config, run_dir, resume=True)
    assert code == EXIT_BAD_INPUT
    failed = rec.of(Failed)[0]
    assert failed.kind == "input" and failed.message.startswith(f"{run_dir}: another trainer (process {os.getpid()})")
    assert not rec.of(Started)
    after = {p: p.stat().st_mtime_ns for p in run_dir.rglob("*") if p.is_file() and p.name != LOCK_FILE}
    assert after == before  # not a line in log.txt, not a metrics row

    code, rec = run_in_process(config, run_dir, resume=True)  # released: the folder is free again
    assert code == EXIT_OK, rec.of(Failed)

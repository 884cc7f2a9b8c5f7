"""The trainer in a spawn-context child: commands over the queue, failures, orphan exit."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import psutil
import pytest

from tests.conftest import REPO
from tests.trainer.helpers import toy_config
from trainer.process import TrainerProcess, describe_exit
from trainer.protocol import (
    EXIT_ERROR,
    Failed,
    Finished,
    LayerWeights,
    Pause,
    Paused,
    Progress,
    Resume,
    Resumed,
    SampleNow,
    SaveNow,
    Started,
    Stop,
)
from trainer.runfolder import RunFolder


def wait_for(trainer: TrainerProcess, kind: type, log: list, timeout: float = 60):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for event in trainer.poll_events():
            log.append(event)
        found = [e for e in log if isinstance(e, kind)]
        if found:
            return found[-1]
        time.sleep(0.02)
    raise AssertionError(f"no {kind.__name__} within {timeout}s; got {[type(e).__name__ for e in log]}")


@pytest.fixture
def trainer_factory():
    made: list[TrainerProcess] = []

    def make(run_dir, resume=False) -> TrainerProcess:
        trainer = TrainerProcess(run_dir, resume=resume)
        made.append(trainer)
        trainer.start()
        return trainer

    yield make
    for trainer in made:
        trainer.close()


def test_subprocess_obeys_every_command(tmp_path, trainer_factory):
    config = toy_config(training={"steps": 1_000_000, "log_every": 5}, toy={"samples": 256, "step_delay_ms": 1})
    run = RunFolder.create(config, tmp_path / "run")
    trainer = trainer_factory(run.root)
    events: list = []
    started = wait_for(trainer, Started, events)
    assert started.pid == trainer.pid != os.getpid()
    wait_for(trainer, Progress, events)

    trainer.send(Pause())
    paused = wait_for(trainer, Paused, events)
    time.sleep(0.3)
    held = [e.step for e in trainer.poll_events() if isinstance(e, Progress)]
    assert held == []  # nothing trains while paused
    trainer.send(SampleNow())
    sampled = wait_for(trainer, LayerWeights, [])
    assert sampled.step == paused.step  # SampleNow is honoured while paused, at the paused step
    trainer.send(SaveNow())
    trainer.send(Resume())
    assert wait_for(trainer, Resumed, []).step == paused.step
    progress_after = wait_for(trainer, Progress, [])
    assert progress_after.step > paused.step

    trainer.send(Stop(save=True))
    finished = wait_for(trainer, Finished, events)
    trainer.join(30)
    assert trainer.exitcode == 0
    assert finished.stopped and finished.outputs
    steps = [step for step, _ in run.checkpoints()]
    assert paused.step in steps and finished.step in steps


def test_refused_config_exits_2_with_named_field(tmp_path, trainer_factory):
    config = toy_config(mode="frozen", model={"architecture": "toy", "path": str(tmp_path / "nope.safetensors")})
    run = RunFolder.create(config, tmp_path / "run")
    trainer = trainer_factory(run.root)
    failed = wait_for(trainer, Failed, [])
    trainer.join(30)
    assert trainer.exitcode == 2
    assert failed.kind == "input" and failed.message.startswith("model.path: file not found")


def test_unreadable_checkpoint_on_resume_fails_cleanly(tmp_path, trainer_factory):
    config = toy_config(training={"steps": 20}, output={"run_name": "t", "checkpoint_every": 10})
    run = RunFolder.create(config, tmp_path / "run")
    trainer = trainer_factory(run.root)
    wait_for(trainer, Finished, [])
    trainer.join(30)
    (run.checkpoint_dir(20) / "training_state.pt").write_bytes(b"\x80garbage")
    again = trainer_factory(run.root, resume=True)
    failed = wait_for(again, Failed, [])
    again.join(30)
    assert again.exitcode == 2 and "step-000020" in failed.message


def still_running(process: psutil.Process) -> bool:
    try:
        return process.is_running() and process.status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:  # reaped between the two questions
        return False


def test_trainer_exits_when_its_parent_dies(tmp_path):
    parent = subprocess.Popen([sys.executable, "-m", "tests.trainer.orphan_parent", str(tmp_path / "run")],
                              cwd=REPO, stdout=subprocess.PIPE, text=True)
    child = None
    try:
        child = psutil.Process(int(parent.stdout.readline()))
        metrics = tmp_path / "run" / "metrics.jsonl"
        deadline = time.monotonic() + 60
        while not (metrics.exists() and metrics.stat().st_size > 0):  # the trainer is really training
            assert time.monotonic() < deadline, "trainer never started training"
            time.sleep(0.05)
        parent.send_signal(signal.SIGKILL)
        parent.wait(10)
        killed_at = time.monotonic()
        while still_running(child):
            assert time.monotonic() - killed_at < 5, "orphaned trainer still running after 5 s"
            time.sleep(0.05)
    finally:
        if parent.poll() is None:
            parent.kill()
            parent.wait()
        if child is not None and still_running(child):
            child.kill()  # a failed test must not leave an orphaned trainer (no longer our child) behind


@pytest.mark.parametrize(("where", "function"), [("in_the_loop", "broken_step"),
                                                  ("outside_the_worker", "broken_worker")])
def test_an_exception_in_the_child_becomes_failed_with_its_traceback_then_exit_1(tmp_path, where, function):
    from tests.trainer.broken_child import train_with_a_bug
    from trainer.process import SPAWN

    run = RunFolder.create(toy_config(), tmp_path / "run")
    trainer = TrainerProcess(run.root)
    trainer._process = SPAWN.Process(target=train_with_a_bug,
                                     args=(where, str(run.root), trainer._commands, trainer._events))
    try:
        trainer.start()
        events: list = []
        failed = wait_for(trainer, Failed, events)
        trainer.join(30)
        assert trainer.exitcode == EXIT_ERROR
        assert failed.kind == "error" and failed.message == "RuntimeError: disk on fire"
        assert "Traceback" in failed.traceback and function in failed.traceback
        assert not [e for e in events if isinstance(e, Finished)]
    finally:
        trainer.close()


@pytest.mark.parametrize(("code", "words"), [(-9, "killed by signal SIGKILL"), (1, "exited with code 1"),
                                             (None, "still running"), (3, "app went away")])
def test_describe_exit(code, words):
    assert words in describe_exit(code)


def test_a_message_torn_by_the_childs_death_does_not_block_the_reader(tmp_path):
    from tests.trainer.torn_writer import write_half_a_message_and_die
    from trainer.process import SPAWN

    trainer = TrainerProcess(tmp_path)
    trainer._process = SPAWN.Process(target=write_half_a_message_and_die,
                                     args=(trainer._commands, trainer._events))
    try:
        trainer.start()
        trainer.join(30)
        assert trainer.exitcode == 9
        started = time.monotonic()
        assert trainer.poll_events() == []  # returns, rather than waiting for the other 99,990 bytes
        assert time.monotonic() - started < 5
    finally:
        trainer.close()

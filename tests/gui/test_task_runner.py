"""The task bridge: a short engine task in a trainer process, watched from the GUI thread."""

from __future__ import annotations

import pytest

from desktop_app.tasks import TaskRunner

TASKS = "tests.trainer.tasks_for_tests"


@pytest.fixture
def runner(qtbot):
    runner = TaskRunner()
    yield runner
    runner.close()


def test_progress_then_done_on_the_gui_thread(qtbot, runner):
    progress: list = []
    runner.progress.connect(progress.append)
    with qtbot.waitSignal(runner.busyChanged, timeout=60_000, check_params_cb=lambda busy: not busy):
        with qtbot.waitSignal(runner.done, timeout=60_000) as done:
            assert runner.start(f"{TASKS}:count", {"n": 3})
            assert runner.is_busy() and runner.task == f"{TASKS}:count"
    assert done.args[0].result["counted"] == 3
    assert [p.done for p in progress] == [1, 2, 3]
    assert not runner.is_busy()


def test_one_task_at_a_time(qtbot, runner):
    runner.start(f"{TASKS}:count", {"n": 1000, "delay_s": 0.01})
    with pytest.raises(RuntimeError, match="still running"):
        runner.start(f"{TASKS}:count", {"n": 1})


def test_cancel_ends_with_a_cancelled_failure(qtbot, runner):
    with qtbot.waitSignal(runner.progress, timeout=60_000):
        runner.start(f"{TASKS}:count", {"n": 100_000, "delay_s": 0.01})
    with qtbot.waitSignal(runner.failed, timeout=30_000) as failed:
        runner.cancel()
    assert failed.args[0].kind == "cancelled"
    qtbot.waitUntil(lambda: not runner.is_busy(), timeout=10_000)


def test_a_task_that_dies_is_reported_as_a_crash(qtbot, runner):
    with qtbot.waitSignal(runner.failed, timeout=60_000) as failed:
        runner.start(f"{TASKS}:die", {})
    assert failed.args[0].kind == "crash" and "exited with code 7" in failed.args[0].message

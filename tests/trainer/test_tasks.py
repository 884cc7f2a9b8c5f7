"""Short tasks in a trainer process: results, progress, refusals, bugs and cancel — in-process and over the queue."""

from __future__ import annotations

import time

import pytest

from tests.trainer.helpers import Recorder
from trainer.process import TaskProcess
from trainer.protocol import EXIT_BAD_INPUT, EXIT_ERROR, EXIT_OK, Failed, Log, Stop, TaskDone, TaskProgress
from trainer.tasks.runner import run_task

TASKS = "tests.trainer.tasks_for_tests"


class Commands:
    """A command source that delivers ``Stop`` after ``after`` polls."""

    def __init__(self, after: int | None = None) -> None:
        self.after = after
        self.polls = 0

    def poll(self):
        self.polls += 1
        return Stop(save=False) if self.after is not None and self.polls > self.after else None


def test_a_task_reports_progress_then_its_result():
    events = Recorder()
    assert run_task(f"{TASKS}:count", {"n": 3, "echo": "hi"}, Commands(), events) == EXIT_OK
    assert [(p.done, p.total) for p in events.of(TaskProgress)] == [(1, 3), (2, 3), (3, 3)]
    assert events.of(Log)[0].message == "counted them all"
    (done,) = events.of(TaskDone)
    assert done.result == {"counted": 3, "echo": "hi"}
    assert isinstance(events.events[-1], TaskDone)


def test_bad_input_is_a_named_refusal_with_exit_2():
    events = Recorder()
    assert run_task(f"{TASKS}:refuse", {"path": "/no/such/folder"}, Commands(), events) == EXIT_BAD_INPUT
    (failed,) = events.of(Failed)
    assert failed.kind == "input" and "/no/such/folder" in failed.message and not events.of(TaskDone)


def test_a_bug_is_reported_with_its_traceback():
    events = Recorder()
    assert run_task(f"{TASKS}:bug", {}, Commands(), events) == EXIT_ERROR
    (failed,) = events.of(Failed)
    assert failed.kind == "error" and "ZeroDivisionError" in failed.message and "tasks_for_tests.py" in failed.traceback


def test_stop_cancels_at_the_next_check():
    events = Recorder()
    assert run_task(f"{TASKS}:count", {"n": 100}, Commands(after=5), events) == EXIT_ERROR
    assert len(events.of(TaskProgress)) == 5
    (failed,) = events.of(Failed)
    assert failed.kind == "cancelled" and not events.of(TaskDone)


def test_unknown_task_names_the_known_ones():
    events = Recorder()
    assert run_task("no-such-task", {}, Commands(), events) == EXIT_ERROR
    (failed,) = events.of(Failed)
    assert "unknown task 'no-such-task'" in failed.message and "inspect-blocks" in failed.message


def collect(process: TaskProcess, until: type, timeout: float = 60) -> list:
    seen: list = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        seen += process.poll_events()
        if any(isinstance(e, until) for e in seen):
            return seen
        time.sleep(0.02)
    raise AssertionError(f"no {until.__name__} within {timeout}s: {seen}")


@pytest.fixture
def task_process():
    made: list[TaskProcess] = []

    def make(name: str, args: dict) -> TaskProcess:
        process = TaskProcess(name, args)
        made.append(process)
        process.start()
        return process

    yield make
    for process in made:
        process.close()


def test_a_task_runs_in_a_child_and_exits_cleanly(task_process):
    process = task_process(f"{TASKS}:count", {"n": 4})
    events = collect(process, TaskDone)
    assert [e.done for e in events if isinstance(e, TaskProgress)] == [1, 2, 3, 4]
    process.join(10)
    assert process.exitcode == EXIT_OK


def test_a_running_child_task_obeys_stop(task_process):
    process = task_process(f"{TASKS}:count", {"n": 10_000, "delay_s": 0.01})
    collect(process, TaskProgress)
    process.send(Stop(save=False))
    failed = [e for e in collect(process, Failed) if isinstance(e, Failed)]
    assert failed[0].kind == "cancelled"
    process.join(10)
    assert process.exitcode == EXIT_ERROR


def test_bad_input_in_a_child_exits_2(task_process):
    process = task_process(f"{TASKS}:refuse", {"path": "/nowhere"})
    collect(process, Failed)
    process.join(10)
    assert process.exitcode == EXIT_BAD_INPUT

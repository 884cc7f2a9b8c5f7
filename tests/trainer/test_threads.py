"""The CPU thread policy (trainer/threads.py): the choice itself, and that a spawned trainer child runs under it."""

from __future__ import annotations

import os
import time

import pytest

from trainer import threads
from trainer.process import TaskProcess
from trainer.protocol import EXIT_OK, Failed, TaskDone
from trainer.tasks.runner import TaskContext

POLICY_VARIABLES = ("KAMAAL_THREADS", "OMP_NUM_THREADS", "OMP_WAIT_POLICY", "KMP_BLOCKTIME", "LOCAL_WORLD_SIZE")


def report_threads(args: dict, context: TaskContext) -> dict:
    """A task: what the child's torch and OpenMP were set up with (runs in the spawned child)."""
    import torch

    return {"threads": torch.get_num_threads(), "interop": torch.get_num_interop_threads(),
            "wait": os.environ.get("OMP_WAIT_POLICY"), "blocktime": os.environ.get("KMP_BLOCKTIME"),
            "cores": threads.usable_cores(), "log": threads.describe()}


def never_busy() -> float:
    return 0.0


def must_not_sample() -> float:
    raise AssertionError("the load was sampled although it could not change the answer")


@pytest.mark.parametrize(("cores", "busy", "expected"), [
    (1, must_not_sample, 1), (2, must_not_sample, 1),  # two cores: one for training, one for the app
    (4, never_busy, 3), (16, never_busy, threads.MAX_THREADS),
    (8, lambda: 3.4, 5), (8, lambda: 7.9, 1),  # other programs' busy cores are left to them
])
def test_cpu_threads_leave_room_for_the_app_and_other_work(cores, busy, expected):
    choice = threads.choose_threads({}, cuda=False, cores=cores, busy=busy)
    assert choice.threads == expected
    assert f"{cores} physical cores" in choice.reason


def chosen(environ: dict[str, str], *, cuda: bool = False, cores: int = 8) -> threads.ThreadChoice:
    return threads.choose_threads(environ, cuda=cuda, cores=cores, busy=must_not_sample)


def test_the_users_choice_wins_and_cuda_keeps_torchs_count():
    assert chosen({"KAMAAL_THREADS": "3"}, cuda=True, cores=2).threads == 3
    assert chosen({"KAMAAL_THREADS": "torch"}).threads is None
    assert chosen({"OMP_NUM_THREADS": "6"}).threads is None
    assert chosen({}, cuda=True).threads is None
    bad = chosen({"KAMAAL_THREADS": "lots"}, cores=2)
    assert bad.threads == 1 and "KAMAAL_THREADS='lots' ignored" in bad.reason
    # Under a launcher each local process gets its share; the siblings' start-up is not "other work".
    assert chosen({"LOCAL_WORLD_SIZE": "2"}).threads == 3


def test_the_wait_policy_is_passive_unless_the_user_chose():
    environ = {"OMP_WAIT_POLICY": "ACTIVE"}
    assert threads.prepare_environment(environ) == {"KMP_BLOCKTIME": "0"}
    assert environ == {"OMP_WAIT_POLICY": "ACTIVE", "KMP_BLOCKTIME": "0"}
    environ = {"KAMAAL_THREADS": "torch"}
    assert threads.prepare_environment(environ) == {} and environ == {"KAMAAL_THREADS": "torch"}


def run_report(monkeypatch, **environment: str) -> dict:
    """``report_threads`` in a real spawned task child, with only ``environment`` of the policy's variables set."""
    for name in POLICY_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    for name, value in environment.items():
        monkeypatch.setenv(name, value)
    process = TaskProcess(f"{__name__}:report_threads", {})
    try:
        process.start()
        seen: list = []
        deadline = time.monotonic() + 120
        while not any(isinstance(e, TaskDone | Failed) for e in seen) and time.monotonic() < deadline:
            seen += process.poll_events()
            time.sleep(0.02)
        process.join(30)
        (done,) = [e for e in seen if isinstance(e, TaskDone)] or [None]
        assert done is not None, f"no result from the child: {seen}"
        assert process.exitcode == EXIT_OK
        return done.result
    finally:
        process.close()


def test_a_spawned_child_trains_with_the_policy_not_torchs_defaults(monkeypatch):
    report = run_report(monkeypatch)
    # torch's default would be one thread per physical core, and OpenMP's threads would spin while they wait.
    assert 1 <= report["threads"] <= min(max(1, report["cores"] - 1), threads.MAX_THREADS)
    assert report["interop"] == 1
    assert (report["wait"], report["blocktime"]) == ("PASSIVE", "0")
    assert "for the app" in report["log"] and "OpenMP wait policy: PASSIVE" in report["log"]


def test_a_spawned_child_obeys_kamaal_threads_and_the_users_wait_policy(monkeypatch):
    report = run_report(monkeypatch, KAMAAL_THREADS="3", OMP_WAIT_POLICY="ACTIVE")
    assert (report["threads"], report["wait"], report["blocktime"]) == (3, "ACTIVE", "0")
    assert "CPU threads: 3 (KAMAAL_THREADS=3)" in report["log"]

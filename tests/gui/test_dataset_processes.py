"""The Dataset page's worker pool (``desktop_app.dataset.processes``): work in spawned processes, answers,
progress and failures back on the GUI thread, cancellation that reaches a running job, priorities, a
dead worker replaced, and nothing left running after ``shutdown``."""

from __future__ import annotations

import os
import pickle
import time
from functools import partial
from multiprocessing import get_context

import pytest
from PySide6.QtCore import QThread
from PySide6.QtWidgets import QApplication

from desktop_app.dataset import jobs
from desktop_app.dataset.processes import Processes, WorkerDied
from desktop_app.dataset.thumbnails import ThumbnailLoader
from desktop_app.dataset.worker import child_main
from tests.dataset.conftest import picture, save_heic
from tests.gui import process_jobs
from trainer.dataset import DatasetImageError


@pytest.fixture
def pool():
    made: list[Processes] = []

    def make(processes: int = 2) -> Processes:
        made.append(Processes(processes=processes))
        return made[-1]

    yield make
    for one in made:
        one.shutdown()


class Answers:
    """What the callbacks received, and on which thread."""

    def __init__(self) -> None:
        self.done: dict[str, object] = {}
        self.failed: dict[str, BaseException] = {}
        self.progress: list[tuple[int, int]] = []
        self.order: list[str] = []
        self.off_gui_thread = 0

    def _note(self) -> None:
        if QThread.currentThread() is not QApplication.instance().thread():
            self.off_gui_thread += 1

    def on_done(self, name: str):
        def done(value: object) -> None:
            self._note()
            self.done[name] = value
            self.order.append(name)
        return done

    def on_failed(self, name: str):
        def failed(error: BaseException) -> None:
            self._note()
            self.failed[name] = error
        return failed

    def on_progress(self, done: int, total: int) -> None:
        self._note()
        self.progress.append((done, total))


def test_work_runs_in_a_worker_process_and_answers_on_the_gui_thread(qtbot, pool):
    workers, answers = pool(), Answers()
    workers.run(process_jobs.pid, answers.on_done("pid"))
    workers.run(partial(process_jobs.counted, 5), answers.on_done("counted"), on_progress=answers.on_progress)
    qtbot.waitUntil(lambda: len(answers.done) == 2, timeout=30_000)
    worker_pids = {process.pid for process in workers.processes()}
    assert answers.done["pid"] != os.getpid() and answers.done["pid"] in worker_pids
    assert answers.done["counted"] == "counted"
    assert answers.progress == [(n, 5) for n in range(1, 6)]  # every report, in order, before the answer
    assert answers.off_gui_thread == 0


def test_a_failure_keeps_its_type_and_says_it_happened_in_the_worker(qtbot, pool, tmp_path):
    workers, answers = pool(), Answers()
    workers.run(partial(process_jobs.unusable_image, tmp_path / "a.jpg"), answers.on_done("image"),
                answers.on_failed("image"))
    workers.run(process_jobs.odd_error, answers.on_done("odd"), answers.on_failed("odd"))
    workers.run(process_jobs.unpicklable_answer, answers.on_done("lock"), answers.on_failed("lock"))
    qtbot.waitUntil(lambda: len(answers.failed) == 3, timeout=30_000)
    error = answers.failed["image"]
    assert isinstance(error, DatasetImageError)
    assert (error.path, error.code) == (tmp_path / "a.jpg", "truncated")
    assert any("In the dataset worker process" in note and "unusable_image" in note for note in error.__notes__)
    odd = answers.failed["odd"]  # its class cannot be rebuilt in the GUI process: named in a RuntimeError
    assert type(odd) is RuntimeError and "Odd: a/b" in str(odd)
    assert type(answers.failed["lock"]) is RuntimeError and "cannot be sent" in str(answers.failed["lock"])
    assert not answers.done


def test_heic_thumbnails_come_from_the_workers_and_an_unreadable_format_says_what_to_do(qtbot, pool, tmp_path):
    """A spawned worker knows HEIC by itself (the opener is registered by the dataset library, not by a test)."""
    heic, jxl = tmp_path / "IMG_0001.HEIC", tmp_path / "drawing.jxl"
    save_heic(picture(1, 320, 240), heic)
    jxl.write_bytes(b"\xff\x0a" + bytes(64))
    workers, answers = pool(processes=1), Answers()
    workers.run(jobs.decoders, answers.on_done("decoders"))
    loader = ThumbnailLoader(workers)
    ready: dict[str, tuple[int, int]] = {}
    failed: dict[str, str] = {}
    loader.ready.connect(lambda path, image: ready.setdefault(path, (image.width(), image.height())))
    loader.failed.connect(failed.setdefault)
    loader.request(str(heic))
    loader.request(str(jxl))
    qtbot.waitUntil(lambda: len(ready) + len(failed) == 2 and bool(answers.done), timeout=30_000)
    assert ready == {str(heic): (jobs.THUMB_SIZE, jobs.THUMB_SIZE * 3 // 4)}
    assert "JPEG XL" in failed[str(jxl)] and "convert it to PNG or JPEG" in failed[str(jxl)]
    assert answers.done["decoders"] == {"HEIC": True, "AVIF": True}  # what the packaged app's self-test asks


def test_work_that_cannot_be_pickled_is_refused_at_once(pool):
    workers = pool()
    with pytest.raises((pickle.PicklingError, AttributeError, TypeError)):
        workers.run(lambda _report, _cancelled: 1, lambda _value: None)
    assert not workers.busy() and not workers.processes()  # nothing queued, no process started for it


def test_cancelling_reaches_the_running_job_and_frees_its_worker(qtbot, pool):
    workers, answers = pool(processes=1), Answers()
    job = workers.run(partial(process_jobs.until_cancelled, 60.0), answers.on_done("long"),
                      on_progress=answers.on_progress)
    qtbot.waitUntil(lambda: answers.progress == [(0, 1)], timeout=30_000)  # it runs now
    started = time.monotonic()
    job.cancel()
    workers.run(partial(process_jobs.named, "next", 0.0), answers.on_done("next"))
    qtbot.waitUntil(lambda: "next" in answers.done, timeout=30_000)
    assert time.monotonic() - started < 10  # the one worker was freed long before the job's 60 s
    assert "long" not in answers.done  # a cancelled job's answer is dropped


def test_higher_priority_work_goes_first(qtbot, pool):
    workers, answers = pool(processes=1), Answers()
    workers.run(partial(process_jobs.named, "busy", 0.5), answers.on_done("busy"))  # holds the one worker
    for name, priority in (("low-1", 0), ("low-2", 0), ("high", 2), ("middle", 1)):
        workers.run(partial(process_jobs.named, name, 0.0), answers.on_done(name), priority=priority)
    qtbot.waitUntil(lambda: len(answers.done) == 5, timeout=30_000)
    assert answers.order == ["busy", "high", "middle", "low-1", "low-2"]


def test_a_worker_that_dies_fails_its_job_and_the_next_job_gets_a_new_one(qtbot, pool):
    workers, answers = pool(processes=1), Answers()
    workers.run(process_jobs.pid, answers.on_done("before"))
    workers.run(partial(process_jobs.die, 7), answers.on_done("die"), answers.on_failed("die"))
    workers.run(process_jobs.pid, answers.on_done("after"))
    qtbot.waitUntil(lambda: len(answers.done) == 2 and "die" in answers.failed, timeout=30_000)
    assert isinstance(answers.failed["die"], WorkerDied) and "exit code 7" in str(answers.failed["die"])
    assert answers.done["before"] != answers.done["after"]  # a fresh process took over
    assert len(workers.processes()) == 1


def test_shutdown_stops_every_worker_and_later_work_never_runs(qtbot, pool):
    workers, answers = pool(), Answers()
    workers.prestart()
    started = workers.processes()
    assert len(started) == 2 and all(process.is_alive() for process in started)
    workers.run(partial(process_jobs.until_cancelled, 60.0), answers.on_done("long"))  # stopped by shutdown
    began = time.monotonic()
    workers.shutdown()
    assert time.monotonic() - began < 10
    assert not workers.processes() and all(process.exitcode is not None for process in started)
    job = workers.run(process_jobs.pid, answers.on_done("late"))
    assert job.cancelled.is_set()
    qtbot.wait(200)
    assert not answers.done


def test_a_worker_whose_parent_goes_away_exits_by_itself():
    """The parent's end of the job pipe closing (the GUI process died) ends the worker, even mid-job."""
    context = get_context("spawn")
    jobs_read, jobs = context.Pipe(duplex=False)
    results, results_write = context.Pipe(duplex=False)
    process = context.Process(target=child_main, args=(jobs_read, results_write), daemon=True)
    process.start()
    jobs_read.close()
    results_write.close()
    jobs.send(("run", 1, pickle.dumps(partial(process_jobs.until_cancelled, 60.0))))
    assert results.poll(30) and results.recv() == ("progress", 1, 0, 1)  # it runs the job
    jobs.close()  # no stop message: as if this process had died
    process.join(10)
    assert process.exitcode == 0
    results.close()
    process.close()


def test_the_panels_reads_go_through_its_worker_processes(qtbot, make_panel):
    """Listing, thumbnails and the check of an opened folder run in the page's worker processes, which
    the page's shutdown stops (the suite's fixture fails any test that leaves a child behind)."""
    panel = make_panel(images=3)
    panel.show()
    qtbot.waitUntil(lambda: len(panel.dataset.entries) == 3 and panel.grid_model.loaded_count() == 3,
                    timeout=30_000)
    workers = panel.dataset.processes.processes()
    assert workers and all(process.is_alive() and process.pid != os.getpid() for process in workers)
    panel.shutdown()
    assert not panel.dataset.processes.processes() and all(process.exitcode is not None for process in workers)

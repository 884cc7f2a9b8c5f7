"""One typed helper for the panel's light background work: run a function on a worker thread, get
the result back on the GUI thread (the Anki ``taskman`` pattern).

Used for what must happen in this process: the edits written in order (``DatasetModel.writer``)
and the CLIP tokenizer the caption editor counts with.  The heavy reads (listing, headers,
thumbnails, the health check, imports) run in worker processes (``processes.Processes``, the same
``run`` shape), because a busy Python thread here makes the GUI thread wait for the GIL.

Threads:
  * worker threads (plain Python threads of this ``Background``): ``work(report, cancelled)``
    runs here.  It must not touch any widget or GUI QObject; ``report(done, total)`` only emits a
    signal (emitting is thread-safe; Qt queues the call to the GUI thread).
  * GUI thread: ``on_done(result)``, ``on_failed(exception)`` and ``on_progress(done, total)``
    run here, as slots of this GUI-thread object.

Python threads rather than ``QThreadPool``: Python registers a foreign (Qt) thread that runs
Python code as a never-ending "dummy" thread, which hides real leaks in tests.  Workers start
on demand, take the highest priority first (FIFO within one), and exit after ``IDLE_S`` without
work, so an idle panel holds no threads.  ``shutdown`` cancels, drops what has not started and
joins the rest.
"""

from __future__ import annotations

import itertools
import os
import queue
import sys
import threading
from collections.abc import Callable
from typing import Any

from PySide6.QtCore import QObject, Signal

Report = Callable[[int, int], None]
Work = Callable[[Report, threading.Event], Any]
IDLE_S = 2.0
NICENESS = 10  # background threads yield the CPU to the GUI thread (Linux: per thread; threads they start inherit)
SWITCH_INTERVAL_S = 0.001  # see _share_the_gil


def _yield_to_the_gui() -> None:
    """Lower this worker thread's scheduling priority where the OS allows it per thread (Linux).

    Relative to the process's own niceness: an app started with ``nice`` keeps its workers below
    its GUI thread (an absolute value would put them level with it)."""
    if sys.platform.startswith("linux"):
        try:
            native = threading.get_native_id()
            os.setpriority(os.PRIO_PROCESS, native, min(19, os.getpriority(os.PRIO_PROCESS, native) + NICENESS))
        except OSError:
            pass  # not allowed (a container's policy): the work still runs, only with equal priority


def _share_the_gil() -> None:
    """Hand the GIL over sooner while other threads of this process run Python.  Every return of the GUI
    thread from Qt's C++ code into Python (a slot, a delegate's paint, a model's ``data``) waits for the
    GIL, up to the switch interval (5 ms by default) each time another thread holds it: here the
    tokenizer's build and the worker pool's reader thread unpickling an answer.  1 ms bounds each wait
    at a small cost in throughput (when the page's heavy reads were threads, a screenful of tiles
    painted during the health check added up to 50–100 ms of such waits)."""
    if sys.getswitchinterval() > SWITCH_INTERVAL_S:
        sys.setswitchinterval(SWITCH_INTERVAL_S)


class Job:
    """One piece of work; ``cancelled`` is a ``threading.Event`` long work should watch."""

    def __init__(self, number: int, work: Work) -> None:
        self.number, self.work = number, work
        self.cancelled = threading.Event()

    def cancel(self) -> None:
        self.cancelled.set()


JobCallbacks = tuple[Job, Callable[[Any], None], Callable[[BaseException], None] | None,
                     Callable[[int, int], None] | None]


class Callbacks(QObject):
    """The GUI-thread half that ``Background`` and ``processes.Processes`` share: the jobs' callbacks by
    number, and the two signals their workers emit (from any thread; Qt queues them to this object's)."""

    finished = Signal(int, bool, object)  # job number, succeeded, result or exception
    progressed = Signal(int, int, int)  # job number, done, total

    def __init__(self, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self._numbers = itertools.count(1)
        self._jobs: dict[int, JobCallbacks] = {}  # GUI thread only
        self.finished.connect(self._on_finished)
        self.progressed.connect(self._on_progressed)

    def _on_finished(self, number: int, succeeded: bool, value: Any) -> None:
        entry = self._jobs.pop(number, None)
        if entry is None or entry[0].cancelled.is_set():
            return  # nobody waits for a cancelled job's answer any more
        _job, on_done, on_failed, _progress = entry
        if succeeded:
            on_done(value)
        elif on_failed is not None:
            on_failed(value)
        else:
            raise value  # no failure handler: let it surface (tests fail, the app's excepthook logs it)

    def _on_progressed(self, number: int, done: int, total: int) -> None:
        entry = self._jobs.get(number)
        if entry is not None and entry[3] is not None and not entry[0].cancelled.is_set():
            entry[3](done, total)

    def busy(self) -> bool:
        return bool(self._jobs)

    def cancel_all(self) -> None:
        for job, *_ in list(self._jobs.values()):
            job.cancel()


class Background(Callbacks):
    """Runs work on worker threads and calls back on the GUI thread (see the module docstring)."""

    def __init__(self, parent: QObject | None = None, *, threads: int = 2) -> None:
        super().__init__(parent)
        _share_the_gil()
        self.max_threads = threads
        self._queue: queue.PriorityQueue[tuple[int, int, Job | None]] = queue.PriorityQueue()
        self._lock = threading.Lock()
        self._idle = threading.Condition(self._lock)
        self._threads: list[threading.Thread] = []
        self._unfinished = 0  # queued or running, guarded by _lock
        self._closed = False

    # ---------------------------------------------------------------- GUI thread

    def run(self, work: Work, on_done: Callable[[Any], None], on_failed: Callable[[BaseException], None] | None = None,
            on_progress: Callable[[int, int], None] | None = None, *, priority: int = 0) -> Job:
        """Start ``work(report, cancelled)`` on a worker thread; the callbacks run on the GUI thread."""
        job = Job(next(self._numbers), work)
        if self._closed:
            job.cancel()
            return job
        self._jobs[job.number] = (job, on_done, on_failed, on_progress)
        with self._lock:  # queued under the lock: an idle worker decides to exit under it too
            self._unfinished += 1
            self._queue.put((-priority, job.number, job))
            if len(self._threads) < self.max_threads and self._unfinished > len(self._threads):
                thread = threading.Thread(target=self._worker, name="kamaal-dataset", daemon=True)
                self._threads.append(thread)
                thread.start()
        return job

    def wait(self, timeout_s: float | None = None) -> bool:
        """Block until every started job has finished (any thread).  Callbacks arrive later, on the GUI thread."""
        with self._idle:
            return self._idle.wait_for(lambda: self._unfinished == 0, timeout_s)

    def shutdown(self) -> None:
        """Cancel everything, drop what has not started, wait for what has, and join the threads."""
        self._closed = True
        self.cancel_all()
        with self._lock:
            threads = list(self._threads)
        for _ in threads:
            self._queue.put((-(1 << 30), 0, None))  # a stop sign for each worker, ahead of any work
        for thread in threads:
            thread.join()
        self._jobs.clear()

    # ---------------------------------------------------------------- worker threads

    def _worker(self) -> None:
        _yield_to_the_gui()
        while True:
            try:
                _priority, _number, job = self._queue.get(timeout=IDLE_S)
            except queue.Empty:
                with self._lock:
                    if self._queue.empty():  # nothing arrived meanwhile: this thread ends
                        self._threads.remove(threading.current_thread())
                        return
                continue
            if job is None:
                return
            if not job.cancelled.is_set():
                self._execute(job)
            with self._lock:
                self._unfinished -= 1
                self._idle.notify_all()

    def _execute(self, job: Job) -> None:
        def report(done: int, total: int) -> None:
            self.progressed.emit(job.number, done, total)

        try:
            result = job.work(report, job.cancelled)
        except BaseException as error:  # reported, never raised into the worker loop
            self.finished.emit(job.number, False, error)
        else:
            self.finished.emit(job.number, True, result)

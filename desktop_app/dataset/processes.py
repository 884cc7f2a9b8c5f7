"""The Dataset page's heavy reads in worker processes, with results back on the GUI thread.

Why processes and not threads: decoding, hashing and fingerprinting a thousand images is Python
work between Pillow calls, and Python threads share one GIL with the GUI thread.  Every time the
GUI thread came back from Qt into Python (a slot, a tile's paint) it could wait for a busy
worker to hand the GIL over: measured, 65–80 % of the GUI's stalls during a health check were
that wait, and the longest reached 60–150 ms.  A worker process has its own interpreter and runs
at a lower priority (``worker.lower_priority``), so the GUI thread only shares the CPUs, and the
OS scheduler favours it.

``Processes.run(work, on_done, on_failed, on_progress, priority=…)`` has the same shape as
:class:`desktop_app.dataset.background.Background.run`, but ``work`` crosses a process boundary:
it must pickle — a module-level function, or a ``functools.partial`` of one, that takes
``(report, cancelled)`` last (``desktop_app.dataset.jobs``) — and so must its answer.

Threads and processes:
  * GUI thread: ``run``, ``prestart``, ``cancel_all``, ``shutdown`` and every callback
    (``on_done``, ``on_failed``, ``on_progress``, all slots of this GUI-thread object).
  * reader thread (one, plain Python, in this process): waits on the workers' result pipes,
    emits ``finished``/``progressed`` (Qt queues them to the GUI thread) and hands the next job
    to the worker that just became free.  It runs Python only to unpickle an answer.
  * worker processes (spawn, at most ``processes``): :func:`desktop_app.dataset.worker.child_main`.
    Started on demand (or by ``prestart``), one job at a time each, highest priority first (FIFO
    within one); a worker that dies fails its job and is replaced by the next job that needs one.

``shutdown`` cancels everything, drops what has not started, tells every worker to stop, waits
for them (``STOP_TIMEOUT_S``, then terminates) and joins the reader thread: no child outlives it.
"""

from __future__ import annotations

import heapq
import multiprocessing
import pickle
import threading
from collections.abc import Callable
from multiprocessing.connection import Connection, wait
from typing import Any

from PySide6.QtCore import QObject

from desktop_app.dataset.background import Callbacks, Job, Work
from desktop_app.dataset.worker import child_main

SPAWN = multiprocessing.get_context("spawn")  # never fork a process that runs Qt
STOP_TIMEOUT_S = 5.0


class WorkerDied(RuntimeError):
    """A worker process ended while it ran a job (killed, out of memory, a crash in a decoder)."""


class _Worker:
    """One worker process and its two one-way pipes; ``current`` is the job it runs (under the pool's lock)."""

    def __init__(self) -> None:
        jobs_read, self.jobs = SPAWN.Pipe(duplex=False)
        self.results, results_write = SPAWN.Pipe(duplex=False)
        self.process = SPAWN.Process(target=child_main, args=(jobs_read, results_write),
                                     name="kamaal-dataset-worker", daemon=True)
        self.process.start()
        jobs_read.close()  # the child holds its ends now; ours would keep the pipes open after it dies
        results_write.close()
        self.current: _ProcessJob | None = None


class _ProcessJob(Job):
    """A job whose ``cancel`` also reaches the worker process running it."""

    def __init__(self, number: int, work: Work, payload: bytes, pool: Processes) -> None:
        super().__init__(number, work)
        self.payload, self._pool = payload, pool

    def cancel(self) -> None:
        super().cancel()
        self._pool._cancel_running(self)


class Processes(Callbacks):
    """Runs picklable work in worker processes, callbacks on the GUI thread (see the module docstring).
    ``finished`` and ``progressed`` (from ``Callbacks``) are emitted by the reader thread."""

    def __init__(self, parent: QObject | None = None, *, processes: int = 2) -> None:
        super().__init__(parent)
        self.max_processes = max(1, processes)
        self._lock = threading.Lock()  # guards everything below
        self._idle = threading.Condition(self._lock)
        self._queue: list[tuple[int, int, _ProcessJob]] = []  # a heap: (-priority, number, job)
        self._workers: list[_Worker] = []
        self._unfinished = 0  # queued or running
        self._closed = False
        self._reader: threading.Thread | None = None
        self._wake_read, self._wake = SPAWN.Pipe(duplex=False)  # tells the reader the worker list changed

    # ---------------------------------------------------------------- GUI thread

    def run(self, work: Work, on_done: Callable[[Any], None], on_failed: Callable[[BaseException], None] | None = None,
            on_progress: Callable[[int, int], None] | None = None, *, priority: int = 0) -> Job:
        """Run ``work(report, cancelled)`` in a worker process; the callbacks run on the GUI thread.

        Raises ``TypeError``/``pickle.PicklingError``/``AttributeError`` at once for work that cannot
        be pickled (a lambda, a closure): that is a bug in the caller, not a failure of the work."""
        payload = pickle.dumps(work)
        job = _ProcessJob(next(self._numbers), work, payload, self)
        if self._closed:
            job.cancelled.set()
            return job
        self._jobs[job.number] = (job, on_done, on_failed, on_progress)
        with self._lock:
            self._unfinished += 1
            heapq.heappush(self._queue, (-priority, job.number, job))
            self._dispatch_locked()
        return job

    def prestart(self) -> None:
        """Start every worker process now: a spawn takes a few hundred milliseconds of CPU, better spent
        while a page is built than while the first thumbnails are waited for."""
        with self._lock:
            while not self._closed and len(self._workers) < self.max_processes:
                self._start_worker_locked()

    def processes(self) -> list[multiprocessing.process.BaseProcess]:
        """The worker processes running now (tests; the bench)."""
        with self._lock:
            return [worker.process for worker in self._workers]

    def wait(self, timeout_s: float | None = None) -> bool:
        """Block until every job has finished in its worker (any thread).  Callbacks arrive later, on the GUI thread."""
        with self._idle:
            return self._idle.wait_for(lambda: self._unfinished == 0, timeout_s)

    def shutdown(self) -> None:
        """Cancel everything, drop what has not started, stop the workers and join the reader thread."""
        self.cancel_all()
        with self._lock:
            self._closed = True
            self._unfinished -= len(self._queue)
            self._queue.clear()
            workers = list(self._workers)
            for worker in workers:
                try:
                    worker.jobs.send(None)
                except OSError:
                    pass  # already gone
        for worker in workers:
            worker.process.join(STOP_TIMEOUT_S)
            if worker.process.is_alive():  # a decoder stuck in C: nothing to save in it
                worker.process.kill()
                worker.process.join()
        with self._lock:
            for worker in self._workers:
                worker.current = None  # answers still in the pipes are not counted again
            self._workers.clear()
            self._unfinished = 0
            self._idle.notify_all()
        if self._reader is not None:
            self._wake.send("stop")
            self._reader.join()
            self._reader = None
        for worker in workers:
            worker.jobs.close()
            worker.results.close()
        self._wake.close()
        self._wake_read.close()
        self._jobs.clear()

    # ---------------------------------------------------------------- any thread, under the lock

    def _start_worker_locked(self) -> _Worker:
        worker = _Worker()
        self._workers.append(worker)
        if self._reader is None:
            self._reader = threading.Thread(target=self._read, name="kamaal-dataset-reader", daemon=True)
            self._reader.start()
        else:
            self._wake.send("workers")
        return worker

    def _dispatch_locked(self) -> None:
        """Hand queued jobs to idle workers, starting workers while there are fewer than jobs."""
        while self._queue and not self._closed:
            _priority, _number, job = self._queue[0]
            if job.cancelled.is_set():  # dropped before it started
                heapq.heappop(self._queue)
                self._unfinished -= 1
                self._idle.notify_all()
                continue
            worker = next((w for w in self._workers if w.current is None), None)
            if worker is None:
                if len(self._workers) >= self.max_processes:
                    return
                worker = self._start_worker_locked()
            heapq.heappop(self._queue)
            worker.current = job
            try:
                worker.jobs.send(("run", job.number, job.payload))
            except OSError:  # the worker died since its last answer: the reader reports it
                return

    def _cancel_running(self, job: _ProcessJob) -> None:
        with self._lock:
            for worker in self._workers:
                if worker.current is job:
                    try:
                        worker.jobs.send(("cancel", job.number))
                    except OSError:
                        pass
                    return

    # ---------------------------------------------------------------- reader thread

    def _read(self) -> None:
        ended: set[_Worker] = set()  # their pipe is at its end: not waited on again
        while True:
            with self._lock:
                by_pipe = {worker.results: worker for worker in self._workers if worker not in ended}
            for ready in wait([self._wake_read, *by_pipe]):
                if ready is self._wake_read:
                    if self._wake_read.recv() == "stop":
                        return
                    continue
                worker = by_pipe[ready]
                assert isinstance(ready, Connection)
                try:
                    message = ready.recv()
                except (EOFError, OSError):
                    ended.add(worker)
                    self._worker_ended(worker)
                    continue
                except Exception as error:  # an answer that does not unpickle here
                    message = ("done", worker.current.number if worker.current else 0, False,
                               RuntimeError(f"the worker's answer cannot be read: {error}"))
                if message[0] == "progress":
                    _, number, done, total = message
                    self.progressed.emit(number, done, total)
                    continue
                _, number, succeeded, value = message
                with self._lock:
                    if worker.current is not None:  # None: shutdown has already counted it out
                        worker.current = None
                        self._unfinished -= 1
                        self._idle.notify_all()
                    self._dispatch_locked()
                self.finished.emit(number, succeeded, value)

    def _worker_ended(self, worker: _Worker) -> None:
        """A worker's pipe closed without a stop from us: it died.  Its job fails and its slot frees up."""
        with self._lock:
            if self._closed or worker not in self._workers:
                return  # stopping: shutdown joins it
            self._workers.remove(worker)
            job, worker.current = worker.current, None
            if job is not None:
                self._unfinished -= 1
                self._idle.notify_all()
            self._dispatch_locked()
        worker.process.join(STOP_TIMEOUT_S)
        code = worker.process.exitcode
        worker.jobs.close()
        worker.results.close()
        if job is not None:
            self.finished.emit(job.number, False, WorkerDied(
                f"a dataset worker process ended while it worked (exit code {code})"))

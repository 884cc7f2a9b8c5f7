"""The child half of :class:`desktop_app.dataset.processes.Processes`: one worker process's loop.

No Qt, and nothing heavy at module level: a spawn child imports this module (and, through the
``desktop_app`` and ``desktop_app.dataset`` package ``__init__``\\ s, nothing else) before it gets
its first job; a job's own module (``desktop_app.dataset.jobs``: Pillow, numpy) is imported when
the first job that needs it is unpickled.

Threads (in the child):
  * main thread: runs one job at a time, ``work(report, cancelled)``; sends ``report`` calls and
    the answer back on ``results``.
  * listener thread: reads ``jobs``; a job goes on the main thread's queue, a cancel sets that
    job's event, ``None`` (stop) cancels everything and ends the loop, and end-of-file (the
    parent died without saying stop) ends the process at once, so no orphan keeps decoding.

Messages (pickled by ``multiprocessing.connection``):
  parent → child  ``("run", number, pickled work)`` · ``("cancel", number)`` · ``None``
  child → parent  ``("progress", number, done, total)`` · ``("done", number, succeeded, result or exception)``
"""

from __future__ import annotations

import os
import pickle
import queue
import signal
import sys
import threading
import traceback
from multiprocessing.connection import Connection
from typing import Any

NICENESS = 10  # a worker process yields the CPU to the GUI process


def lower_priority() -> None:
    """Run this process below the GUI: ``nice`` on POSIX, the below-normal class on Windows."""
    try:
        if sys.platform == "win32":
            import ctypes

            below_normal = 0x4000
            kernel32 = ctypes.windll.kernel32  # type: ignore[attr-defined]
            kernel32.SetPriorityClass(kernel32.GetCurrentProcess(), below_normal)
        else:
            os.nice(NICENESS)
    except (OSError, AttributeError):
        pass  # not allowed here: the work still runs, only at the GUI's priority


def portable(error: BaseException) -> BaseException:
    """``error`` with the child's traceback as a note, or a ``RuntimeError`` naming it when it would not
    survive the trip to the parent (an exception class whose ``__init__`` does not take its ``args``)."""
    text = "".join(traceback.format_exception(error)).rstrip()
    try:
        error.add_note(f"In the dataset worker process (pid {os.getpid()}):\n{text}")
        pickle.loads(pickle.dumps(error))
        return error
    except Exception:
        return RuntimeError(f"{type(error).__name__}: {error}\n\nIn the dataset worker process:\n{text}")


def child_main(jobs: Connection, results: Connection) -> None:
    """Entry point of a worker process (see the module docstring)."""
    lower_priority()
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl+C in the terminal is the GUI's to handle; it stops us
    todo: queue.SimpleQueue[tuple[int, bytes] | None] = queue.SimpleQueue()
    events: dict[int, threading.Event] = {}
    lock = threading.Lock()

    def listen() -> None:
        while True:
            try:
                message = jobs.recv()
            except (EOFError, OSError):
                os._exit(0)  # the parent is gone: nobody will read an answer
            if message is None:
                with lock:
                    for event in events.values():
                        event.set()
                todo.put(None)
                return
            if message[0] == "run":
                _, number, payload = message
                with lock:
                    events[number] = threading.Event()
                todo.put((number, payload))
            elif message[0] == "cancel":
                with lock:
                    event = events.get(message[1])
                if event is not None:
                    event.set()

    threading.Thread(target=listen, name="kamaal-worker-listener", daemon=True).start()
    while (item := todo.get()) is not None:
        number, payload = item
        with lock:
            cancelled = events[number]

        def report(done: int, total: int, number: int = number) -> None:
            results.send(("progress", number, done, total))

        try:
            work = pickle.loads(payload)
            answer: tuple[Any, ...] = ("done", number, True, work(report, cancelled))
        except BaseException as error:  # reported, never raised into the loop
            answer = ("done", number, False, portable(error))
        try:
            results.send(answer)
        except (pickle.PicklingError, TypeError, AttributeError) as error:  # an answer that cannot be pickled
            results.send(("done", number, False, RuntimeError(f"the worker's answer cannot be sent: {error}")))
        with lock:
            events.pop(number, None)
    results.close()

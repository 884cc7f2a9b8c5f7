"""Helpers for tests with hostile files: a regression must fail the test, not hang the suite or eat the machine.

* ``run_limited`` runs a command in a child process with a time limit and an address-space limit, so a
  reader that blocks on a FIFO times out and one that reads ``/dev/zero`` whole gets a ``MemoryError``.
* ``within`` runs a function in a thread and fails after ``seconds``; FIFOs it was given are then opened
  for writing and closed, which releases a reader stuck in ``open()``, so no thread is left behind.
"""

from __future__ import annotations

import os
import resource
import subprocess
import sys
import threading
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any, TypeVar

REPO = Path(__file__).resolve().parent.parent
T = TypeVar("T")


def run_limited(args: list[str], *, seconds: float, memory_bytes: int = 3 << 30) -> subprocess.CompletedProcess:
    """``python ARGS`` in a child with at most ``seconds`` and ``memory_bytes`` of address space."""
    def limit() -> None:
        resource.setrlimit(resource.RLIMIT_AS, (memory_bytes, memory_bytes))

    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1"}
    return subprocess.run([sys.executable, *args], capture_output=True, text=True, timeout=seconds, cwd=REPO,
                          env=env, preexec_fn=limit)


def release_fifo(path: Path) -> None:
    """Give a reader blocked in ``open()`` on FIFO ``path`` its writer, then end of file."""
    try:
        descriptor = os.open(path, os.O_WRONLY | os.O_NONBLOCK)
    except OSError:
        return  # nobody is waiting on it
    os.close(descriptor)


def within(seconds: float, function: Callable[[], T], fifos: Iterable[Path] = ()) -> T:
    """``function()``, or an ``AssertionError`` when it takes longer than ``seconds`` (it blocked)."""
    result: dict[str, Any] = {}

    def run() -> None:
        try:
            result["value"] = function()
        except BaseException as error:  # handed to the test's thread
            result["error"] = error

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    thread.join(seconds)
    if thread.is_alive():
        for fifo in fifos:
            release_fifo(fifo)
        thread.join(10)
        raise AssertionError(f"still running after {seconds} s: it blocked (on a FIFO?)")
    if "error" in result:
        raise result["error"]
    return result["value"]

"""Jobs for the worker-pool tests (``test_dataset_processes``): module-level, Qt-free, picklable, so a
spawned worker process can import them; each takes ``(report, cancelled)`` last, like ``desktop_app.dataset.jobs``."""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable
from pathlib import Path

from trainer.dataset import DatasetImageError

Report = Callable[[int, int], None]


def pid(_report: Report, _cancelled: threading.Event) -> int:
    return os.getpid()


def counted(total: int, report: Report, _cancelled: threading.Event) -> str:
    for done in range(1, total + 1):
        report(done, total)
    return "counted"


def named(name: str, delay_s: float, _report: Report, _cancelled: threading.Event) -> str:
    time.sleep(delay_s)
    return name


def until_cancelled(limit_s: float, report: Report, cancelled: threading.Event) -> str:
    report(0, 1)  # "running now"
    stopped = cancelled.wait(limit_s)
    return "cancelled" if stopped else "ran to the end"


def unusable_image(path: Path, _report: Report, _cancelled: threading.Event) -> None:
    raise DatasetImageError(path, "truncated", "the file ends before the image does")


class Odd(Exception):
    """An exception that cannot be rebuilt from its ``args``."""

    def __init__(self, first: str, second: str) -> None:
        super().__init__(f"{first}/{second}")


def odd_error(_report: Report, _cancelled: threading.Event) -> None:
    raise Odd("a", "b")


def unpicklable_answer(_report: Report, _cancelled: threading.Event) -> object:
    return threading.Lock()


def die(code: int, _report: Report, _cancelled: threading.Event) -> None:
    os._exit(code)

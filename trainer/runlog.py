"""What a run reports: events to the GUI or terminal, lines to log.txt, rows to metrics.jsonl.

The worker talks to an :class:`EventSink` and never asks who listens (the GUI's queue, the
terminal, or a test's recorder).
"""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path
from typing import Any, Protocol

from trainer.protocol import Command, Event, Log


class EventSink(Protocol):
    def emit(self, event: Event) -> None: ...


class CommandSource(Protocol):
    def poll(self) -> Command | None: ...

    def wait(self, timeout: float) -> Command | None: ...


class NoCommands:
    def poll(self) -> Command | None:
        return None

    def wait(self, timeout: float) -> Command | None:
        time.sleep(timeout)
        return None


class _SinkHandler(logging.Handler):
    """Forwards log records to the event sink as ``Log`` events."""

    def __init__(self, sink: EventSink) -> None:
        super().__init__(logging.INFO)
        self._sink = sink

    def emit(self, record: logging.LogRecord) -> None:
        self._sink.emit(Log(record.levelname.lower(), record.getMessage()))


class _LogFileHandler(logging.FileHandler):
    """log.txt; a line it cannot write (a full disk) is dropped quietly instead of printing logging's own
    traceback: the same line still reaches the sink, and the full disk is reported by name."""

    def handleError(self, record: logging.LogRecord) -> None:
        pass

    def flush(self) -> None:
        try:
            super().flush()
        except OSError:
            pass

    def close(self) -> None:
        try:
            super().close()
        except OSError:  # the buffered tail could not be written (full disk): the file is closed all the same
            pass


def run_logger(log_path: Path | None, sink: EventSink) -> logging.Logger:
    """A logger that writes to the run's log.txt (unless None) and forwards to the sink (one per run)."""
    logger = logging.getLogger(f"kamaal.run.{id(sink)}")
    logger.setLevel(logging.INFO)
    logger.propagate = False
    if log_path is not None:
        file_handler = _LogFileHandler(log_path, encoding="utf-8")
        file_handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s"))
        logger.addHandler(file_handler)
    logger.addHandler(_SinkHandler(sink))
    return logger


def close_logger(logger: logging.Logger) -> None:
    for handler in list(logger.handlers):
        handler.close()
        logger.removeHandler(handler)


class MetricsWriter:
    """Appends one JSON object per logged step to metrics.jsonl, flushed at once."""

    def __init__(self, path: Path, resume_from_step: int | None = None) -> None:
        self._path = path
        if resume_from_step is not None:
            self._truncate_after(resume_from_step)
        self._handle = open(path, "a", encoding="utf-8")

    def _truncate_after(self, step: int) -> None:
        """Drop rows logged after the checkpoint we resume from: they are about to be redone."""
        if not self._path.is_file():
            return
        from trainer.fsutil import atomic_write_text

        kept = []
        for line in self._path.read_text(encoding="utf-8").splitlines():
            try:
                if json.loads(line).get("step", 0) <= step:
                    kept.append(line)
            except json.JSONDecodeError:
                continue
        atomic_write_text(self._path, "".join(line + "\n" for line in kept))

    def write(self, row: dict[str, Any]) -> None:
        self._handle.write(json.dumps(row) + "\n")
        self._handle.flush()

    def close(self) -> None:
        self._handle.close()

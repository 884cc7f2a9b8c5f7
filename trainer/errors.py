"""Errors that mean "the user's input is wrong", as opposed to a bug.

The worker turns these into ``Failed(kind="input")`` and the CLI into exit code 2; their
message always names the file or field, so the user knows what to fix.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from trainer.config import ConfigError
from trainer.fsutil import disk_full_message, is_disk_full


class InputError(ValueError):
    """A dataset, model file or other input that cannot be used; the message names it."""


class DiskFullError(InputError):
    """The disk (or quota) ran out while writing; the message names the folder and the space needed.

    A refusal, not a crash: the run folder is left as it was before the write (its last checkpoint
    whole, no staging files), so freeing space and resuming loses nothing.
    """


@contextmanager
def refuse_full_disk(folder: Path, what: str, needed: int | None = None, after: str = "") -> Iterator[None]:
    """Turn a full disk inside the block into a :class:`DiskFullError` naming ``folder`` (the writer
    cleans its own staging files first); any other failure passes through unchanged."""
    try:
        yield
    except DiskFullError:
        raise
    except Exception as exc:
        if is_disk_full(exc):
            raise DiskFullError(disk_full_message(folder, what, needed, after)) from exc
        raise


def disk_full_refusal(exc: BaseException, fallback_folder: Path) -> DiskFullError | None:
    """The refusal for a full disk met anywhere (metrics, log, samples), naming the folder of the
    file being written when the error says which; None when ``exc`` is not about a full disk."""
    if not is_disk_full(exc):
        return None
    folder, seen = fallback_folder, set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, OSError) and current.filename:
            folder = Path(os.fsdecode(current.filename)).parent
            break
        current = current.__cause__ or current.__context__
    return DiskFullError(disk_full_message(folder, "the run's files", None,
                                           "Free some space there, then resume the run."))


BAD_INPUT_ERRORS: tuple[type[Exception], ...] = (ConfigError, InputError)

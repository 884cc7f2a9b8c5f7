"""Atomic file writes: a crash or a full disk never leaves a half-written file behind.

Every save in Kamaal goes through here (temp file in the same folder, fsync, rename), and so do
the helpers the writers share: replacing a folder without a moment in which neither the old nor
the new one exists (:func:`replace_dir`), and telling a full disk from other write failures
(:func:`is_disk_full`, :func:`disk_full_message`).  Standard library only: the GUI imports it.
"""

from __future__ import annotations

import errno
import os
import shutil
import tempfile
from pathlib import Path

# ENOSPC everywhere (Windows' ERROR_DISK_FULL arrives as ENOSPC too); EDQUOT where quotas exist.
DISK_FULL_ERRNOS = frozenset(code for code in (errno.ENOSPC, getattr(errno, "EDQUOT", None)) if code is not None)
# Writers that are not Python file objects lose the errno: safetensors says "(os error 28)", torch
# "file write failed" with the OSError only as __context__ (when it writes to a file object).
_DISK_FULL_TEXTS = ("no space left on device", "os error 28", "disk quota exceeded", "os error 122",
                    "there is not enough space on the disk", "os error 112")


ASIDE_PREFIX = ".old-"  # replace_dir's name for the folder being replaced


def atomic_write_bytes(path: Path, data: bytes, *, durable: bool = True) -> None:
    """Write ``data`` to ``path`` through a temp file and a rename; ``durable=False`` skips the fsync (a cache:
    a reader still never sees half a file, but a power cut may lose it)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            if durable:
                handle.flush()
                os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write_text(path: Path, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


def fsync_dir(folder: Path) -> None:
    """Make renames inside ``folder`` durable (POSIX; Windows has no directory handles to sync)."""
    if os.name != "posix":
        return
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def replace_dir(staging: Path, target: Path) -> None:
    """Move the finished folder ``staging`` to ``target``, replacing any folder there.

    The old folder is renamed aside first and deleted only once the new one is in place, so at
    every instant one of them is whole: a process killed in between leaves ``.old-NAME`` beside
    ``target`` (see :func:`aside_path`), which the next writer or reader can recover.
    """
    aside = aside_path(target)
    if target.exists():
        if aside.exists():  # a previous replace died after its new folder was in: the aside is stale
            shutil.rmtree(aside)
        os.replace(target, aside)
    os.replace(staging, target)
    fsync_dir(target.parent)
    shutil.rmtree(aside, ignore_errors=True)


def aside_path(target: Path) -> Path:
    """Where :func:`replace_dir` keeps the old ``target`` while the new one moves in."""
    return target.with_name(f"{ASIDE_PREFIX}{target.name}")


def is_disk_full(exc: BaseException) -> bool:
    """Whether ``exc`` (or what it was raised from) says the disk or the user's quota is full."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, OSError) and current.errno in DISK_FULL_ERRNOS:
            return True
        if any(text in str(current).lower() for text in _DISK_FULL_TEXTS):
            return True
        current = current.__cause__ or current.__context__
    return False


def human_size(size: int) -> str:
    value = float(size)
    for unit in ("bytes", "KB", "MB", "GB"):
        if value < 1000 or unit == "GB":
            return f"{value:.0f} {unit}" if unit == "bytes" else f"{value:.1f} {unit}"
        value /= 1000
    raise AssertionError("unreachable")


def free_space(folder: Path) -> int | None:
    """Free bytes on the disk that holds ``folder`` (None when that cannot be asked)."""
    try:
        return shutil.disk_usage(folder).free
    except OSError:
        return None


def disk_full_message(folder: Path, what: str, needed: int | None, after: str = "") -> str:
    """``FOLDER: the disk is full; writing WHAT takes about N MB and M MB is free there.`` plus ``after``."""
    free = free_space(folder)
    message = f"{folder}: the disk is full"
    if needed is not None:
        message += f"; writing {what} takes about {human_size(needed)}"
        message += f" and {human_size(free)} is free there." if free is not None else "."
    else:
        message += f" while writing {what}" + (f" ({human_size(free)} free there)." if free is not None else ".")
    return f"{message} {after}".strip()

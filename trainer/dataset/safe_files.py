"""Reading files from a folder someone else filled: regular files only, never blocking, never unbounded.

A dataset folder may hold anything a file system can: a named pipe (FIFO) whose ``open()`` waits
forever for a writer, a link to ``/dev/zero`` that never ends, a 200 MB "caption", a link that
leads nowhere or back to itself.  So a file's type is looked at with ``os.stat`` before it is
opened; ``read_limited`` then opens it with ``O_NONBLOCK`` (a FIFO swapped in after the check still
cannot block), checks the type again on the open descriptor, and reads at most ``limit`` bytes.

Standard library only: the GUI process imports this.
"""

from __future__ import annotations

import errno
import os
import stat
from pathlib import Path

_OPEN_FLAGS = (os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_NOCTTY", 0)
               | getattr(os, "O_BINARY", 0))  # O_BINARY: Windows would otherwise translate line ends


class NotARegularFile(OSError):
    """The path is a FIFO, a device, a socket or a folder; ``kind`` says which, in words."""

    def __init__(self, path: Path | str, kind: str) -> None:
        super().__init__(f"{path}: it is {kind}, not a regular file")
        self.kind = kind


class FileTooLarge(OSError):
    """The file holds more than ``limit`` bytes (``size`` of them, or at least that many)."""

    def __init__(self, path: Path | str, size: int, limit: int) -> None:
        super().__init__(f"{path}: it is {format_size(size)}, over the {format_size(limit)} limit")
        self.size, self.limit = size, limit


def special_kind(mode: int) -> str | None:
    """What a file that is not a regular file is, in words; ``None`` for a regular file."""
    if stat.S_ISREG(mode):
        return None
    if stat.S_ISDIR(mode):
        return "a folder"
    if stat.S_ISFIFO(mode):
        return "a named pipe (FIFO)"
    if stat.S_ISCHR(mode):
        return "a character device"
    if stat.S_ISBLK(mode):
        return "a block device"
    if stat.S_ISSOCK(mode):
        return "a socket"
    return "a special file"


def broken_link_reason(path: Path | str) -> str | None:
    """Why symbolic link ``path`` cannot be followed (dangling, or a loop); ``None`` if it can or is no link."""
    try:
        target = os.readlink(path)
    except (OSError, ValueError):
        return None  # not a link (or no such file at all)
    try:
        os.stat(path)
    except FileNotFoundError:
        return f"it is a link to {target}, which does not exist"
    except OSError as error:
        if error.errno == errno.ELOOP:
            return f"it is a link that leads back to itself ({target}, a symbolic link loop)"
        return None
    return None


def read_limited(path: Path | str, limit: int) -> bytes:
    """The bytes of the regular file ``path``, refused when it holds more than ``limit``.

    Raises ``NotARegularFile`` (FIFO, device, socket, folder: nothing is read, and a FIFO is never
    waited on), ``FileTooLarge`` (from its size, before reading; or when it grew while being read),
    or the ``OSError`` of ``os.stat``/``os.open`` (missing, permission denied, link loop, ...).
    """
    info = os.stat(path)
    kind = special_kind(info.st_mode)
    if kind is not None:
        raise NotARegularFile(path, kind)
    if info.st_size > limit:
        raise FileTooLarge(path, info.st_size, limit)
    descriptor = os.open(path, _OPEN_FLAGS)
    try:
        kind = special_kind(os.fstat(descriptor).st_mode)  # it may have been swapped since the check
        if kind is not None:
            raise NotARegularFile(path, kind)
        chunks: list[bytes] = []
        remaining = limit + 1  # one byte more than allowed tells a file that grew past the limit
        while remaining > 0:
            chunk = os.read(descriptor, min(remaining, 1 << 16))
            if not chunk:
                break
            chunks.append(chunk)
            remaining -= len(chunk)
    finally:
        os.close(descriptor)
    data = b"".join(chunks)
    if len(data) > limit:
        raise FileTooLarge(path, len(data), limit)
    return data


def format_size(size: int) -> str:
    """``65536`` → ``64 KiB``, ``209715200`` → ``200.0 MB``: for messages."""
    if size < 1024:
        return f"{size} bytes"
    if size < 1024 * 1024:
        return f"{size / 1024:g} KiB" if size % 1024 == 0 else f"{size / 1024:.1f} KiB"
    if size < 1024 ** 3:
        return f"{size / 1e6:.1f} MB"
    return f"{size / 1e9:.1f} GB"

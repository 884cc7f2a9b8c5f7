"""One trainer per run folder: an OS-level lock on ``RUN_DIR/.trainer.lock``.

Two trainers in one folder undo each other's work (one prunes the other's checkpoint staging,
rewrites its metrics), so the worker takes this lock before it touches anything and keeps it
until it returns.  The lock belongs to the open file, not to the file's existence: the operating
system drops it when the process ends, however it ends (kill -9, a crash, a power cut), so a stale
lock cannot outlive its trainer and nobody ever has to delete the lock file by hand.

``fcntl.flock`` on POSIX (a lock per open file description, so even a second attempt inside the
same process is refused), ``msvcrt.locking`` on Windows (on one byte far past the text, so the
holder's process id stays readable).  Standard library only.
"""

from __future__ import annotations

import errno
import os
from pathlib import Path

from trainer.errors import InputError

LOCK_FILE = ".trainer.lock"
_WINDOWS_LOCK_OFFSET = 1 << 30  # the byte msvcrt locks: past anything written, so the pid stays readable


class RunFolderBusy(InputError):
    """Another trainer holds the run folder's lock; the message names the folder."""


class RunLock:
    """The held lock of one run folder; :meth:`release` (or the process's end) frees it.

    ``unsupported`` is set (and nothing is held) on a filesystem that cannot lock, such as some
    network and FUSE mounts: the trainer runs there as before, and says so in its log.
    """

    def __init__(self, folder: Path, fd: int, unsupported: str = "") -> None:
        self.folder, self._fd, self.unsupported = folder, fd, unsupported

    def release(self) -> None:
        if self._fd < 0:
            return
        try:
            _unlock(self._fd)
        finally:
            os.close(self._fd)
            self._fd = -1

    def __enter__(self) -> RunLock:
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()


def lock_run_folder(folder: Path) -> RunLock:
    """Take ``folder``'s trainer lock, or raise :class:`RunFolderBusy` naming the folder and the holder."""
    folder = Path(folder)
    path = folder / LOCK_FILE
    # os.open's descriptors are not inherited by spawned children, so a child never holds the lock.
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    except OSError as exc:
        raise InputError(f"{path}: cannot open the run folder's lock file ({exc.strerror or exc})") from None
    try:
        _try_lock(fd)
    except OSError as exc:
        if not _held_elsewhere(exc):
            os.close(fd)
            return RunLock(folder, -1, unsupported=f"{path} cannot be locked here ({exc.strerror or exc})")
        holder = _read_holder(fd)
        os.close(fd)
        who = f"process {holder}" if holder else "another process"
        raise RunFolderBusy(f"{folder}: another trainer ({who}) is using this run folder; wait for it to finish "
                            "or stop it first (one trainer per run folder)") from None
    except BaseException:
        os.close(fd)
        raise
    _write_holder(fd)
    return RunLock(folder, fd)


def _read_holder(fd: int) -> str:
    try:
        text = os.pread(fd, 32, 0) if hasattr(os, "pread") else _read_start(fd)
    except OSError:
        return ""
    holder = text.decode("ascii", "replace").strip()
    return holder if holder.isdigit() else ""


def _read_start(fd: int) -> bytes:
    os.lseek(fd, 0, os.SEEK_SET)
    return os.read(fd, 32)


def _write_holder(fd: int) -> None:
    """Our process id, for the message another trainer shows; best effort (a full disk may refuse it)."""
    try:
        os.ftruncate(fd, 0)
        os.lseek(fd, 0, os.SEEK_SET)
        os.write(fd, f"{os.getpid()}\n".encode("ascii"))
    except OSError:
        pass


if os.name == "nt":
    import msvcrt

    def _try_lock(fd: int) -> None:
        os.lseek(fd, _WINDOWS_LOCK_OFFSET, os.SEEK_SET)
        msvcrt.locking(fd, msvcrt.LK_NBLCK, 1)  # raises OSError when another process holds it

    def _unlock(fd: int) -> None:
        os.lseek(fd, _WINDOWS_LOCK_OFFSET, os.SEEK_SET)
        msvcrt.locking(fd, msvcrt.LK_UNLCK, 1)

    def _held_elsewhere(exc: OSError) -> bool:
        return True  # LK_NBLCK fails only when the byte is locked (after its own 10 quick retries)

else:
    import fcntl

    def _try_lock(fd: int) -> None:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)  # BlockingIOError (an OSError) when held

    def _unlock(fd: int) -> None:
        fcntl.flock(fd, fcntl.LOCK_UN)

    def _held_elsewhere(exc: OSError) -> bool:
        return isinstance(exc, BlockingIOError) or exc.errno in (errno.EAGAIN, errno.EWOULDBLOCK, errno.EACCES)

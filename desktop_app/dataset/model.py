"""The dataset being curated: the images of one folder, their captions, crops, removals and health.

``DatasetModel`` is the one source of truth the panel's widgets subscribe to (napari style): the
grid, the caption editor, the crop view, the bucket preview and the findings list read it and
call its methods; none of them touches files.

Files: the folder's originals are read, never written.  Edits (captions, crops, removals) go to
the folder's ``DatasetCache`` (``.kamaal`` inside a project folder) — only when ``editable``;
a folder outside the project is shown read-only.  In memory the model changes at once; the
writes are queued on a one-thread ``Background`` (so they land in order) and ``pendingWrites``
says how many are left.

Threads: listing, header reading and the health check run on worker threads (``Background``);
every method, slot and signal of this class is on the GUI thread.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from pathlib import Path

from PySide6.QtCore import QObject, Signal

from desktop_app.dataset.background import Background, Job, Report
from desktop_app.dataset.entries import DatasetSettings, Entry, list_entries, read_sizes
from trainer.dataset import CheckCancelled, CropRecord, DatasetCache, Finding, check_dataset
from trainer.dataset import Report as HealthReport
from trainer.dataset.caption_ops import BulkEdit
from trainer.dataset.captions import Tokenizer

__all__ = ["DatasetModel", "DatasetSettings", "Entry"]


def throttled(report: Report, every_s: float = 0.1) -> Report:
    """Pass on at most one progress report per ``every_s`` (and the last): each one costs the GUI thread a slot."""
    last = [0.0]

    def throttle(done: int, total: int) -> None:
        now = time.monotonic()
        if done >= total or now - last[0] >= every_s:
            last[0] = now
            report(done, total)

    return throttle


class DatasetModel(QObject):
    reset = Signal()  # a new folder, or images removed / restored: rows changed
    captionsChanged = Signal(list)  # rows whose caption changed
    cropChanged = Signal(int)
    sizesChanged = Signal()
    reportChanged = Signal()  # findings changed (after a health check)
    checkProgress = Signal(int, int)
    loadingChanged = Signal(bool)
    pendingWrites = Signal(int)
    failed = Signal(str)  # something the user should read

    def __init__(self, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.background = Background(self, threads=2)
        self.writer = Background(self, threads=1)  # one thread: writes land in the order they were made
        self.folder: Path | None = None
        self.edits: DatasetCache | None = None
        self.editable = False
        self.settings = DatasetSettings()
        self.entries: list[Entry] = []
        self.removed_count = 0
        self.report_summary = ""
        self.tokenizer: Tokenizer | None = None
        self._rows: dict[Path, int] = {}
        self._pending = 0
        self._check: Job | None = None
        self.findings: list[Finding] = []

    # ---------------------------------------------------------------- opening

    def open(self, folder: Path | None, *, editable: bool, settings: DatasetSettings | None = None) -> None:
        """Show ``folder`` (``None``: nothing); listing happens on a worker thread, then ``reset``."""
        self.cancel_check()
        self.folder = Path(folder) if folder is not None else None
        self.editable = editable and self.folder is not None
        self.settings = settings or self.settings
        self.edits = DatasetCache.for_folder(self.folder) if self.folder is not None else None
        self._set_entries([], 0)
        self.report_summary = ""
        if self.folder is None or self.edits is None:
            return
        folder, edits, extension = self.folder, self.edits, self.settings.caption_extension
        self.loadingChanged.emit(True)
        self.background.run(lambda _r, _c: list_entries(folder, edits, extension),
                            lambda result: self._listed(folder, result), self._open_failed, priority=1)

    def reload(self) -> None:
        self.open(self.folder, editable=self.editable)

    def _listed(self, folder: Path, result: tuple[list[Entry], int]) -> None:
        if folder != self.folder:
            return  # an older folder's answer
        self.loadingChanged.emit(False)
        self._set_entries(*result)
        paths = [entry.path for entry in self.entries]
        self.background.run(lambda _r, _c: read_sizes(paths), lambda sizes: self._sized(folder, sizes))

    def _open_failed(self, error: BaseException) -> None:
        self.loadingChanged.emit(False)
        self.failed.emit(f"Cannot read the folder: {getattr(error, 'strerror', None) or error}")

    def _sized(self, folder: Path, sizes: dict[Path, tuple[int, int]]) -> None:
        if folder != self.folder:
            return
        for entry in self.entries:
            entry.size = sizes.get(entry.path, entry.size)
        self.sizesChanged.emit()

    def _set_entries(self, entries: list[Entry], removed: int) -> None:
        self.entries, self.removed_count = entries, removed
        self._rows = {entry.path: row for row, entry in enumerate(entries)}
        self.reset.emit()

    def row_of(self, path: Path) -> int | None:
        return self._rows.get(Path(path))

    def entry(self, row: int | None) -> Entry | None:
        return self.entries[row] if row is not None and 0 <= row < len(self.entries) else None

    # ---------------------------------------------------------------- edits (in memory now, on disk soon)

    def _write(self, write: Callable[[], object]) -> None:
        self._pending += 1
        self.pendingWrites.emit(self._pending)
        self.writer.run(lambda _r, _c: write(), self._written, self._write_failed)

    def _written(self, _result: object = None) -> None:
        self._pending -= 1
        self.pendingWrites.emit(self._pending)

    def _write_failed(self, error: BaseException) -> None:
        self._written()
        self.failed.emit(f"Could not save an edit: {error}")

    def set_captions(self, changes: dict[int, str]) -> None:
        """New caption text for rows (an unchanged text is not written)."""
        edits = self.edits
        if not self.editable or edits is None:
            return
        changed = {row: text.strip() for row, text in changes.items() if text.strip() != self.entries[row].caption}
        for row, text in changed.items():
            self.entries[row].edited = text
        if changed:
            writes = [(self.entries[row].path, text) for row, text in changed.items()]
            self._write(lambda: [edits.write_caption(path, text) for path, text in writes])
            self.captionsChanged.emit(sorted(changed))

    def revert_caption(self, row: int) -> None:
        """Back to the caption file beside the image (or the template)."""
        entry, edits = self.entries[row], self.edits
        if not self.editable or edits is None or entry.edited is None:
            return
        entry.edited = None
        self._write(lambda: edits.forget_caption(entry.path))
        self.captionsChanged.emit([row])

    def apply_bulk(self, rows: list[int], edit: BulkEdit) -> int:
        """Apply a bulk operation to ``rows``; returns how many captions changed."""
        changes = {row: edit.apply(self.entries[row].caption) for row in rows}
        changes = {row: text for row, text in changes.items() if text != self.entries[row].caption}
        self.set_captions(changes)
        return len(changes)

    def set_crop(self, row: int, box: tuple[int, int, int, int] | None) -> None:
        entry, edits = self.entries[row], self.edits
        if not self.editable or edits is None or entry.size is None:
            return
        if box is None:
            entry.crop = None
            self._write(lambda: edits.crop_path(entry.path).unlink(missing_ok=True))
        else:
            record = CropRecord(box, entry.size)
            entry.crop = record
            self._write(lambda: edits.write_crop(entry.path, record))
        self.cropChanged.emit(row)

    def remove(self, rows: list[int]) -> None:
        """Leave images out of the dataset (the files stay on disk)."""
        edits = self.edits
        if not self.editable or edits is None or not rows:
            return
        paths = [self.entries[row].path for row in rows]
        self._write(lambda: edits.set_removed(paths, True))
        gone = set(paths)
        self._set_entries([e for e in self.entries if e.path not in gone], self.removed_count + len(gone))

    def restore_removed(self) -> None:
        edits = self.edits
        if not self.editable or edits is None or not self.removed_count:
            return
        removed = sorted(edits.removed())
        self._write(lambda: edits.set_removed(removed, False))
        self.writer.wait()
        self.reload()

    def flush(self) -> None:
        """Block until every queued write is on disk (closing; tests)."""
        self.writer.wait()

    # ---------------------------------------------------------------- health

    def check(self) -> None:
        """Run the health check on a worker thread; ``reportChanged`` when done."""
        if self.folder is None:
            return
        self.cancel_check()
        folder, settings, tokenizer = self.folder, self.settings, self.tokenizer
        edits = self.edits if self.editable else None

        def work(report: Report, cancelled: threading.Event) -> HealthReport:
            self.writer.wait()  # check what is on disk after the edits already made
            return check_dataset(folder, settings.resolution, token=settings.token, template=settings.template,
                                 caption_extension=settings.caption_extension, tokenizer=tokenizer, cache=edits,
                                 progress=throttled(report), cancel=cancelled)

        self._check = self.background.run(work, lambda result: self._checked(folder, result), self._check_failed,
                                          self.checkProgress.emit)

    def cancel_check(self) -> None:
        if self._check is not None:
            self._check.cancel()
            self._check = None

    def _checked(self, folder: Path, report: HealthReport) -> None:
        self._check = None
        if folder != self.folder:
            return
        by_file: dict[Path, list[Finding]] = {}
        for finding in report.sorted_findings():
            by_file.setdefault(finding.file, []).append(finding)
        for entry in self.entries:
            entry.findings = by_file.get(entry.path, [])
        self.findings = report.sorted_findings()
        self.report_summary = report.summary()
        self.reportChanged.emit()

    def _check_failed(self, error: BaseException) -> None:
        self._check = None
        if not isinstance(error, CheckCancelled):
            self.failed.emit(f"The health check failed: {error}")

    # ---------------------------------------------------------------- closing

    def shutdown(self) -> None:
        """Cancel the check, finish the queued writes (edits are never dropped), stop the threads."""
        self.cancel_check()
        self.writer.wait()
        self.background.shutdown()
        self.writer.shutdown()

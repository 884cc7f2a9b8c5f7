"""The dataset being curated: the images of one folder, their captions, crops, removals and health.

``DatasetModel`` is the one source of truth the panel's widgets subscribe to (napari style): the
grid, the caption editor, the crop view, the bucket preview and the findings list read it and
call its methods; none of them touches files.

Files: the folder's originals are read, never written.  Edits (captions, crops, removals) go to
the folder's ``DatasetCache`` (``.kamaal`` inside a project folder), painted loss masks to
``NAME.mask.png`` beside the image (the file training reads) — only when ``editable``;
a folder outside the project is shown read-only.  In memory the model changes at once; the
writes are queued on a one-thread ``Background`` (so they land in order) and ``pendingWrites``
says how many are left.

Processes and threads: listing, header reading and the health check run in the page's worker
processes (``processes``, shared with the thumbnails and the import); the queued writes and the
tokenizer's loading run on threads of this process (``writer``, ``background``); every method,
slot and signal of this class is on the GUI thread.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from pathlib import Path

from PySide6.QtCore import QObject, Signal
from PySide6.QtGui import QImage

from desktop_app.dataset import jobs
from desktop_app.dataset.background import Background, Job
from desktop_app.dataset.entries import DatasetSettings, Entry
from desktop_app.dataset.mask_layer import png_bytes
from desktop_app.dataset.processes import Processes
from trainer.dataset import CheckCancelled, CropRecord, DatasetCache, Finding
from trainer.dataset.caption_ops import BulkEdit
from trainer.dataset.captions import Tokenizer
from trainer.dataset.importing import add_control
from trainer.dataset.masks import mask_path_for
from trainer.dataset.pairs import control_paths_for
from trainer.fsutil import atomic_write_bytes

__all__ = ["DatasetModel", "DatasetSettings", "Entry"]
SIZES_CHUNK = 100  # image headers read per job (about 12 ms of a worker)


class DatasetModel(QObject):
    reset = Signal()  # a new folder, or images removed / restored: rows changed
    captionsChanged = Signal(list)  # rows whose caption changed
    cropChanged = Signal(int)
    maskChanged = Signal(int)
    controlsChanged = Signal(int)  # a row's control images (before/after pairs)
    sizesChanged = Signal()
    reportChanged = Signal()  # findings changed (after a health check)
    checkProgress = Signal(int, int)
    loadingChanged = Signal(bool)
    pendingWrites = Signal(int)
    failed = Signal(str)  # something the user should read

    def __init__(self, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.processes = Processes(self, processes=2)  # the heavy reads; the panel shares them
        self.background = Background(self, threads=1)  # light work whose answer lives here (the tokenizer)
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
        self.paired = False  # the concept holds before/after pairs: some image has a control image
        self._pending = 0
        self._sizing = 0  # pieces of the header reading still to come
        self._reads: list[Job] = []  # listing and header reads of the open folder (cancelled by the next open)
        self._check: Job | None = None
        self.findings: list[Finding] = []

    # ---------------------------------------------------------------- opening

    def open(self, folder: Path | None, *, editable: bool, settings: DatasetSettings | None = None) -> None:
        """Show ``folder`` (``None``: nothing); listing happens in a worker process, then ``reset``."""
        self.cancel_check()
        for job in self._reads:  # the listing and header reads of what was open before
            job.cancel()
        self._reads = []
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
        self._reads.append(self.processes.run(partial(jobs.listing, folder, edits, extension), self._listed,
                                              self._open_failed, priority=1))

    def reload(self) -> None:
        self.open(self.folder, editable=self.editable)

    def _listed(self, result: tuple[list[Entry], int]) -> None:
        """The listing of the folder open now (``open`` cancels older reads: their answers never arrive)."""
        self.loadingChanged.emit(False)
        self._set_entries(*result)
        paths = [entry.path for entry in self.entries]
        chunks = [paths[start:start + SIZES_CHUNK] for start in range(0, len(paths), SIZES_CHUNK)]
        self._sizing = len(chunks)
        for chunk in chunks:  # in pieces: a thumbnail asked for meanwhile waits for one piece at most
            self._reads.append(self.processes.run(partial(jobs.sizes, chunk), self._sized, lambda _e: self._sized({})))

    def _open_failed(self, error: BaseException) -> None:  # cancelled jobs never fail: it is the open folder
        self.loadingChanged.emit(False)
        self.failed.emit(f"Cannot read the folder: {getattr(error, 'strerror', None) or error}")

    def _sized(self, sizes: dict[Path, tuple[int, int]]) -> None:
        for path, size in sizes.items():
            row = self._rows.get(path)
            if row is not None:
                self.entries[row].size = size
        self._sizing -= 1
        if self._sizing == 0:
            self.sizesChanged.emit()

    def _set_entries(self, entries: list[Entry], removed: int) -> None:
        self.entries, self.removed_count = entries, removed
        self._rows = {entry.path: row for row, entry in enumerate(entries)}
        self.paired = any(entry.controls for entry in entries)
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

    def set_mask(self, row: int, mask: QImage | None) -> None:
        """The row's loss mask (grayscale, the image's size; no one else may change it), encoded and written
        atomically as ``NAME.mask.png`` beside the image on the writer thread (a new file: the image is never
        written); None deletes it (the whole image trains)."""
        entry = self.entries[row]
        if not self.editable or entry.size is None:
            return
        path = mask_path_for(entry.path)
        if mask is None:
            entry.mask = None
            self._write(lambda: path.unlink(missing_ok=True))
        else:
            entry.mask = path
            self._write(lambda: atomic_write_bytes(path, png_bytes(mask)))
        self.maskChanged.emit(row)

    def set_control(self, row: int, number: int, source: Path) -> None:
        """Copy ``source`` in as control image ``number`` (1: the first) of the row's image, replacing the one in
        that slot (``trainer.dataset.importing.add_control``; the source is only read), on the writer thread;
        ``controlsChanged`` once it is on disk, ``failed`` naming the file when it is not an image."""
        entry = self.entries[row]
        if not self.editable:
            return
        self._pending += 1
        self.pendingWrites.emit(self._pending)
        self.writer.run(lambda _r, _c: (add_control(entry.path, source, number), control_paths_for(entry.path)),
                        lambda result: self._control_set(entry, result[1]), self._write_failed)

    def _control_set(self, entry: Entry, controls: tuple[Path, ...]) -> None:
        self._written()
        entry.controls = controls
        row = self.row_of(entry.path)
        if row is not None and self.entries[row] is entry:  # still shown (the folder may have changed meanwhile)
            self.paired = self.paired or bool(controls)
            self.controlsChanged.emit(row)

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
        """Run the health check in a worker process, on what is on disk once the queued edits are written;
        ``checkProgress`` meanwhile, ``reportChanged`` when done."""
        if self.folder is None:
            return
        self.cancel_check()
        folder, settings, exact = self.folder, self.settings, self.tokenizer is not None
        edits = self.edits if self.editable else None
        work = partial(jobs.check, folder, settings, edits, exact)

        def start(_written: object = None) -> None:
            self._check = self.processes.run(work, lambda result: self._checked(folder, result),
                                             self._check_failed, self.checkProgress.emit)

        if self._pending:  # after the writes queued so far: a no-op behind them on the one writer thread
            self._check = self.writer.run(lambda _r, _c: None, start)
        else:
            start()

    def after_writes(self, then: Callable[[], object]) -> None:
        """Call ``then`` (on the GUI thread) once the edits queued so far are on disk: at once when none are."""
        if self._pending:
            self.writer.run(lambda _r, _c: None, lambda _written: then())
        else:
            then()

    def cancel_check(self) -> None:
        if self._check is not None:
            self._check.cancel()
            self._check = None

    def _checked(self, folder: Path, result: jobs.Checked) -> None:
        self._check = None
        if folder != self.folder:
            return
        by_file: dict[Path, list[Finding]] = {}
        for finding in result.findings:
            by_file.setdefault(finding.file, []).append(finding)
        for entry in self.entries:
            entry.findings = by_file.get(entry.path, [])
        self.findings = result.findings
        self.report_summary = result.summary
        self.reportChanged.emit()

    def _check_failed(self, error: BaseException) -> None:
        self._check = None
        if not isinstance(error, CheckCancelled):
            self.failed.emit(f"The health check failed: {error}")

    # ---------------------------------------------------------------- closing

    def shutdown(self) -> None:
        """Cancel the check, finish the queued writes (edits are never dropped), stop the threads and processes."""
        self.cancel_check()
        self.writer.wait()
        self.processes.shutdown()
        self.background.shutdown()
        self.writer.shutdown()

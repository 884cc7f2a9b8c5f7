"""Auto-captioning on the Dataset page: which images, the ``caption-images`` task, the captions as edits, one undo.

``AutoCaptioner`` owns a ``TaskRunner`` (the model runs in a trainer process: torch and onnxruntime never load
here) and applies each caption the task hands over (``TaskProgress.data``) as it arrives, through
``DatasetModel.set_captions`` — exactly the path of a caption typed in the editor: written atomically to the
project folder's ``.kamaal`` edits (caption files and originals are never written), seen at once by the grid,
the token counter, the health check and training.  So Cancel keeps every caption that arrived before it.

The mode's choice is made here on the captions the person sees (an edit counts, not only the file): *fill*
sends only images whose caption is empty, and checks again as each caption arrives, so a caption typed
meanwhile wins.  ``CaptionJob.joined`` (``trainer.captioning.batch``) joins the prefix, the model's text, the
suffix and, in *append*, the caption there was.

Undo: ``BatchUndo`` holds, per image, the edit from before the batch (None: there was none, the caption file
or template showed) and the caption the batch wrote.  One undo puts every image back whose caption is still
the batch's; a caption edited since is kept and counted.

GUI thread only (the runner's signals arrive on it).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from PySide6.QtCore import QObject, Signal

from desktop_app.dataset.model import DatasetModel
from desktop_app.tasks import TaskRunner
from trainer.captioning.batch import CaptionJob
from trainer.protocol import Failed, TaskDone, TaskProgress

TASK = "caption-images"
PREVIEW_IMAGES = 3


@dataclass(frozen=True)
class CaptionRequest:
    """What the dialog asks for: the model folder, the task's captioner options, how captions join."""

    model: Path
    job: CaptionJob
    options: dict = field(default_factory=dict)  # CaptionerOptions fields, plain data for the task


@dataclass
class BatchUndo:
    """One batch's changes: image → (its edit before the batch or None, the caption the batch wrote)."""

    folder: Path | None = None
    changes: dict[Path, tuple[str | None, str]] = field(default_factory=dict)

    def record(self, image: Path, edited_before: str | None, written: str) -> None:
        before = self.changes.get(image, (edited_before, written))[0]  # the first "before" is the one to go back to
        self.changes[image] = (before, written)


class AutoCaptioner(QObject):
    previewed = Signal(list)  # [(image path, caption as it would be written)], after a preview
    captioned = Signal(Path, str)  # one image's caption, applied
    progressed = Signal(int, int, str)  # done, total, message
    finished = Signal(str)  # what happened, for the person (done, cancelled or what went wrong)
    busyChanged = Signal(bool)
    undoChanged = Signal(int)  # how many captions the batch undo would put back (0: nothing to undo)

    def __init__(self, dataset: DatasetModel, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.dataset = dataset
        self.task_name = TASK  # tests swap in a slower stand-in to cancel midway
        self.runner = TaskRunner(self)
        self.undo_batch = BatchUndo()
        self._request: CaptionRequest | None = None
        self._preview: list[tuple[Path, str]] | None = None  # collecting a preview (None: a real run)
        self._skipped: list[str] = []
        self.runner.progress.connect(self._progress)
        self.runner.done.connect(self._done)
        self.runner.failed.connect(self._failed)
        self.runner.busyChanged.connect(self._busy)
        dataset.reset.connect(self._folder_changed)

    def is_busy(self) -> bool:
        return self.runner.is_busy()

    def wanted(self, paths: list[Path], job: CaptionJob) -> list[Path]:
        """The images ``job`` captions, in order: all of them, or in *fill* those whose caption is empty."""
        rows = [self.dataset.row_of(path) for path in paths]
        entries = [self.dataset.entries[row] for row in rows if row is not None]
        return [entry.path for entry in entries if job.mode != "fill" or not entry.caption.strip()]

    def preview(self, request: CaptionRequest, paths: list[Path], count: int = PREVIEW_IMAGES) -> bool:
        """Caption the first ``count`` wanted images without applying anything; ``previewed`` with the results."""
        return self._start(request, self.wanted(paths, request.job)[:count], preview=True)

    def run(self, request: CaptionRequest, paths: list[Path]) -> bool:
        """Caption the wanted images of ``paths``, each applied as it arrives; starts a new undo batch."""
        if not self.dataset.editable:
            return False
        self.undo_batch = BatchUndo(self.dataset.folder)
        self.undoChanged.emit(0)
        return self._start(request, self.wanted(paths, request.job), preview=False)

    def _start(self, request: CaptionRequest, images: list[Path], preview: bool) -> bool:
        if self.runner.is_busy():
            return False
        if not images:
            self.finished.emit("No image to caption: in “fill” mode only images without a caption are captioned.")
            return False
        self._request, self._skipped = request, []
        self._preview = [] if preview else None
        self.progressed.emit(0, len(images), f"Loading {request.model.name}…")
        return self.runner.start(self.task_name, {"model": str(request.model), "options": request.options,
                                                  "images": [str(path) for path in images]})

    def cancel(self) -> None:
        """Stop after the image being captioned; every caption applied so far stays."""
        self.runner.cancel()

    # ---------------------------------------------------------------- the task's events

    def _progress(self, event: TaskProgress) -> None:
        data = event.data
        if "problem" in data:
            self._skipped.append(Path(data["image"]).name)
        elif "caption" in data and self._request is not None:
            self._arrived(Path(data["image"]), str(data["caption"]), self._request.job)
        self.progressed.emit(event.done, event.total, event.message)

    def _arrived(self, image: Path, text: str, job: CaptionJob) -> None:
        row = self.dataset.row_of(image)
        entry = self.dataset.entry(row)
        if entry is None or row is None:  # removed meanwhile
            return
        new = job.joined(entry.caption, text).strip()
        if self._preview is not None:
            self._preview.append((image, new))
            return
        if job.mode == "fill" and entry.caption.strip():
            return  # typed meanwhile: the person's caption wins
        if new != entry.caption:
            before = entry.edited
            self.dataset.set_captions({row: new})
            self.undo_batch.record(image, before, new)
        self.captioned.emit(image, new)

    def _done(self, event: TaskDone) -> None:
        captioner = str(event.result.get("captioner", "the model"))
        if self._preview is not None:
            self.previewed.emit(self._preview)
            self.finished.emit(f"Preview by {captioner}: nothing was written." + self._skipped_note())
        else:
            count = len(self.undo_batch.changes)
            self.finished.emit(f"{captioner} captioned {count} image{'s' if count != 1 else ''}."
                               + self._skipped_note())
            self._batch_over()

    def _failed(self, event: Failed) -> None:
        if event.kind == "cancelled":
            count = len(self.undo_batch.changes) if self._preview is None else 0
            self.finished.emit("Cancelled" + (f"; the {count} caption{'s' if count != 1 else ''} written so far "
                                              "are kept (Undo takes them back)." if count else "."))
        else:
            self.finished.emit(event.message)
        if self._preview is None:
            self._batch_over()

    def _skipped_note(self) -> str:
        return f" Skipped (unreadable): {', '.join(self._skipped)}." if self._skipped else ""

    def _busy(self, busy: bool) -> None:
        self.busyChanged.emit(busy)
        if not busy:  # the batch is over: now it can be undone
            self.undoChanged.emit(len(self.undo_batch.changes) if self.can_undo() else 0)

    def _batch_over(self) -> None:
        if self.undo_batch.changes:
            self.dataset.check()  # the health check sees the new captions once they are written

    # ---------------------------------------------------------------- undo

    def can_undo(self) -> bool:
        return bool(self.undo_batch.changes) and self.undo_batch.folder == self.dataset.folder \
            and not self.runner.is_busy()

    def undo(self) -> tuple[int, int]:
        """Put the batch's images back as they were; returns (restored, kept because edited since)."""
        if not self.can_undo():
            return 0, 0
        restored, kept, changes = 0, 0, {}
        for image, (before, written) in self.undo_batch.changes.items():
            row = self.dataset.row_of(image)
            entry = self.dataset.entry(row)
            if entry is None or row is None:
                continue
            if entry.caption != written:
                kept += 1
                continue
            restored += 1
            if before is None:
                self.dataset.revert_caption(row)
            else:
                changes[row] = before
        self.dataset.set_captions(changes)
        self.undo_batch = BatchUndo()
        self.undoChanged.emit(0)
        self.dataset.check()
        return restored, kept

    def _folder_changed(self) -> None:
        self.undoChanged.emit(len(self.undo_batch.changes) if self.can_undo() else 0)

    def shutdown(self) -> None:
        self.runner.close()

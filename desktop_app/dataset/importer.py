"""Importing into the project from the Dataset page: the file dialogs, where copies go, and the copy
job in a worker process (the copying itself, and why a project owns copies, is
``trainer.dataset.importing``).

Where: the selected concept's folder when it is already inside the project; otherwise a new folder
``PROJECT/datasets/<name>`` (``subject`` for a first import, the outside folder's name when a
read-only folder is copied in); a new concept gets a new folder named after the imported one
(never another concept's).  A folder that is already inside the project (one whose concept was
removed, say) becomes a concept where it is, without a copy.  ``imported(relative_folder, message,
new_concept)`` tells the panel which folder to show.  GUI thread, except the copy job (``jobs.copy_in`` in
one of the page's worker processes, ``Processes``).
"""

from __future__ import annotations

from functools import partial
from pathlib import Path

from PySide6.QtCore import QObject, Signal
from PySide6.QtWidgets import QFileDialog, QProgressBar, QWidget

from desktop_app.dataset import jobs
from desktop_app.dataset.background import Job
from desktop_app.dataset.concept_store import ConceptStore
from desktop_app.dataset.processes import Processes
from trainer.dataset.importing import ImportResult

DATASETS_FOLDER = "datasets"
IMAGE_FILTER = "Images (*.jpg *.jpeg *.png *.webp *.bmp *.gif *.tif *.tiff)"


class Importer(QObject):
    imported = Signal(str, str, bool)  # destination relative to the project (POSIX), what happened, new concept?
    failed = Signal(str)

    def __init__(self, store: ConceptStore, processes: Processes, progress: QProgressBar, project_root: Path | None,
                 parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.store = store
        self.config = store.config
        self.progress = progress
        self.project_root = project_root
        self.processes = processes  # the page's worker processes, shared
        self._copying: Job | None = None  # one import at a time
        self.last_folder: Path | None = None  # where the person last picked images from

    def configured_folder(self) -> Path | None:
        """The selected concept's folder (relative ones are in the project), or None while it has none."""
        return self.folder_of(self.store.current)

    def folder_of(self, index: int) -> Path | None:
        value = str(self.store.value("path", index) or "")
        if not value:
            return None
        path = Path(value).expanduser()
        return path if path.is_absolute() or self.project_root is None else self.project_root / path

    def inside_project(self, folder: Path) -> bool:
        return self.project_root is not None and folder.resolve().is_relative_to(self.project_root.resolve())

    def destination(self) -> Path | None:
        """The concept's folder when it is in the project; else a new one under ``PROJECT/datasets``."""
        if self.project_root is None:
            return None
        folder = self.configured_folder()
        if folder is not None and self.inside_project(folder):
            return folder
        name = folder.name if folder is not None else "subject" if self.store.current == 0 else "concept"
        # Never into another concept's folder (two outside folders may share a name).
        taken = {Path(str(self.store.value("path", i))).name for i in range(self.store.count())
                 if i != self.store.current}
        candidate, number = self.project_root / DATASETS_FOLDER / name, 1
        while candidate.name in taken:
            number += 1
            candidate = candidate.with_name(f"{name}-{number}")
        return candidate

    def new_concept_destination(self, source: Path) -> Path | None:
        """A folder of its own for a concept imported from ``source``: ``datasets/<name>[-2…]``."""
        if self.project_root is None:
            return None
        taken = {Path(str(self.store.value("path", i))).name for i in range(self.store.count())}
        base = self.project_root / DATASETS_FOLDER / (source.name if source.is_dir() else "concept")
        candidate, number = base, 1
        while candidate.name in taken or candidate.exists():
            number += 1
            candidate = base.with_name(f"{base.name}-{number}")
        return candidate

    def choose_folder(self, parent: QWidget, new_concept: bool = False) -> None:
        title = "Import a folder of images as a new concept" if new_concept else "Import a folder of images"
        folder = QFileDialog.getExistingDirectory(parent, title, self.start_folder())
        if folder:
            self.last_folder = Path(folder).parent
            self.start([Path(folder)], new_concept=new_concept)

    def choose_files(self, parent: QWidget) -> None:
        files, _ = QFileDialog.getOpenFileNames(parent, "Add images", self.start_folder(), IMAGE_FILTER)
        if files:
            self.last_folder = Path(files[0]).parent
            self.start([Path(f) for f in files])

    def start_folder(self) -> str:
        """Where the file dialogs open: where the person last picked from, else their Pictures (or home)
        folder — never the folder the app happened to be started in."""
        if self.last_folder is not None and self.last_folder.is_dir():
            return str(self.last_folder)
        home = Path.home()
        return str(home / "Pictures" if (home / "Pictures").is_dir() else home)

    def start(self, paths: list[Path], new_concept: bool = False) -> bool:
        """Copy images (files or folders) into the destination in a worker process; with ``new_concept``,
        into a new folder that becomes a new concept (the first one, while it has no folder)."""
        if new_concept and len(paths) == 1 and self._project_folder(paths[0]):
            return self._add_in_place(paths[0])
        if new_concept and paths and (self.store.count() > 1 or self.store.value("path", 0)):
            destination = self.new_concept_destination(paths[0])
        else:
            new_concept = False
            destination = self.destination()
        if destination is None or not paths or self.busy():
            return False
        extension = str(self.config.value("dataset.caption_extension"))
        self._run(partial(jobs.copy_in, list(paths), destination, extension), destination, new_concept)
        return True

    def start_pair(self, target: Path, control: Path) -> bool:
        """Copy two images in as one before/after pair (``control`` → ``target``), into the destination."""
        destination = self.destination()
        if destination is None or self.busy():
            return False
        extension = str(self.config.value("dataset.caption_extension"))
        self._run(partial(jobs.copy_pair, target, control, destination, extension), destination, False)
        return True

    def _run(self, work: partial[ImportResult], destination: Path, new_concept: bool) -> None:
        self.progress.setRange(0, 0)
        self.progress.show()
        self._copying = self.processes.run(work, lambda result: self._done(destination, result, new_concept),
                                           self._failed, self._progressed)

    def busy(self) -> bool:
        """An import is copying (a second one is refused until it is done)."""
        return self._copying is not None

    def _project_folder(self, path: Path) -> bool:
        """A folder inside the project (not the project itself): a concept can use it where it is."""
        root = self.project_root
        return root is not None and path.is_dir() and self.inside_project(path) and path.resolve() != root.resolve()

    def _add_in_place(self, folder: Path) -> bool:
        """Make a folder already in the project a concept, without copying it (refused when it is one)."""
        assert self.project_root is not None
        relative = folder.resolve().relative_to(self.project_root.resolve()).as_posix()
        for index in range(self.store.count()):
            known = self.folder_of(index)
            if known is not None and known.resolve() == folder.resolve():
                self.failed.emit(f"“{relative}” is already the concept “{self.store.title(index)}”")
                return False
        self.imported.emit(relative, f"Added {relative} (already in the project: nothing copied)", True)
        return True

    def _progressed(self, done: int, total: int) -> None:
        self.progress.setRange(0, total)
        self.progress.setValue(done)

    def _done(self, destination: Path, result: ImportResult, new_concept: bool) -> None:
        self._copying = None
        self.progress.hide()
        assert self.project_root is not None
        skipped = f", {len(result.skipped)} skipped (already there or not images)" if result.skipped else ""
        relative = destination.resolve().relative_to(self.project_root.resolve()).as_posix()
        self.imported.emit(relative, f"Imported {len(result.copied)} images{skipped}", new_concept)

    def _failed(self, error: BaseException) -> None:
        self._copying = None
        self.progress.hide()
        self.failed.emit(f"Import failed: {error}")

    def shutdown(self) -> None:
        """Stop a running import between two files (what was copied stays; the originals are untouched)."""
        if self._copying is not None:
            self._copying.cancel()
            self._copying = None

"""The Dataset page: curate the images a run learns from (see ``desktop_app/dataset/__init__``).

Layout: the concept strip (the project's concepts: select, add, remove) and the concept bar (the
selected concept's subject and class sets) on top; under them the toolbar and the thumbnail grid
of the selected concept beside a column of tabs — Caption (editor, bulk edits, auto-captioning), Crop, Buckets,
Health.  Folders
outside the project are shown read-only with an offer to copy them in (``trainer.dataset.
importing`` explains why a project owns copies).  In toy mode the page says no images are needed.

Objects: ``store`` (``ConceptStore``: the concepts and which is selected), ``dataset``
(``DatasetModel``, the selected concept's images), ``loader`` (thumbnails), the widgets that
subscribe to them.  GUI thread only; files are read in worker processes and written on a worker thread.
"""

from __future__ import annotations

from functools import partial
from pathlib import Path

from PySide6.QtCore import QItemSelectionModel, QTimer
from PySide6.QtGui import QKeySequence, QShortcut, QShowEvent
from PySide6.QtWidgets import (
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QMessageBox,
    QPushButton,
    QSplitter,
    QStackedWidget,
    QTabWidget,
    QVBoxLayout,
    QWidget,
)

from desktop_app.dataset import jobs
from desktop_app.dataset.auto_caption import AutoCaptioner
from desktop_app.dataset.buckets_view import BucketsView
from desktop_app.dataset.bulk_bar import BulkBar
from desktop_app.dataset.caption_dialog import CaptionDialog
from desktop_app.dataset.caption_editor import CaptionEditor
from desktop_app.dataset.class_images import ClassImagesBox
from desktop_app.dataset.concept_store import ConceptStore
from desktop_app.dataset.concepts import ConceptBar, ConceptTabs
from desktop_app.dataset.crop_view import CropView
from desktop_app.dataset.findings_view import FindingsView
from desktop_app.dataset.grid import ThumbnailGrid, ThumbnailListModel
from desktop_app.dataset.importer import Importer
from desktop_app.dataset.model import DatasetModel, DatasetSettings
from desktop_app.dataset.pair_dialog import AS_PAIR, AS_TWO_IMAGES, PairDialog
from desktop_app.dataset.pair_view import PairView
from desktop_app.dataset.thumbnails import ThumbnailLoader
from desktop_app.dataset.toolbar import DatasetToolbar
from desktop_app.dataset.toy_note import ToyNote
from desktop_app.train.config_model import ConfigModel
from trainer.dataset.caption_ops import CaptionVariation
from trainer.dataset.pair_health import PairUse
from trainer.dataset.scan import is_image_name
from trainer.families import is_toy

SETTINGS_FIELDS = {"dataset.min_bucket_side", "dataset.max_bucket_side", "dataset.bucketing",
                   "dataset.caption_dropout", "dataset.tag_dropout", "dataset.shuffle_tags", "dataset.keep_tags",
                   "dataset.tag_separator", "dataset.masked_loss"}


def ask_to_remove(parent: QWidget, title: str) -> bool:
    """The question before a concept leaves the project (tests replace it)."""
    answer = QMessageBox.question(parent, "Remove concept",
                                  f"Remove the concept “{title}” from the project?\n\nIts images stay on disk; "
                                  "you can add the folder again later.")
    return answer == QMessageBox.StandardButton.Yes


class DatasetPanel(QWidget):
    def __init__(self, model: ConfigModel, project_root: Path | None = None, parent: QWidget | None = None,
                 store: ConceptStore | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("datasetPanel")
        self.model = model
        self.project_root = project_root
        self.notice = ""  # the last import's outcome, shown beside the counts
        self._opened_path: object = None  # the selected concept's folder as configured when it was opened
        self._counted_folders: tuple[Path | None, ...] = ()  # the folders the strip's counts are for
        self.dataset = DatasetModel(self)
        self.loader = ThumbnailLoader(self.dataset.processes, self._thumbnail_dir(), parent=self)
        self.toy_note = ToyNote(model)

        # The window owns the store when it builds this page late (the Train page's concept cards use it first).
        self.store = store if store is not None else ConceptStore(model, self)
        self.ask_remove = ask_to_remove
        self.class_images = ClassImagesBox(self.store, self.dataset.processes, project_root)
        self.concept_tabs = ConceptTabs(self.store)
        self.concepts = ConceptBar(self.store, self.class_images)
        self.toolbar = DatasetToolbar()
        self.importer = Importer(self.store, self.dataset.processes, self.toolbar.progress, project_root, self)
        self.outside = QLabel()
        self.outside.setObjectName("outsideNote")
        self.outside.setProperty("role", "note")
        self.outside.setWordWrap(True)
        self.copy_in = QPushButton("Copy into the project")
        self.copy_in.setObjectName("copyIntoProject")
        self.grid_model = ThumbnailListModel(self.dataset, self.loader)
        self.grid = ThumbnailGrid()
        self.grid.setModel(self.grid_model)
        self.pair_view = PairView(self.dataset, self.loader)
        self.pair_dialog: PairDialog | None = None  # the question two dropped images ask, while open
        self.editor = CaptionEditor(self.dataset)
        self.bulk = BulkBar(self.dataset, self.selected_rows)
        self.auto_captioner = AutoCaptioner(self.dataset, self)
        self.caption_images = QPushButton("Caption images…")
        self.caption_images.setObjectName("captionImages")
        self.caption_images.setToolTip("Caption the selected images, or the whole concept, with a local tagger or "
                                       "image-to-text model (previewed first; one undo for the batch).")
        self.undo_captioning = QPushButton("Undo auto-captioning")
        self.undo_captioning.setObjectName("undoCaptioning")
        self.undo_captioning.hide()
        self.crop = CropView(self.dataset)
        self.buckets = BucketsView(self.dataset)
        self.findings = FindingsView(self.dataset)
        self.tabs = self._build_tabs()

        images_page = QWidget()
        images = QVBoxLayout(images_page)
        images.setContentsMargins(0, 0, 0, 0)
        images.addWidget(self.concept_tabs)
        images.addWidget(self.concepts)
        images.addWidget(self.toolbar)
        images.addWidget(self.outside)
        images.addWidget(self.copy_in)
        splitter = QSplitter()
        splitter.setChildrenCollapsible(False)
        splitter.addWidget(self.grid)
        splitter.addWidget(self.tabs)
        splitter.setStretchFactor(0, 1)
        splitter.setSizes([820, 420])
        self.tabs.setMinimumWidth(340)
        images.addWidget(splitter, 1)
        self.pages = QStackedWidget()
        self.pages.addWidget(self.toy_note)
        self.pages.addWidget(images_page)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(8, 8, 8, 8)
        layout.addWidget(self.pages)
        self._connect()
        self._refresh_mode()
        self._open_configured_folder()
        self._count_concepts()

    def _build_tabs(self) -> QTabWidget:
        caption_tab = QWidget()
        caption = QVBoxLayout(caption_tab)
        caption.addWidget(self.pair_view)
        caption.addWidget(self.editor)
        bulk_title = QLabel("<b>Bulk edit the selected captions</b>")
        caption.addSpacing(8)
        caption.addWidget(bulk_title)
        caption.addWidget(self.bulk)
        caption.addSpacing(8)
        caption.addWidget(QLabel("<b>Auto-caption with a local model</b>"))
        auto = QHBoxLayout()
        auto.addWidget(self.caption_images)
        auto.addWidget(self.undo_captioning)
        auto.addStretch(1)
        caption.addLayout(auto)
        tips = QLabel("Ctrl- or Shift-click selects several images, Ctrl+A all of them; Delete removes the "
                      "selection from the dataset (the files stay). Drop files or folders on the grid to import.")
        tips.setProperty("role", "subtle")
        tips.setWordWrap(True)
        caption.addSpacing(12)
        caption.addWidget(tips)
        caption.addStretch(1)
        tabs = QTabWidget()
        tabs.setObjectName("datasetTabs")
        tabs.addTab(caption_tab, "Caption")
        tabs.addTab(self.crop, "Crop")
        tabs.addTab(self.buckets, "Buckets")
        tabs.addTab(self.findings, "Health")
        return tabs

    def _connect(self) -> None:
        bar = self.toolbar
        bar.import_folder.clicked.connect(lambda: self.importer.choose_folder(self))
        self.concept_tabs.addRequested.connect(lambda: self.importer.choose_folder(self, new_concept=True))
        self.concept_tabs.removeRequested.connect(self._remove_requested)
        self.store.currentChanged.connect(self._concept_selected)
        self.store.fieldsChanged.connect(self._concept_fields_changed)
        self.store.conceptsChanged.connect(self._count_concepts)
        bar.add_files.clicked.connect(lambda: self.importer.choose_files(self))
        self.importer.imported.connect(self._imported)
        self.importer.failed.connect(self._import_failed)
        bar.remove.clicked.connect(self.remove_selected)
        bar.restore.clicked.connect(self.dataset.restore_removed)
        bar.problems.toggled.connect(self._problems_only)
        bar.check.clicked.connect(self.dataset.check)
        self.copy_in.clicked.connect(lambda: self.import_paths([self.dataset.folder] if self.dataset.folder else []))
        QShortcut(QKeySequence.StandardKey.Delete, self.grid, self.remove_selected)
        self.grid.pathsDropped.connect(self.import_paths)
        self.grid.selectionModel().selectionChanged.connect(self._selection_changed)
        self.findings.jumpRequested.connect(self.jump_to)
        self.caption_images.clicked.connect(self.open_caption_dialog)
        self.undo_captioning.clicked.connect(self.undo_captioning_batch)
        self.auto_captioner.undoChanged.connect(self._undo_changed)
        self.dataset.reset.connect(self._show_counts)
        self.dataset.reportChanged.connect(self._show_counts)
        self.dataset.failed.connect(lambda message: self.toolbar.counts.setText(message))
        self.dataset.reset.connect(self._schedule_check)
        self.model.valueChanged.connect(self._value_changed)
        self._check_timer = QTimer(self)
        self._check_timer.setSingleShot(True)
        self._check_timer.setInterval(1500)  # after the first thumbnails: they matter more to the eye
        self._check_timer.timeout.connect(self.dataset.check)

    def showEvent(self, event: QShowEvent) -> None:
        super().showEvent(event)
        if self.focusWidget() is None or isinstance(self.focusWidget(), QLineEdit):
            self.grid.setFocus()  # not the token field: a stray key press must not edit the concept

    # ---------------------------------------------------------------- the folder

    def set_project_root(self, root: Path | None) -> None:
        self.project_root = root
        self.class_images.project_root = root
        self.importer.project_root = root
        self.loader.cache_dir = self._thumbnail_dir()
        self.store.select(0)  # another project: start at its first concept
        self._open_configured_folder()
        self._count_concepts(force=True)

    def _thumbnail_dir(self) -> Path | None:
        return self.project_root / "cache" / "thumbnails" if self.project_root is not None else None

    def _settings(self) -> DatasetSettings:
        """The selected concept's resolution, token and template with the dataset's bucket settings."""
        value, concept = self.model.value, self.store.value
        return DatasetSettings(self.store.resolution(), str(concept("instance_token")),
                               str(concept("caption_template")), str(value("dataset.caption_extension")),
                               int(value("dataset.min_bucket_side")), int(value("dataset.max_bucket_side")),
                               bool(value("dataset.bucketing")), CaptionVariation(
                                   float(value("dataset.caption_dropout")), float(value("dataset.tag_dropout")),
                                   bool(value("dataset.shuffle_tags")), int(value("dataset.keep_tags")),
                                   str(value("dataset.tag_separator")) or ","),
                               masked_loss=bool(value("dataset.masked_loss")),
                               pairs=PairUse.for_family(str(value("model.architecture"))))

    def refresh(self) -> None:
        """Read the selected concept's folder again (files changed outside Kamaal), and count them all."""
        self._open_configured_folder()
        self._count_concepts(force=True)

    def _open_configured_folder(self) -> None:
        folder = self.importer.configured_folder()
        self._opened_path = self.store.value("path")
        exists = folder is not None and folder.is_dir()
        editable = exists and folder is not None and self.importer.inside_project(folder)
        shown = (folder.resolve().relative_to(self.project_root.resolve()).as_posix() + "  (in the project)"
                 if editable and self.project_root is not None else str(folder))
        self.concepts.show_folder(shown if folder else "none yet — import a folder or drop images on the grid")
        self.outside.setVisible(exists and not editable)
        self.copy_in.setVisible(exists and not editable and self.project_root is not None)
        self.outside.setText("This folder is outside the project: Kamaal reads it but never writes there. Copy it "
                             "into the project to edit captions and crops or remove images (the originals stay as "
                             "they are).")
        if folder is not None and not exists:
            self.toolbar.counts.setText(f"Folder not found: {folder}")
        if exists:
            self.dataset.processes.prestart()  # listing, sizes and the check start within a second
        self.dataset.open(folder if exists else None, editable=editable, settings=self._settings())
        self.bulk.token_changed()
        self.toolbar.add_files.setEnabled(self.project_root is not None)
        self.toolbar.import_folder.setEnabled(self.project_root is not None)
        self.concept_tabs.add.setEnabled(self.project_root is not None)  # a new concept is copied into the project

    def _value_changed(self, name: str, _value: object) -> None:
        if name in ("mode", "model.architecture"):
            self._refresh_mode()
            pairs = self.dataset.settings.pairs
            self._settings_changed()
            if self.dataset.settings.pairs != pairs and self.dataset.report_summary:
                self.dataset.check()  # an edit family needs a control image for every image, others ignore them
        elif name == "dataset.caption_extension":
            self._open_configured_folder()
        elif name in SETTINGS_FIELDS:
            self._settings_changed()

    def _settings_changed(self) -> None:
        self.dataset.settings = self._settings()
        self.editor.settings_changed()
        self.bulk.token_changed()
        self.crop.settings_changed()
        self.buckets.refresh()

    # ---------------------------------------------------------------- concepts

    def _concept_selected(self, _index: int) -> None:
        self.editor.save_now()  # a pending caption belongs to the concept being left
        self.notice = ""
        self._open_configured_folder()

    def _concept_fields_changed(self) -> None:
        if self.store.value("path") != self._opened_path:
            self._open_configured_folder()
        else:
            self._settings_changed()

    def _count_concepts(self, force: bool = False) -> None:
        """Image counts for the strip's tabs, every concept's folder listed in a worker process.

        Only when the folders changed (a concept added, removed or moved), not for every edit of a
        concept's token or repeats; the selected concept's count also follows the grid."""
        folders = tuple(self.importer.folder_of(index) for index in range(self.store.count()))
        if folders == self._counted_folders and not force:
            return
        self._counted_folders = folders
        self.store.clear_counts()
        for index in range(self.store.count()):
            folder = self.importer.folder_of(index)
            if folder is not None:
                self.dataset.processes.run(partial(jobs.count_usable, folder),
                                           lambda n, index=index, folder=folder: self._counted(index, folder, n),
                                           lambda _e: None)

    def _counted(self, index: int, folder: Path, count: int | None) -> None:
        if index < self.store.count() and self.importer.folder_of(index) == folder:
            self.store.set_count(index, count)

    def add_concept(self, folder: Path) -> bool:
        """Import ``folder`` as a new concept (copied into the project, then selected)."""
        return self.importer.start([folder], new_concept=True)

    def _remove_requested(self, index: int) -> None:
        if self.ask_remove(self, self.store.title(index)):
            self.remove_concept(index)

    def remove_concept(self, index: int) -> None:
        """Take a concept out of the project; its folder and files stay where they are."""
        self.editor.save_now()
        self.store.remove(index)

    def _refresh_mode(self) -> None:
        self.pages.setCurrentIndex(0 if is_toy(self.model.value("model.architecture")) else 1)

    def _show_counts(self) -> None:
        d = self.dataset
        text = f"{len(d.entries):,} images" + (f", {d.removed_count} removed" if d.removed_count else "")
        if d.report_summary:
            text = d.report_summary
        if self.notice:
            text = f"{self.notice} · {text}"
        self.toolbar.counts.setText(text if d.folder is not None else self.notice)
        if d.folder is not None:
            self.store.set_count(self.store.current, len(d.entries))
        self.toolbar.set_editable(d.editable, bool(self.selected_rows()), d.removed_count)
        self.bulk.update_selection()
        self.caption_images.setEnabled(d.editable and bool(d.entries))

    def _schedule_check(self) -> None:
        if self.dataset.entries and not self.dataset.report_summary:
            self._check_timer.start()

    # ---------------------------------------------------------------- importing

    def import_paths(self, paths: list[Path]) -> bool:
        """Copy images (files or folders) into the concept's project folder (see ``importer``).  Two image
        files that do not pair by name, dropped on a concept of pairs or for an edit model family, first ask
        whether they are one before/after pair (``pair_dialog``)."""
        use = self.dataset.settings.pairs
        pairing = self.dataset.paired or (use is not None and use.edit)
        if pairing and len(paths) == 2 and all(p.is_file() and is_image_name(p.name) for p in paths) \
                and self.importer.destination() is not None and not self.importer.busy():
            self.ask_pair(paths[0], paths[1])
            return True
        return self.importer.start(paths)

    def ask_pair(self, first: Path, second: Path) -> PairDialog:
        """The window-modal question for two dropped images; its answer imports them (returned for tests)."""
        if self.pair_dialog is not None:
            self.pair_dialog.deleteLater()
        dialog = self.pair_dialog = PairDialog(first, second, self.loader, self)
        dialog.setModal(True)
        dialog.finished.connect(lambda result: self._pair_answered(dialog, result))
        dialog.open()
        return dialog

    def _pair_answered(self, dialog: PairDialog, result: int) -> None:
        if result == AS_PAIR:
            self.importer.start_pair(dialog.target, dialog.control)
        elif result == AS_TWO_IMAGES:
            self.importer.start([dialog.control, dialog.target])

    def _imported(self, relative: str, message: str, new_concept: bool) -> None:
        if new_concept:
            self.store.add(relative, Path(relative).name)  # selects it, which opens its folder
        elif self.store.value("path") != relative:
            self.store.set_value("path", relative)  # reopens the folder
        else:
            self.dataset.reload()
        self.notice = message
        self._show_counts()

    def _import_failed(self, message: str) -> None:
        self.notice = message
        self._show_counts()

    # ---------------------------------------------------------------- selection

    def selected_rows(self) -> list[int]:
        rows = [self.grid_model.dataset_row(index.row()) for index in self.grid.selectionModel().selectedIndexes()]
        return sorted(set(rows))

    def _selection_changed(self) -> None:
        rows = self.selected_rows()
        self.editor.show_rows(rows)
        single = rows[0] if len(rows) == 1 else None
        self.pair_view.show_row(single)
        self.crop.show_row(single)
        self.buckets.show_row(single)
        self.bulk.update_selection()
        self.toolbar.set_editable(self.dataset.editable, bool(rows), self.dataset.removed_count)

    def select_rows(self, rows: list[int]) -> None:
        selection = self.grid.selectionModel()
        selection.clearSelection()
        for row in rows:
            selection.select(self.grid_model.view_index(row), QItemSelectionModel.SelectionFlag.Select)
        if rows:
            index = self.grid_model.view_index(rows[0])
            selection.setCurrentIndex(index, QItemSelectionModel.SelectionFlag.NoUpdate)
            self.grid.scrollTo(index)

    # ---------------------------------------------------------------- auto-captioning

    def open_caption_dialog(self) -> CaptionDialog:
        """The "Caption images…" dialog for the selection or the whole concept (window-modal; returned for tests)."""
        self.editor.save_now()  # the caption being typed counts for "fill empty captions only"
        entries = self.dataset.entries
        dialog = CaptionDialog(self.auto_captioner, [entries[row].path for row in self.selected_rows()],
                               [entry.path for entry in entries], self.store.title(self.store.current),
                               self.dataset.settings.token, self)
        dialog.setModal(True)
        dialog.open()
        return dialog

    def undo_captioning_batch(self) -> None:
        """The last auto-captioning batch undone (a caption edited since stays); said beside the counts."""
        self.editor.save_now()  # a caption being typed counts as edited since
        restored, kept = self.auto_captioner.undo()
        self.notice = (f"Auto-captioning undone: {restored} caption{'s' if restored != 1 else ''} back"
                       + (f", {kept} edited since kept" if kept else ""))
        self._show_counts()

    def _undo_changed(self, count: int) -> None:
        self.undo_captioning.setText(f"Undo auto-captioning ({count})")
        self.undo_captioning.setVisible(count > 0 and self.auto_captioner.can_undo())

    def jump_to(self, path: Path) -> None:
        """Select and show the image a finding names (the problems filter is lifted if it hides it)."""
        row = self.dataset.row_of(path)
        if row is None:
            return
        if not self.grid_model.view_index(row).isValid():
            self.toolbar.problems.setChecked(False)
        self.select_rows([row])

    def _problems_only(self, on: bool) -> None:
        self.grid_model.set_problems_only(on)
        self.grid.scrollToTop()  # the old offset would leave the shorter list half a row down

    def remove_selected(self) -> None:
        self.editor.save_now()
        self.dataset.remove(self.selected_rows())

    # ---------------------------------------------------------------- closing

    def shutdown(self) -> None:
        """Save a pending caption, finish the writes, stop every thread and the class-images task."""
        self._check_timer.stop()
        self.editor.save_now()
        self.class_images.shutdown()
        self.auto_captioner.shutdown()
        self.importer.shutdown()
        self.dataset.shutdown()

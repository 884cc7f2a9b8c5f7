"""Fits the training extras into the main window: the concept list, block tree and memory box in the
form, the preset and settings-file commands, the run queue and the Runs page.

Kept out of ``main_window.py`` so that the window stays a frame that rooms add to: the window calls
:func:`install` once, :meth:`Extras.set_project` when another project opens and
:meth:`Extras.shutdown` when it closes.  GUI thread only.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from PySide6.QtGui import QAction
from PySide6.QtWidgets import QLabel

from desktop_app.lazy_page import LazyPage
from desktop_app.runs.run_queue import QUEUE_FILE, QueueRunner, RunQueue
from desktop_app.train.block_tree import BlockTree
from desktop_app.train.concept_summary import ConceptSummary
from desktop_app.train.config_files import ask_save_preset, load_config_file, save_config_file
from desktop_app.train.form_groups import FIRST_CONCEPT_FIELDS
from desktop_app.train.image_counts import ImageCounter, dataset_images
from desktop_app.train.memory_box import MemoryBox
from trainer.config import Config
from trainer.project import Project

if TYPE_CHECKING:
    from desktop_app.runs.queue_view import QueueView
    from desktop_app.runs.runs_page import RunsPage
    from desktop_app.window_api import Window


class Extras:
    def __init__(self, window: Window) -> None:
        self.window = window
        panel = window.hyperparameters_panel
        # Every concept at the top of the Dataset group, from the Dataset page's store.
        self.concepts = ConceptSummary(window.concept_store, window.project.root)
        panel.add_to_group("dataset", self.concepts, first=True)
        self.concepts.editRequested.connect(self.show_concept)
        self.class_sets_note = QLabel("Each concept has its own class set: see the concepts under Dataset.")
        self.class_sets_note.setObjectName("classSetsNote")
        self.class_sets_note.setProperty("role", "subtle")
        self.class_sets_note.setWordWrap(True)
        panel.add_to_group("dreambooth", self.class_sets_note)
        window.concept_store.conceptsChanged.connect(self._follow_concept_count)
        self._follow_concept_count()
        self.block_tree = BlockTree(window.config_model)
        panel.add_to_group("frozen", self.block_tree)
        self.memory_box = MemoryBox(window.config_model, window.session)
        panel.add_to_group("memory", self.memory_box)
        self.block_tree.countsChanged.connect(self.memory_box.set_parameters)
        # The plan's caches by the dataset's real image count: the Dataset page's counts, or, until it is opened,
        # the concepts' folders counted on a worker thread.
        self.image_counter = ImageCounter(window.concept_store, lambda: self.window.project.root, window)
        window.concept_store.countsChanged.connect(
            lambda: self.memory_box.set_image_count(dataset_images(window.concept_store)))
        window.concept_store.conceptsChanged.connect(self._count_images)
        window.config_model.valueChanged.connect(
            lambda name, _value: self._count_images() if name in ("dataset.path", "concepts") else None)
        self._count_images()

        self.queue = RunQueue(window.project.root / QUEUE_FILE, window)
        self.queue_runner = QueueRunner(self.queue, window.session, window.start_run, window)
        # The Runs page (history and the queue's list) is built the first time it is shown.
        self.runs_frame = LazyPage(self._build_runs_page)
        window.add_page(self.runs_frame, "Runs")

        window.controls.savePresetRequested.connect(lambda: ask_save_preset(window))
        window.controls.queueRequested.connect(self.queue_current)
        self._add_menu_actions()

    def _add_menu_actions(self) -> None:
        window = self.window
        quit_action = window.menu_actions["quit"]
        file_menu = next(a.menu() for a in window.menuBar().actions() if a.menu() is not None
                         and quit_action in a.menu().actions())
        first = file_menu.actions()[file_menu.actions().index(quit_action) - 1]  # the separator above Quit
        for key, text, slot in (("load_config", "&Load settings from TOML…", lambda: load_config_file(window)),
                                ("save_config", "Save settings as &TOML…", lambda: save_config_file(window)),
                                ("save_preset", "Save settings as a &preset…", lambda: ask_save_preset(window))):
            action = QAction(text, window)
            action.triggered.connect(slot)
            file_menu.insertAction(first, action)
            window.menu_actions[key] = action
        file_menu.insertSeparator(window.menu_actions["load_config"])
        queue = QAction("Add these settings to the &queue", window)
        queue.triggered.connect(self.queue_current)
        run_menu = window.menu_actions["start"].associatedObjects()[-1]
        run_menu.addAction(queue)  # type: ignore[union-attr]
        window.menu_actions["queue"] = queue
        # Like the Queue button: only settings that could start can be queued.
        window.config_model.errorsChanged.connect(lambda: queue.setEnabled(window.config_model.is_valid()))
        queue.setEnabled(window.config_model.is_valid())

    @property
    def runs_page(self) -> RunsPage:
        return self.runs_frame.page()  # type: ignore[return-value]

    @property
    def queue_view(self) -> QueueView:
        return self.runs_page.queue_view

    def _build_runs_page(self) -> RunsPage:
        from desktop_app.runs.queue_view import QueueView
        from desktop_app.runs.runs_page import RunsPage

        page = RunsPage(lambda: self.window.project.runs(), self.window.session,
                        QueueView(self.queue, self.queue_runner))
        page.useConfigRequested.connect(self.use_config)
        page.resumeRequested.connect(self.window.resume_run)
        return page

    def show_concept(self, index: int) -> None:
        """Open the Dataset page on one concept (a card's name was clicked on the Train page)."""
        self.window.concept_store.select(index)
        self.window.show_page(self.window.dataset_panel)

    def _count_images(self) -> None:
        if self.window.dataset_page.built_page() is None:  # once built, the Dataset page counts them itself
            self.image_counter.count_missing()

    def _follow_concept_count(self) -> None:
        several = self.window.concept_store.count() > 1
        self.window.hyperparameters_panel.hide_fields(FIRST_CONCEPT_FIELDS if several else frozenset())
        self.class_sets_note.setVisible(several)  # where the DreamBooth group's class fields went

    def queue_current(self) -> None:
        config = self.window.config_model.config
        if config is None or not self.window.config_model.is_valid():
            return
        entry = self.queue.add(config)
        self.window.statusBar().showMessage(f"Queued “{entry.label}” ({len(self.queue.entries)} waiting): "
                                            "see the Runs page", 5000)

    def use_config(self, config: Config) -> None:
        window = self.window
        if window.session.is_active():
            return
        if window.config_model.config != config and not window.ask(
                window, "Use these settings?", "Replace the current settings with this run's?"):
            return
        window.config_model.load(config)
        window.show_page(window.splitter)

    def set_project(self, project: Project) -> None:
        self.concepts.set_project_root(project.root)
        self._count_images()
        self.queue.load(project.root / QUEUE_FILE)
        runs_page = self.runs_frame.built_page()
        if runs_page is not None:
            runs_page.refresh()  # type: ignore[attr-defined]

    def shutdown(self) -> None:
        self.queue_runner.pause()
        self.block_tree.shutdown()
        self.memory_box.shutdown()
        self.image_counter.shutdown()
        runs_page = self.runs_frame.built_page()
        if runs_page is not None:
            runs_page.sample_grid.shutdown()  # type: ignore[attr-defined]
        self.window.preview_panel.sample_grid.shutdown()


def install(window: Window) -> Extras:
    return Extras(window)

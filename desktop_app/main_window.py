"""The main window: pages (Dataset, Train, …) under the preset chooser and Start / Pause / Stop.

Layout: tabs in the order the work goes — the Dataset page (curation needs the full width), then
the Train page, a splitter with how to learn (the form, in a scroll area) beside what is happening
(the live preview, the widest, because it is what a person watches while a run goes).  Starting a
run shows the Train page, and so does opening a toy project (it has no images to curate).  The
status bar keeps the run's state, step, speed and time left in view whichever page is open.

Objects: ``session`` (the trainer process bridge), ``config_model`` (the settings being edited,
autosaved to the project), ``run_model`` (what the views show about the run).  Widgets only
subscribe to these models' signals.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from PySide6.QtCore import QSettings, Qt, QTimer
from PySide6.QtGui import QCloseEvent
from PySide6.QtWidgets import QMainWindow, QMessageBox, QSplitter, QTabWidget, QVBoxLayout, QWidget

from desktop_app.controls import ControlBar
from desktop_app.dataset.concept_store import ConceptStore
from desktop_app.lazy_page import LazyPage
from desktop_app.learn.room import install as install_learn
from desktop_app.menus import build_menus
from desktop_app.page_wiring import install as install_extras
from desktop_app.paths import all_presets
from desktop_app.preview.preview_panel import PreviewPanel
from desktop_app.preview.run_model import Notice, RunModel
from desktop_app.session import SessionState, TrainingSession
from desktop_app.status_bar import RunStatusBar
from desktop_app.stop_control import ChooseFn, StopControl, ask_choice
from desktop_app.train.config_model import ConfigModel
from desktop_app.train.hyperparameters_panel import HyperparametersPanel
from trainer.config import Config, ConfigError, resolve_paths
from trainer.errors import BAD_INPUT_ERRORS
from trainer.families import is_toy
from trainer.memory_plan import plan_overrides
from trainer.project import Project
from trainer.runfolder import RunFolder, unique_run_dir

if TYPE_CHECKING:
    from desktop_app.dataset import DatasetPanel
    from desktop_app.merge import MergePanel

AskFn = Callable[[QWidget, str, str], bool]
AUTOSAVE_DELAY_MS = 400


def ask_yes_no(parent: QWidget, title: str, question: str) -> bool:
    answer = QMessageBox.question(parent, title, question, QMessageBox.StandardButton.Yes
                                  | QMessageBox.StandardButton.No, QMessageBox.StandardButton.No)
    return answer == QMessageBox.StandardButton.Yes


class MainWindow(QMainWindow):
    def __init__(self, project: Project, presets: list[Path] | None = None, *, ask: AskFn = ask_yes_no,
                 choose: ChooseFn = ask_choice, settings: QSettings | None = None,
                 parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("mainWindow")
        self.project = project
        self.ask = ask  # injectable: tests answer the questions
        self.settings = settings

        self.session = TrainingSession(self)
        # Stop / Stop now without saving / closing during a run: the questions, never a kill on its own.
        self.stop_control = StopControl(self, self.session, ask, choose, self)
        self.stop_control.closeNow.connect(self.close)
        self.config_model = ConfigModel(project.config, self)
        self.run_model = RunModel(self.session, self)

        self.controls = ControlBar(self.session, self.config_model, all_presets() if presets is None else presets)
        # The concepts outlive the Dataset page's widgets: the Train page's concept cards read them at once,
        # while the Dataset page (and the Runs and Merge pages) are built the first time they are shown.
        self.concept_store = ConceptStore(self.config_model, self)
        self.dataset_page = LazyPage(self._build_dataset_panel)
        self.hyperparameters_panel = HyperparametersPanel(self.config_model)
        self.preview_panel = PreviewPanel(self.run_model)
        # The Train page: how to learn (the form) beside what is happening (the live preview).
        self.splitter = QSplitter(Qt.Orientation.Horizontal)
        self.splitter.setObjectName("panelSplitter")
        self.splitter.setChildrenCollapsible(False)
        for panel, minimum in ((self.hyperparameters_panel, 360), (self.preview_panel, 460)):
            panel.setMinimumWidth(minimum)
            self.splitter.addWidget(panel)
        self.splitter.setSizes([440, 840])
        self.splitter.setStretchFactor(1, 1)
        # Pages, in the order the work goes: curate the data, then train and watch; later pages
        # (run history, merging) are added by their rooms with add_page.
        self.pages = QTabWidget()
        self.pages.setObjectName("pages")
        self.pages.setDocumentMode(True)
        self.add_page(self.dataset_page, "Dataset")
        self.train_page = self.add_page(self.splitter, "Train")
        central = QWidget()
        layout = QVBoxLayout(central)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.setSpacing(0)
        layout.addWidget(self.controls)
        layout.addWidget(self.pages, 1)
        self.setCentralWidget(central)
        self.status_bar = RunStatusBar(self.run_model)
        self.setStatusBar(self.status_bar)
        self.menu_actions = build_menus(self)
        self.extras = install_extras(self)  # block tree, memory box, presets, queue, Runs page
        self.merge_page = LazyPage(self._build_merge_panel)
        self.add_page(self.merge_page, "Merge")  # runs trainer/merge through the merge-* tasks
        self.learn = install_learn(self)  # the guide's lessons, each a live experiment
        self.config_model.configChanged.connect(self._suggest_merge_prompts)

        self._autosave_timer = QTimer(self)
        self._autosave_timer.setSingleShot(True)
        self._autosave_timer.setInterval(AUTOSAVE_DELAY_MS)
        self._autosave_timer.timeout.connect(self.save_settings)
        self.config_model.configChanged.connect(lambda _config: self._autosave_timer.start())
        self.config_model.valueChanged.connect(self._on_value_changed)
        self.controls.startRequested.connect(self.start_training)
        self.controls.stopNowRequested.connect(self.stop_control.stop_now)
        self.controls.presetChosen.connect(self._on_preset_chosen)
        self.session.stateChanged.connect(self._on_state_changed)
        self.run_model.noticeChanged.connect(self._on_notice)
        self.run_model.continueWithPlan.connect(self.continue_with_plan)
        self._show_project()
        self._restore_layout()

    def add_page(self, widget: QWidget, title: str) -> int:
        """Add a top-level page (tab); returns its index."""
        return self.pages.addTab(widget, title)

    def show_page(self, widget: QWidget) -> None:
        """Open the page ``widget`` is (or is on: a page built late sits in its LazyPage frame)."""
        page: QWidget | None = widget
        while page is not None and self.pages.indexOf(page) < 0:
            page = page.parentWidget()
        if page is not None:
            self.pages.setCurrentWidget(page)

    # ------------------------------------------------------------------ pages built when first shown

    @property
    def dataset_panel(self) -> DatasetPanel:
        return self.dataset_page.page()  # type: ignore[return-value]

    @property
    def merge_panel(self) -> MergePanel:
        return self.merge_page.page()  # type: ignore[return-value]

    def _build_dataset_panel(self) -> QWidget:
        from desktop_app.dataset import DatasetPanel

        panel = DatasetPanel(self.config_model, self.project.root, store=self.concept_store)
        panel.setEnabled(not self.session.is_active())
        return panel

    def _build_merge_panel(self) -> QWidget:
        from desktop_app.merge import MergePanel

        panel = MergePanel()
        # The Merge page previews with the project's sample prompts ("a sks shape" for the shapes demo).
        panel.suggest_prompts(list(self.config_model.config.sampling.prompts))
        return panel

    def _suggest_merge_prompts(self, config: Config) -> None:
        panel = self.merge_page.built_page()
        if panel is not None:
            panel.suggest_prompts(list(config.sampling.prompts))  # type: ignore[attr-defined]

    # ------------------------------------------------------------------ project and settings

    def set_project(self, project: Project) -> None:
        self.save_settings()
        self.project = project
        dataset_panel = self.dataset_page.built_page()
        if dataset_panel is not None:
            dataset_panel.set_project_root(project.root)  # type: ignore[attr-defined]
        else:
            self.concept_store.select(0)  # another project: its first concept, when the page is opened
        self.config_model.load(project.config)
        self.run_model.set_notice(None)
        self.extras.set_project(project)
        self._show_project()

    def _show_project(self) -> None:
        self.setWindowTitle(f"{self.project.name} — Kamaal")
        self.status_bar.show_project(self.project.name, self.project.root)
        self.run_model.plan(int(self.config_model.value("training.steps")))
        self.run_model.set_earlier_runs(len(self.project.runs()))
        self._show_mode()
        if is_toy(self.config_model.value("model.architecture")):
            self.show_page(self.splitter)  # nothing to curate: the settings and the preview are the work
        if self.settings is not None:
            self.settings.setValue("lastProject", str(self.project.root))

    def _show_mode(self) -> None:
        self.preview_panel.show_mode(self.config_model.mode, str(self.config_model.value("model.architecture")))

    def save_settings(self) -> None:
        """Write the edited settings to project.toml now (autosave calls this shortly after each edit)."""
        self._autosave_timer.stop()
        config = self.config_model.config
        if config is None or config == self.project.config:
            return
        try:
            self.project.save(config)
        except OSError as exc:
            self.statusBar().showMessage(f"Could not save the settings: {exc}", 10_000)

    def _on_value_changed(self, name: str, value: object) -> None:
        if name in ("mode", "model.architecture"):
            self._show_mode()
        elif name == "training.steps" and isinstance(value, int):
            self.run_model.plan(value)

    def _on_preset_chosen(self, choice: tuple[str, Config]) -> None:
        name, config = choice
        edited = self.controls.current_preset() is None
        if edited and not self.ask(self, "Use preset?", f"Replace the current settings with the preset “{name}”?"):
            return
        self.config_model.load(config)
        self.statusBar().showMessage(f"Settings from the preset “{name}”", 5000)

    # ------------------------------------------------------------------ running

    def start_training(self) -> None:
        config = self.config_model.config
        if config is None or self.session.is_active():
            return
        self.save_settings()
        self.config_model.clear_external_errors()
        self.start_run(config)

    def start_run(self, config: Config) -> bool:
        """Start a run of ``config`` (the form's settings, or a queued run's) in a new run folder."""
        if self.session.is_active():
            return False
        run_dir = unique_run_dir(self.project.runs_dir, config.output.run_name)
        self.run_model.begin(run_dir, config.training.steps, config.mode)
        return self.session.start(resolve_paths(config, self.project.root), run_dir)

    def resume_run(self, run_dir: Path) -> None:
        if self.session.is_active():
            return
        try:
            config = RunFolder.open(run_dir).load_config()
        except ConfigError as exc:
            self.run_model.set_notice(Notice("error", "Cannot resume this run", str(exc)))
            return
        self.run_model.begin(run_dir, config.training.steps, config.mode, resumed=True)
        self.session.resume(run_dir)

    def continue_with_plan(self, run_dir: Path, changes: dict[str, object]) -> None:
        """After an out-of-memory: the smaller plan's changes into the run's config (validated, the config as run so
        far kept beside it), then the run resumes from its checkpoint."""
        if self.session.is_active():
            return
        run = RunFolder(Path(run_dir))
        latest = run.latest_checkpoint()
        try:
            run.change_config(plan_overrides(changes), latest[0] if latest else 0)
        except (*BAD_INPUT_ERRORS, OSError) as exc:  # a refused value, another trainer on the folder, a full disk
            self.run_model.set_notice(Notice("error", "Cannot apply the smaller plan", str(exc), run_dir=str(run_dir)))
            return
        self.resume_run(run.root)

    def _on_state_changed(self, state: str) -> None:
        idle = not self.session.is_active()
        self.hyperparameters_panel.set_editable(idle)
        dataset_panel = self.dataset_page.built_page()
        if dataset_panel is not None:
            dataset_panel.setEnabled(idle)
        if state == SessionState.STARTING:
            self.show_page(self.splitter)
            self.preview_panel.tabs.setCurrentIndex(0)

    def _on_notice(self) -> None:
        notice = self.run_model.notice
        if notice is not None and notice.field:
            self.config_model.set_external_error(notice.field, notice.text.partition(": ")[2] or notice.text)

    # ------------------------------------------------------------------ closing

    def closeEvent(self, event: QCloseEvent) -> None:
        if self.session.is_active():
            # Asks (stop with a save and close / wait / stop now without saving / cancel); the window stays
            # open and responsive while the trainer saves, and closes once it has exited (closeNow).
            event.ignore()
            self.stop_control.close_requested()
            return
        self.save_settings()
        if self.settings is not None:
            self.settings.setValue("window/geometry", self.saveGeometry())
            self.settings.setValue("window/trainSplitter", self.splitter.saveState())
            self.settings.setValue("window/page", self.pages.currentIndex())
        dataset_panel = self.dataset_page.built_page()
        if dataset_panel is not None:
            dataset_panel.shutdown()  # type: ignore[attr-defined]
        self.extras.shutdown()
        self.learn.shutdown()
        self.session.close()
        event.accept()

    def _restore_layout(self) -> None:
        self.resize(1280, 800)
        if self.settings is None:
            return
        geometry = self.settings.value("window/geometry")
        splitter = self.settings.value("window/trainSplitter")
        if geometry is not None:
            self.restoreGeometry(geometry)
        if splitter is not None:
            self.splitter.restoreState(splitter)
        page = self.settings.value("window/page")
        if page is not None and 0 <= int(page) < self.pages.count():
            self.pages.setCurrentIndex(int(page))

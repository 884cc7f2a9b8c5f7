"""What the window's helpers (menus, page wiring, settings files) use of the main window, as a protocol.

They take the window as an argument; typing it as this protocol instead of ``MainWindow`` keeps them from
importing the module that imports them (``main_window`` builds the menus and installs the pages), so the
window is a frame that rooms add to, not a knot of imports.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from PySide6.QtGui import QAction
    from PySide6.QtWidgets import QMenuBar, QSplitter, QStatusBar, QTabWidget, QWidget

    from desktop_app.controls import ControlBar
    from desktop_app.dataset import DatasetPanel
    from desktop_app.dataset.concept_store import ConceptStore
    from desktop_app.lazy_page import LazyPage
    from desktop_app.merge import MergePanel
    from desktop_app.preview.preview_panel import PreviewPanel
    from desktop_app.session import TrainingSession
    from desktop_app.stop_control import StopControl
    from desktop_app.train.config_model import ConfigModel
    from desktop_app.train.hyperparameters_panel import HyperparametersPanel
    from trainer.config import Config
    from trainer.project import Project


class Window(Protocol):
    config_model: ConfigModel
    project: Project
    session: TrainingSession
    menu_actions: dict[str, QAction]
    controls: ControlBar
    concept_store: ConceptStore
    dataset_page: LazyPage
    hyperparameters_panel: HyperparametersPanel
    preview_panel: PreviewPanel
    splitter: QSplitter
    pages: QTabWidget
    stop_control: StopControl
    ask: Callable[..., bool]

    @property
    def dataset_panel(self) -> DatasetPanel: ...  # built when first asked for

    @property
    def merge_panel(self) -> MergePanel: ...

    def statusBar(self) -> QStatusBar: ...

    def menuBar(self) -> QMenuBar: ...

    def show_page(self, widget: QWidget) -> None: ...

    def add_page(self, widget: QWidget, title: str) -> int: ...

    def set_project(self, project: Project) -> None: ...

    def start_training(self) -> None: ...

    def start_run(self, config: Config) -> bool: ...

    def resume_run(self, run_dir: Path) -> None: ...

    def close(self) -> Any: ...

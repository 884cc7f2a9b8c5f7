"""The class-images section of the selected concept: how many class images exist, how many prior
preservation needs, and a button that generates the missing ones in a trainer process, with
progress and Cancel.  A further concept may have no class set (it then trains without one).

Generation needs torch, so it runs as the ``generate-class-images`` task (``trainer.tasks``) in
a spawn child through ``desktop_app.tasks.TaskRunner``; this widget only sends the resolved
config and shows the runner's signals.  Counting the folder runs in a worker process (``jobs.count_images``).

GUI thread only (the runner's signals arrive on it).
"""

from __future__ import annotations

from functools import partial
from pathlib import Path

from PySide6.QtWidgets import QHBoxLayout, QLabel, QProgressBar, QPushButton, QWidget

from desktop_app.dataset import jobs
from desktop_app.dataset.concept_store import ConceptStore
from desktop_app.dataset.processes import Processes
from desktop_app.tasks import TaskRunner
from trainer.config import resolve_paths
from trainer.protocol import Failed, TaskDone, TaskProgress

TASK = "generate-class-images"
DEFAULT_CLASS_DIR = "datasets/class"


class ClassImagesBox(QWidget):
    def __init__(self, store: ConceptStore, processes: Processes, project_root: Path | None,
                 parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("classImages")
        self.store = store
        self.config = store.config
        self.processes = processes
        self.project_root = project_root
        self.task_name = TASK  # tests swap in a light fake task
        self.have = 0
        self.runner = TaskRunner(self)
        self.status = QLabel()
        self.status.setObjectName("classImagesStatus")
        self.status.setWordWrap(True)
        self.generate = QPushButton("Generate")
        self.generate.setObjectName("generateClassImages")
        self.generate.clicked.connect(self.start)
        self.progress = QProgressBar()
        self.progress.setObjectName("classImagesProgress")
        self.progress.setMaximumWidth(220)
        self.progress.hide()
        self.cancel = QPushButton("Cancel")
        self.cancel.setObjectName("cancelClassImages")
        self.cancel.clicked.connect(self.runner.cancel)
        self.cancel.hide()
        layout = QHBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(self.status, 1)
        layout.addWidget(self.progress)
        layout.addWidget(self.cancel)
        layout.addWidget(self.generate)
        self.runner.progress.connect(self._progress)
        self.runner.done.connect(self._done)
        self.runner.failed.connect(self._failed)
        self.runner.busyChanged.connect(self._busy)
        self.config.valueChanged.connect(self._value_changed)
        store.currentChanged.connect(self._concept_selected)
        self.message = ""
        self.recount()

    # ---------------------------------------------------------------- counting

    def folder(self) -> Path | None:
        value = str(self.store.value("class_dir") or "")
        if not value:
            return None
        path = Path(value).expanduser()
        return path if path.is_absolute() or self.project_root is None else self.project_root / path

    def needed(self) -> int:
        if not self.config.value("dreambooth.prior_preservation"):
            return 0
        if self.store.current > 0 and not self.store.value("class_dir"):
            return 0  # a further concept without a class set
        return int(self.store.value("num_class_images"))

    def recount(self) -> None:
        folder = self.folder()
        if folder is None:
            self._counted(folder, 0)  # nothing to count: no worker process started for it
            return
        self.processes.run(partial(jobs.count_images, folder), lambda n: self._counted(folder, n), lambda _e: None)

    def _counted(self, folder: Path | None, count: int) -> None:
        if folder == self.folder():
            self.have = count
            self._show()

    def _value_changed(self, name: str, _value: object) -> None:
        if name.startswith("dreambooth.") or name in ("model.path", "concepts"):
            self.recount()

    def _concept_selected(self, _index: int) -> None:
        if not self.runner.is_busy():
            self.message = ""
        self.recount()

    def default_folder(self) -> str:
        """Where generated class images go when the concept names no folder."""
        if self.store.current == 0:
            return DEFAULT_CLASS_DIR
        return f"{DEFAULT_CLASS_DIR}-{Path(str(self.store.value('path'))).name or self.store.current + 1}"

    def _show(self) -> None:
        needed, missing = self.needed(), max(0, self.needed() - self.have)
        folder = self.store.value("class_dir") or self.default_folder()
        if not self.config.value("dreambooth.prior_preservation"):
            text = "Prior preservation is off: no class images needed."
        elif not needed and self.store.current > 0 and not self.store.value("class_dir"):
            text = ("This concept has no class set: it trains without class images. Name a folder and a prompt "
                    "to add one.")
        elif not needed:
            text = "No class images needed."
        elif missing:
            text = (f"<b>{self.have} of {needed}</b> class images in <i>{folder}</i>: prior preservation needs "
                    f"{missing} more of “{self.store.value('class_prompt')}”.")
        else:
            text = f"<b>{self.have} of {needed}</b> class images in <i>{folder}</i>: enough for prior preservation."
        self.status.setText(text + (f"<br>{self.message}" if self.message else ""))
        self.generate.setText(f"Generate {missing}" if missing else "Generate")
        self.generate.setEnabled(bool(missing) and not self.runner.is_busy())

    # ---------------------------------------------------------------- generating

    def start(self) -> bool:
        if self.runner.is_busy():
            return False
        if not self.store.value("class_dir"):
            self.store.set_value("class_dir", self.default_folder())
        config = self.config.config
        if config is None:
            self.message = "Fix the settings marked in red first."
            self._show()
            return False
        resolved = resolve_paths(config, self.project_root or Path.cwd())
        self.message = ""
        self.progress.setRange(0, 0)  # busy until the first progress report
        return self.runner.start(self.task_name, {"config": resolved.to_dict(), "concept": self.store.current})

    def _busy(self, busy: bool) -> None:
        self.progress.setVisible(busy)
        self.cancel.setVisible(busy)
        self.generate.setVisible(not busy)
        if not busy:
            self.recount()
        self._show()

    def _progress(self, event: TaskProgress) -> None:
        self.progress.setRange(0, max(event.total, 1))
        self.progress.setValue(event.done)
        self.progress.setFormat(event.message or "%v of %m")
        self.progress.setToolTip(event.message)

    def _done(self, event: TaskDone) -> None:
        generated = int(event.result.get("generated", 0))
        self.message = f"Generated {generated} class image{'s' if generated != 1 else ''}."

    def _failed(self, event: Failed) -> None:
        self.message = ("Cancelled; the images made so far are kept." if event.kind == "cancelled"
                        else f"<span style='color:#b42318'>{event.message}</span>")

    def shutdown(self) -> None:
        self.runner.close()

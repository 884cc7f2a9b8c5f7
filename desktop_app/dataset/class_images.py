"""The class-images section: how many class images exist, how many prior preservation needs, and a
button that generates the missing ones in a trainer process, with progress and Cancel.

Generation needs torch, so it runs as the ``generate-class-images`` task (``trainer.tasks``) in
a spawn child through ``desktop_app.tasks.TaskRunner``; this widget only sends the resolved
config and shows the runner's signals.  Counting the folder runs on a worker thread.

GUI thread only (the runner's signals arrive on it).
"""

from __future__ import annotations

from pathlib import Path

from PySide6.QtWidgets import QHBoxLayout, QLabel, QProgressBar, QPushButton, QWidget

from desktop_app.config_model import ConfigModel
from desktop_app.dataset.background import Background
from desktop_app.tasks import TaskRunner
from trainer.config import resolve_paths
from trainer.dataset import list_images
from trainer.protocol import Failed, TaskDone, TaskProgress

TASK = "generate-class-images"
DEFAULT_CLASS_DIR = "datasets/class"


def count_images(folder: Path | None) -> int:
    if folder is None or not folder.is_dir():
        return 0
    return len(list_images(folder).items)


class ClassImagesBox(QWidget):
    def __init__(self, config: ConfigModel, background: Background, project_root: Path | None,
                 parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("classImages")
        self.config = config
        self.background = background
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
        config.valueChanged.connect(self._value_changed)
        self.message = ""
        self.recount()

    # ---------------------------------------------------------------- counting

    def folder(self) -> Path | None:
        value = str(self.config.value("dreambooth.class_dir") or "")
        if not value:
            return None
        path = Path(value).expanduser()
        return path if path.is_absolute() or self.project_root is None else self.project_root / path

    def needed(self) -> int:
        return int(self.config.value("dreambooth.num_class_images")) if self.config.value(
            "dreambooth.prior_preservation") else 0

    def recount(self) -> None:
        folder = self.folder()
        self.background.run(lambda _r, _c: count_images(folder), lambda n: self._counted(folder, n), lambda _e: None)

    def _counted(self, folder: Path | None, count: int) -> None:
        if folder == self.folder():
            self.have = count
            self._show()

    def _value_changed(self, name: str, _value: object) -> None:
        if name.startswith("dreambooth.") or name == "model.path":
            self.recount()

    def _show(self) -> None:
        needed, missing = self.needed(), max(0, self.needed() - self.have)
        folder = self.config.value("dreambooth.class_dir") or DEFAULT_CLASS_DIR
        if not needed:
            text = "Prior preservation is off: no class images needed."
        elif missing:
            text = (f"<b>{self.have} of {needed}</b> class images in <i>{folder}</i>: prior preservation needs "
                    f"{missing} more of “{self.config.value('dreambooth.class_prompt')}”.")
        else:
            text = f"<b>{self.have} of {needed}</b> class images in <i>{folder}</i>: enough for prior preservation."
        self.status.setText(text + (f"<br>{self.message}" if self.message else ""))
        self.generate.setText(f"Generate {missing}" if missing else "Generate")
        self.generate.setEnabled(bool(missing) and not self.runner.is_busy())

    # ---------------------------------------------------------------- generating

    def start(self) -> bool:
        if self.runner.is_busy():
            return False
        if not self.config.value("dreambooth.class_dir"):
            self.config.set_value("dreambooth.class_dir", DEFAULT_CLASS_DIR)
        config = self.config.config
        if config is None:
            self.message = "Fix the settings marked in red first."
            self._show()
            return False
        resolved = resolve_paths(config, self.project_root or Path.cwd())
        self.message = ""
        self.progress.setRange(0, 0)  # busy until the first progress report
        return self.runner.start(self.task_name, {"config": resolved.to_dict()})

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

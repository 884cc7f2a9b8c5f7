"""The queue on the Runs page: the runs waiting to train, reorderable and removable while one runs.

Model-first: a view of :class:`~desktop_app.runs.run_queue.RunQueue`; the buttons edit the model and
the list redraws on ``changed``.  GUI thread only.
"""

from __future__ import annotations

from PySide6.QtCore import Qt
from PySide6.QtWidgets import (
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QListWidget,
    QListWidgetItem,
    QPushButton,
    QVBoxLayout,
    QWidget,
)

from desktop_app.runs.run_queue import QueueRunner, RunQueue


class QueueView(QGroupBox):
    def __init__(self, queue: RunQueue, runner: QueueRunner, parent: QWidget | None = None) -> None:
        super().__init__("Queue", parent)
        self.setObjectName("queueView")
        self.queue, self.runner = queue, runner
        self.list = QListWidget()
        self.list.setObjectName("queueList")
        self.list.setAlternatingRowColors(True)
        self.list.currentRowChanged.connect(lambda _row: self._update_buttons())
        self.hint = QLabel()
        self.hint.setProperty("role", "subtle")
        self.hint.setWordWrap(True)
        self.run_button = QPushButton("Run queue")
        self.run_button.setObjectName("runQueueButton")
        self.run_button.clicked.connect(self._toggle)
        self.up_button = QPushButton("Up")
        self.down_button = QPushButton("Down")
        self.remove_button = QPushButton("Remove")
        self.up_button.clicked.connect(lambda: self._move(-1))
        self.down_button.clicked.connect(lambda: self._move(+1))
        self.remove_button.clicked.connect(self._remove)
        buttons = QHBoxLayout()
        buttons.addWidget(self.run_button)
        buttons.addStretch(1)
        for button in (self.up_button, self.down_button, self.remove_button):
            buttons.addWidget(button)
        layout = QVBoxLayout(self)
        layout.addWidget(self.hint)
        layout.addWidget(self.list, 1)
        layout.addLayout(buttons)
        queue.changed.connect(self.refresh)
        queue.runningChanged.connect(lambda _running: self.refresh())
        runner.runStarted.connect(lambda _entry: self.refresh())
        self.refresh()

    def refresh(self) -> None:
        selected = self.selected_id()
        self.list.clear()
        for position, entry in enumerate(self.queue.entries, start=1):
            item = QListWidgetItem(f"{position}. {entry.label}   —   {entry.description}")
            item.setData(Qt.ItemDataRole.UserRole, entry.id)
            item.setToolTip(entry.config.to_toml())
            self.list.addItem(item)
            if entry.id == selected:
                self.list.setCurrentItem(item)
        current = self.runner.current
        if self.queue.problem:
            text = self.queue.problem
        elif self.queue.running and current is not None:
            text = f"Running “{current.label}”; {len(self.queue.entries)} waiting. Edit the queue at any time."
        elif self.queue.entries:
            text = "Waiting. Run queue trains them one after another, top first."
        else:
            text = "Empty. Press Queue above to add the current settings; queued runs train one after another."
        self.hint.setText(text)
        self.run_button.setText("Pause queue" if self.queue.running else "Run queue")
        self.run_button.setToolTip("Start no further queued runs (the current one goes on)" if self.queue.running
                                   else "Train the queued runs one after another")
        self._update_buttons()

    def selected_id(self) -> int | None:
        item = self.list.currentItem()
        return item.data(Qt.ItemDataRole.UserRole) if item is not None else None

    def select(self, row: int) -> None:
        self.list.setCurrentRow(row)

    def _update_buttons(self) -> None:
        has = self.selected_id() is not None
        row = self.list.currentRow()
        self.up_button.setEnabled(has and row > 0)
        self.down_button.setEnabled(has and row < self.list.count() - 1)
        self.remove_button.setEnabled(has)
        self.run_button.setEnabled(self.queue.running or bool(self.queue.entries))

    def _toggle(self) -> None:
        if self.queue.running:
            self.runner.pause()
        else:
            self.runner.start()

    def _move(self, offset: int) -> None:
        entry_id = self.selected_id()
        if entry_id is not None:
            self.queue.move(entry_id, offset)

    def _remove(self) -> None:
        entry_id = self.selected_id()
        if entry_id is not None:
            self.queue.remove(entry_id)

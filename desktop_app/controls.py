"""The bar above the panels: which preset the settings come from, and Start / Pause / Stop,
Sample now / Save now, and Queue (add these settings to the run queue).

Buttons follow the session's state (and Start the settings' validity); nothing else decides
whether they are enabled, so they cannot get out of step with the trainer.

The chooser lists the presets' names at once, but reads and validates the files (about 60 of them, the
chooser's share of the window's start) right after the window's first frame, or sooner when code asks which
preset the settings are (:meth:`ControlBar.current_preset`): until then it shows no preset.
"""

from __future__ import annotations

from pathlib import Path

from PySide6.QtCore import Qt, QTimer, Signal
from PySide6.QtGui import QPaintEvent
from PySide6.QtWidgets import QComboBox, QHBoxLayout, QLabel, QPushButton, QStyle, QToolButton, QWidget

from desktop_app.paths import preset_summary, user_presets_dir
from desktop_app.session import SessionState, TrainingSession
from desktop_app.train.config_model import ConfigModel
from trainer.config import Config, ConfigError, load_config
from trainer.project import same_settings

CUSTOM = "Custom settings"


class ControlBar(QWidget):
    startRequested = Signal()
    stopNowRequested = Signal()  # Stop pressed again while stopping: the window warns, then may stop at once
    queueRequested = Signal()
    savePresetRequested = Signal()
    presetChosen = Signal(object)  # (name, Config)

    def __init__(self, session: TrainingSession, model: ConfigModel, presets: list[Path],
                 parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("controlBar")
        self.session, self.model = session, model
        self._presets: dict[str, Config] = {}
        self._unread: list[Path] | None = list(presets)  # listed, not read yet; None once read
        self._read_scheduled = False
        self.preset_combo = QComboBox()
        self.preset_combo.setObjectName("presetCombo")
        self.preset_combo.setMinimumWidth(180)
        for path in presets:
            self._list_preset(path)
        self.preset_combo.setCurrentIndex(-1)  # no preset shown until they are read
        self.preset_combo.activated.connect(self._on_preset_activated)
        self.save_preset_button = QToolButton()
        self.save_preset_button.setObjectName("savePresetButton")
        self.save_preset_button.setText("Save as preset…")
        self.save_preset_button.setToolTip("Keep these settings as a preset of your own")
        self.save_preset_button.clicked.connect(self.savePresetRequested)

        style = self.style()
        self.start_button = self._button("startButton", "Start", QStyle.StandardPixmap.SP_MediaPlay)
        self.start_button.setDefault(True)
        self.start_button.clicked.connect(self.startRequested)
        self.pause_button = self._button("pauseButton", "Pause", QStyle.StandardPixmap.SP_MediaPause)
        self.pause_button.clicked.connect(self._on_pause_clicked)
        self.stop_button = self._button("stopButton", "Stop", QStyle.StandardPixmap.SP_MediaStop)
        self.stop_button.clicked.connect(self._on_stop_clicked)
        self.sample_button = self._button("sampleNowButton", "Sample now",
                                          QStyle.StandardPixmap.SP_FileDialogContentsView)
        self.sample_button.setToolTip("Draw preview samples at the next step (the toy network: send its weights)")
        self.sample_button.clicked.connect(session.sample_now)
        self.save_button = self._button("saveNowButton", "Save now", QStyle.StandardPixmap.SP_DialogSaveButton)
        self.save_button.setToolTip("Write a resumable checkpoint at the next step")
        self.save_button.clicked.connect(session.save_now)
        self.queue_button = self._button("queueButton", "Queue", QStyle.StandardPixmap.SP_FileDialogListView)
        self.queue_button.setToolTip("Add these settings to the run queue (Runs page); queued runs start one "
                                     "after another")
        self.queue_button.clicked.connect(self.queueRequested)
        self._style = style

        layout = QHBoxLayout(self)
        layout.setContentsMargins(10, 8, 10, 4)
        layout.setSpacing(8)
        label = QLabel("Preset")
        label.setBuddy(self.preset_combo)
        layout.addWidget(label)
        layout.addWidget(self.preset_combo)
        layout.addWidget(self.save_preset_button)
        layout.addStretch(1)
        for button in (self.sample_button, self.save_button):
            layout.addWidget(button)
        layout.addSpacing(12)
        for button in (self.queue_button, self.start_button, self.pause_button, self.stop_button):
            layout.addWidget(button)

        session.stateChanged.connect(self.update_buttons)
        model.errorsChanged.connect(self.update_buttons)
        model.errorsChanged.connect(self.show_matching_preset)
        self.update_buttons()
        self.show_matching_preset()

    def _button(self, name: str, text: str, icon: QStyle.StandardPixmap) -> QPushButton:
        button = QPushButton(self.style().standardIcon(icon), text)
        button.setObjectName(name)
        button.setMinimumWidth(96)
        return button

    # ------------------------------------------------------------------ presets

    @property
    def presets(self) -> dict[str, Config]:
        """The presets offered, by name (read now if they were not yet)."""
        self.read_presets()
        return self._presets

    def presets_read(self) -> bool:
        return self._unread is None

    def read_presets(self) -> None:
        """Read and validate the listed preset files (once), leave out the broken ones, select the matching one."""
        if self._unread is None:
            return
        unread, self._unread = self._unread, None
        for path in unread:
            self._read_preset(path)
        self.show_matching_preset()

    def paintEvent(self, event: QPaintEvent) -> None:
        """Painted with the window's first frame: the preset files are read in the next turn of the event loop."""
        if self._unread is not None and not self._read_scheduled:
            self._read_scheduled = True
            QTimer.singleShot(0, self.read_presets)
        super().paintEvent(event)

    def add_preset(self, path: Path) -> bool:
        """Offer the preset file (again, if it was re-saved) and select the preset the settings equal; a broken
        file is left out, not fatal."""
        self.read_presets()
        if not self._read_preset(path):
            return False
        self.show_matching_preset()
        return True

    def _list_preset(self, path: Path) -> int:
        """The chooser's item for the preset file (added if it is new)."""
        index = self.preset_combo.findData(path.stem)
        if index < 0:
            mine = path.parent == user_presets_dir()
            self.preset_combo.addItem(f"{path.stem} (mine)" if mine else path.stem, path.stem)
            index = self.preset_combo.count() - 1
        return index

    def _read_preset(self, path: Path) -> bool:
        """Read the preset file into the chooser, its summary as the item's tooltip; a broken one leaves the list."""
        try:
            config = load_config(path)
        except ConfigError:
            index = self.preset_combo.findData(path.stem)
            if index >= 0 and path.stem not in self._presets:
                self.preset_combo.removeItem(index)  # listed before it was read
            return False
        self._presets[path.stem] = config
        summary = "Your own preset." if path.parent == user_presets_dir() else preset_summary(path)
        self.preset_combo.setItemData(self._list_preset(path), summary, Qt.ItemDataRole.ToolTipRole)
        return True

    def current_preset(self) -> str | None:
        self.read_presets()
        return self.preset_combo.currentData()

    def show_matching_preset(self) -> None:
        """Select the preset the settings equal, or "Custom settings" once they were edited (once the presets
        were read: before, the chooser shows none)."""
        if self._unread is not None:
            return
        config = self.model.config
        match = next((name for name, preset in self._presets.items()
                      if config is not None and same_settings(preset, config)), None)
        custom = self.preset_combo.findData(None)
        if match is None and custom < 0:
            self.preset_combo.insertItem(0, CUSTOM, None)
        elif match is not None and custom >= 0:
            self.preset_combo.removeItem(custom)
        self.preset_combo.setCurrentIndex(self.preset_combo.findData(match))

    def _on_preset_activated(self, index: int) -> None:
        name = self.preset_combo.itemData(index)
        self.read_presets()
        config = self.model.config
        chosen = self._presets.get(name) if name is not None else None  # None: "Custom settings", or a broken file
        if chosen is not None and not (config is not None and same_settings(chosen, config)):
            self.presetChosen.emit((name, chosen))
        self.show_matching_preset()

    # ------------------------------------------------------------------ run buttons

    def update_buttons(self, *_: object) -> None:
        state = self.session.state
        idle = not self.session.is_active()
        self.start_button.setEnabled(idle and self.model.is_valid())
        self.start_button.setToolTip("Start training with these settings" if self.model.is_valid()
                                     else "Fix the settings marked in red first")
        self.preset_combo.setEnabled(idle)
        self.save_preset_button.setEnabled(self.model.is_valid())
        self.queue_button.setEnabled(self.model.is_valid())
        running = state in (SessionState.TRAINING, SessionState.PAUSED)
        self.sample_button.setEnabled(running)
        self.save_button.setEnabled(running)
        paused = state == SessionState.PAUSED
        self.pause_button.setEnabled(state in (SessionState.TRAINING, SessionState.PAUSED))
        self.pause_button.setText("Resume" if paused else "Pause")
        self.pause_button.setIcon(self._style.standardIcon(
            QStyle.StandardPixmap.SP_MediaPlay if paused else QStyle.StandardPixmap.SP_MediaPause))
        self.pause_button.setToolTip("Continue training" if paused else
                                     "Hold training after this step; the model stays in memory")
        stopping = state == SessionState.STOPPING
        self.stop_button.setEnabled(not idle)
        self.stop_button.setText("Stop now…" if stopping else "Stop")
        self.stop_button.setToolTip("The trainer is saving. Stop it at once, without saving (asks first)"
                                    if stopping else "Stop after this step, saving a checkpoint and the outputs")

    def _on_pause_clicked(self) -> None:
        if self.session.state == SessionState.PAUSED:
            self.session.resume_training()
        else:
            self.session.pause()

    def _on_stop_clicked(self) -> None:
        if self.session.state == SessionState.STOPPING:
            self.stopNowRequested.emit()  # never a kill without the person's confirmation
        else:
            self.session.stop(save=True)

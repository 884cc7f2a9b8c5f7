"""Stopping a run as a person expects: a Stop waits for the save for as long as the trainer reports
progress, and ending the trainer at once ("Stop now without saving") is only ever the person's choice,
after a warning that says what is lost.

:class:`StopControl` asks the questions around that: Run ▸ Stop now without saving… (and the Stop
button while a stop is under way), the trainer gone quiet for a long time while stopping (the session's
``stalled``), and closing the window while a run trains or saves.  It never kills on its own.

Threads: GUI thread only.  The questions are modal, which runs a nested event loop: the window keeps
repainting and the session keeps draining events.  A question that the run's end makes moot is closed.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from PySide6.QtCore import QObject, QTimer, Signal
from PySide6.QtWidgets import QApplication, QMainWindow, QMessageBox, QWidget

from desktop_app.session import SessionState, TrainingSession, describe_activity

AskFn = Callable[[QWidget, str, str], bool]
ChooseFn = Callable[[QWidget, str, str, Sequence[str]], "str | None"]

QUESTION_NAME = "stopQuestion"
KEEP_WAITING = "Keep waiting"
KEEP_TRAINING = "Keep training"
STOP_WITHOUT_SAVING = "Stop without saving"
STOP_NOW = "Stop now without saving"
WAIT_THEN_CLOSE = "Wait, then close"
CANCEL = "Cancel"
LOSS_WARNING = ("Stopping now ends the trainer at once: whatever it has not finished writing is lost — if it is "
                "still saving the checkpoint or the outputs, this run ends without them. Checkpoints saved "
                "earlier stay in the run folder.")


def ask_choice(parent: QWidget, title: str, text: str, choices: Sequence[str]) -> str | None:
    """A warning box with one button per choice; the first is the default and what Esc picks, so it must
    be a safe one.  Returns the chosen text, or None when the box was closed by code."""
    box = QMessageBox(QMessageBox.Icon.Warning, title, text, QMessageBox.StandardButton.NoButton, parent)
    box.setObjectName(QUESTION_NAME)
    buttons = [box.addButton(choice, QMessageBox.ButtonRole.ActionRole) for choice in choices]
    box.setDefaultButton(buttons[0])
    box.setEscapeButton(buttons[0])
    box.exec()
    clicked = box.clickedButton()
    return clicked.text() if clicked in buttons else None


def format_minutes(seconds: float) -> str:
    minutes, secs = divmod(max(0, round(seconds)), 60)
    return f"{minutes}:{secs:02d}"


class StopControl(QObject):
    closeNow = Signal()  # the person asked to close, and the trainer has exited: the window closes

    def __init__(self, window: QMainWindow, session: TrainingSession, ask: AskFn, choose: ChooseFn,
                 parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.window, self.session = window, session
        self._ask, self._choose = ask, choose
        self.closing = False  # close the window once the trainer has exited
        self._asking = False
        session.stalled.connect(self._on_stalled)
        session.stateChanged.connect(self._on_state)

    def _doing(self) -> str:
        activity = self.session.last_activity
        return describe_activity(activity) if activity is not None else "finishing the current step"

    def _question(self, title: str, text: str, choices: Sequence[str]) -> str:
        """Ask; a box closed by code (the run ended meanwhile) counts as the first, safe, choice."""
        self._asking = True
        try:
            return self._choose(self.window, title, text, choices) or choices[0]
        finally:
            self._asking = False

    # ------------------------------------------------------------------ stop now without saving

    def stop_now(self) -> None:
        """Run ▸ Stop now without saving…: warn, and stop only if the person confirms."""
        state = self.session.state
        if state in (SessionState.STARTING, SessionState.TRAINING, SessionState.PAUSED):
            answer = self._question(
                "Stop without saving?",
                "Stop the run after this step without saving?\n\nNo checkpoint and no outputs are written: what it "
                "learned since its last checkpoint is lost. (Stop saves both.)",
                [KEEP_TRAINING, STOP_WITHOUT_SAVING])
            if answer == STOP_WITHOUT_SAVING:
                self.session.stop(save=False)  # cooperative: the trainer ends cleanly after this step
        elif state == SessionState.STOPPING:
            answer = self._question(
                "Stop now without saving?",
                f"The trainer is stopping: {self._doing()} (for {format_minutes(self.session.stopping_for_s)})."
                f"\n\n{LOSS_WARNING}", [KEEP_WAITING, STOP_NOW])
            if answer == STOP_NOW:
                self.session.kill()

    def _on_stalled(self, silent_s: float) -> None:
        if self._asking or self.session.state != SessionState.STOPPING:
            return
        answer = self._question(
            "The trainer has gone quiet",
            f"The trainer has said nothing for {format_minutes(silent_s)} while stopping (last: {self._doing()})."
            "\n\nIt may be working on one long piece — a big checkpoint on a slow disk — or it may be stuck. "
            f"Kamaal keeps waiting unless you choose otherwise.\n\n{LOSS_WARNING}", [KEEP_WAITING, STOP_NOW])
        if answer == STOP_NOW:
            self.session.kill()

    # ------------------------------------------------------------------ closing the window

    def close_requested(self) -> None:
        """The window is asked to close while a run is active: ask, then stop with a save and close once the
        trainer has exited (the window stays open and responsive until then), or stay."""
        if self._asking:
            return
        if self.session.state != SessionState.STOPPING:
            question = ("A training run is in progress.\n\nStop it — saving a checkpoint and the outputs — "
                        "and close Kamaal when that is done?")
            self._asking = True
            try:
                agreed = self._ask(self.window, "Stop training and close?", question)
            finally:
                self._asking = False
            if not agreed:
                return
            self.closing = True
            self.session.stop(save=True)
        else:
            answer = self._question(
                "Close while the trainer saves?",
                f"The trainer is stopping: {self._doing()} (for {format_minutes(self.session.stopping_for_s)})."
                "\n\nKamaal can wait and close when it is done (the window stays open until then), or stop it "
                f"now.\n\n{LOSS_WARNING}", [WAIT_THEN_CLOSE, STOP_NOW, CANCEL])
            self.closing = answer != CANCEL
            if answer == STOP_NOW:
                self.session.kill()
        if self.closing:
            self.window.statusBar().showMessage("Kamaal closes when the trainer has finished saving…")
        self._close_if_done()

    # ------------------------------------------------------------------ the run ended

    def _on_state(self, _state: str) -> None:
        if self.session.is_active():
            return
        box = QApplication.activeModalWidget()
        if box is not None and box.objectName() == QUESTION_NAME:
            box.done(0)  # moot now: the trainer is gone
        self._close_if_done()

    def _close_if_done(self) -> None:
        if self.closing and not self.session.is_active():
            self.closing = False
            QTimer.singleShot(0, self.closeNow.emit)

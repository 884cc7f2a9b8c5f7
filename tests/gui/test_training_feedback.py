"""While the trainer does something other than steps, the window says what; speed and time left appear
only once they mean something; a command that has to wait says so."""

from __future__ import annotations

import time

from desktop_app.preview.preview_panel import PreviewPanel
from desktop_app.preview.run_model import RunModel
from desktop_app.session import SessionState, TrainingSession
from desktop_app.status_bar import RunStatusBar
from trainer.protocol import Activity, Paused, Sample
from trainer.telemetry import Speedometer


class FakeProcess:
    def __init__(self) -> None:
        self.sent: list[object] = []

    def send(self, command: object) -> None:
        self.sent.append(command)


def test_the_first_step_is_warm_up_not_a_speed():
    """One slow first step (first kernels, caches) made the ETA read '19:15:47 left' after step 1."""
    speed = Speedometer(total_steps=400)
    time.sleep(0.3)  # the slow first step
    speed.tick()
    assert speed.it_per_s == 0.0 and speed.eta_s(1) == 0.0  # nothing to show yet
    for _ in range(3):
        time.sleep(0.01)
        speed.tick()
    assert speed.it_per_s > 20 and speed.eta_s(4) < 396 * 0.1


def views(qtbot) -> tuple[TrainingSession, RunModel, PreviewPanel, RunStatusBar]:
    """A session, its run model, and the two places that show the run's status: the stats line and the bar."""
    session = TrainingSession()
    model = RunModel(session)
    panel, bar = PreviewPanel(model), RunStatusBar(model)
    qtbot.addWidget(panel)
    qtbot.addWidget(bar)
    return session, model, panel, bar


def test_set_up_work_is_shown_while_starting(qtbot):
    session, _model, panel, bar = views(qtbot)
    session._set_state(SessionState.STARTING)
    session._dispatch(Activity("loading the base model", 0, 0))
    session.eventsDrained.emit()
    assert panel.stats.text() == "Starting: loading the base model…"
    session._dispatch(Activity("generating class images", 3, 12))
    session.eventsDrained.emit()
    assert "generating class images 3/12" in panel.stats.text()
    assert bar.activity_bar.isVisibleTo(bar) and bar.activity_bar.value() == 3


def test_a_command_that_has_to_wait_says_so_and_the_activity_ends_with_its_result(qtbot):
    session = TrainingSession()
    model = RunModel(session)
    session._process = FakeProcess()  # type: ignore[assignment]
    session._set_state(SessionState.TRAINING)
    session._dispatch(Paused(step=5))
    session._dispatch(Activity("drawing samples", 3, 8))  # Sample now, while paused
    with qtbot.waitSignal(session.notice) as notice:
        session.resume_training()
    assert notice.args[0] == "Resuming once the trainer has finished drawing samples 3/8…"
    session._dispatch(Sample(5, ("/x/p00-seed1.png",), ("a",), (1,)))
    assert session.last_activity is None and model.activity is None  # nothing left saying "drawing"
    with qtbot.waitSignal(session.notice) as notice:
        session.sample_now()
    assert notice.args[0] == "Drawing a preview now…"
    session._process = None


def test_a_stopped_run_says_stopped_and_earlier_runs_are_pointed_to(qtbot):
    from trainer.protocol import Finished

    session, model, panel, bar = views(qtbot)
    model.set_earlier_runs(3)
    assert "3 earlier runs are on the Runs page" in panel.stats.text() and "No run yet" not in panel.stats.text()
    session._set_state(SessionState.TRAINING)
    session._dispatch(Finished(run_dir="/r", step=40, stopped=True))
    assert "Stopped" in bar.state_label.text() and "Finished" not in bar.state_label.text()
    session._set_state(SessionState.TRAINING)
    session._dispatch(Finished(run_dir="/r", step=400, stopped=False))
    assert "Finished" in bar.state_label.text()

"""The window drives the real trainer: start, watch, pause, resume, stop; and the ways a run can end badly."""

from __future__ import annotations

import os
import signal

import numpy as np
import psutil
from PySide6.QtCore import Qt

from desktop_app.session import SessionState
from tests.gui.conftest import LONG_RUN, SHORT_RUN
from trainer.runfolder import RunFolder

START_TIMEOUT_MS = 90_000  # the child imports torch: seconds on a loaded 2-core machine
STOP_TIMEOUT_MS = 60_000


def click(qtbot, button) -> None:
    assert button.isEnabled(), f"{button.objectName()} is disabled"
    qtbot.mouseClick(button, Qt.MouseButton.LeftButton)


def buttons(window) -> tuple[bool, bool, bool]:
    controls = window.controls
    return controls.start_button.isEnabled(), controls.pause_button.isEnabled(), controls.stop_button.isEnabled()


def start_and_wait_for_training(qtbot, window) -> None:
    session = window.session
    with qtbot.waitSignals([session.started, session.progress, session.weights], timeout=START_TIMEOUT_MS):
        click(qtbot, window.controls.start_button)


def plotted(curve) -> int:
    """How many points a pyqtgraph curve shows."""
    x, _ = curve.getData()
    return 0 if x is None else len(x)


def child_gone(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


def test_start_pause_resume_stop_from_the_window(qtbot, make_window):
    window = make_window(LONG_RUN)
    window.show()
    session, controls = window.session, window.controls
    assert buttons(window) == (True, False, False)

    start_and_wait_for_training(qtbot, window)
    assert session.state == SessionState.TRAINING
    assert buttons(window) == (False, True, True)
    assert not window.hyperparameters_panel.form.isEnabled()  # the run uses its snapshot
    qtbot.waitUntil(lambda: len(window.run_model.curves.steps) >= 2)
    # The plot and heatmaps catch up within RunModel.VIEW_INTERVAL_MS (they are not redrawn per event).
    loss_plot = window.preview_panel.loss_plot
    qtbot.waitUntil(lambda: plotted(loss_plot.train_curve) >= 2 and plotted(loss_plot.heldout_curve) >= 1,
                    timeout=2000)
    weights_view = window.preview_panel.weights_view
    assert [view.title.text for view in weights_view.views] == ["<b>input_layer</b>", "<b>hidden_layer</b>",
                                                                  "<b>output_layer</b>"]
    first_weights = weights_view.views[1].weight_image.image.copy()
    assert "Training" in window.status_bar.state_label.text()
    assert "Step" in window.status_bar.step_label.text()
    qtbot.waitUntil(lambda: not window.status_bar.speed_label.isHidden(), timeout=2000)
    assert "it/s" in window.status_bar.speed_label.text()

    with qtbot.waitSignal(session.paused, timeout=STOP_TIMEOUT_MS) as paused:
        click(qtbot, controls.pause_button)
    assert session.state == SessionState.PAUSED
    assert controls.pause_button.text() == "Resume"
    assert "Paused" in window.status_bar.state_label.text()

    with qtbot.waitSignal(session.resumed, timeout=STOP_TIMEOUT_MS) as resumed:
        click(qtbot, controls.pause_button)
    assert resumed.args[0].step == paused.args[0].step  # no step was taken while paused
    assert controls.pause_button.text() == "Pause"
    with qtbot.waitSignal(session.weights, timeout=STOP_TIMEOUT_MS) as weights:
        pass  # it trains on after resuming
    assert weights.args[0].step >= paused.args[0].step
    # The heatmaps follow the learning: the hidden layer's picture is not the one first drawn.
    qtbot.waitUntil(lambda: not np.array_equal(weights_view.views[1].weight_image.image, first_weights),
                    timeout=2000)

    with qtbot.waitSignal(session.finished, timeout=STOP_TIMEOUT_MS) as finished:
        click(qtbot, controls.stop_button)
    assert finished.args[0].stopped
    qtbot.waitUntil(lambda: session.pid is None, timeout=10_000)
    assert buttons(window) == (True, False, False)
    assert window.hyperparameters_panel.form.isEnabled()
    banner = window.preview_panel.banner
    assert banner.isVisible() and "Stopped at step" in banner.title.text()

    run = RunFolder.open(session.run_dir)
    assert run.root.parent == window.project.runs_dir
    assert run.config_path.is_file() and run.log_path.is_file()
    assert run.read_metrics(), "metrics.jsonl is empty"
    checkpoints = run.checkpoints()
    assert checkpoints and (checkpoints[-1][1] / "state.json").is_file()
    assert checkpoints[-1][0] == finished.args[0].step
    assert any(run.output_dir.iterdir()), "no outputs were written"
    assert run.load_config().training.steps == 100000  # the snapshot is the config that ran


def test_a_killed_trainer_is_reported_and_a_new_run_can_start(qtbot, make_window):
    window = make_window(LONG_RUN)
    session = window.session
    start_and_wait_for_training(qtbot, window)
    pid = session.pid
    assert pid is not None

    with qtbot.waitSignal(session.failed, timeout=1000) as failed:  # within a second
        os.kill(pid, signal.SIGKILL)
    assert failed.args[0].kind == "crash"
    assert "SIGKILL" in failed.args[0].message
    assert session.state == SessionState.FAILED
    banner = window.preview_panel.banner
    assert not banner.isHidden() and "stopped unexpectedly" in banner.title.text()
    assert "SIGKILL" in banner.text.text()
    assert "Failed" in window.status_bar.state_label.text()
    assert buttons(window) == (True, False, False)
    assert session.pid is None and child_gone(pid)

    for override in SHORT_RUN:  # a new, short run from the same window
        name, value = override.split("=")
        window.config_model.set_value(name, int(value))
    with qtbot.waitSignal(session.finished, timeout=START_TIMEOUT_MS) as finished:
        click(qtbot, window.controls.start_button)
    assert finished.args[0].step == 30 and not finished.args[0].stopped
    assert not banner.isHidden() and "Finished" in banner.title.text()


def test_settings_the_worker_refuses_are_named_in_the_window(qtbot, make_window, tmp_path):
    missing = tmp_path / "nowhere" / "toy.safetensors"
    window = make_window([*SHORT_RUN, f'model.path="{missing}"'], preset="toy-frozen")
    assert window.controls.start_button.isEnabled()  # only the trainer can tell the file is missing

    with qtbot.waitSignal(window.session.failed, timeout=START_TIMEOUT_MS) as failed:
        click(qtbot, window.controls.start_button)
    assert failed.args[0].kind == "input"
    assert failed.args[0].message.startswith("model.path:")

    banner = window.preview_panel.banner
    assert not banner.isHidden()
    assert "refused" in banner.title.text()
    assert "model.path" in banner.text.text() and "file not found" in banner.text.text()
    field_error = window.hyperparameters_panel.rows["model.path"].error
    assert not field_error.isHidden() and "file not found" in field_error.text()
    qtbot.waitUntil(lambda: window.session.pid is None, timeout=10_000)
    assert buttons(window) == (True, False, False)

    window.hyperparameters_panel.editor("model.path").line.setText("")  # editing the field clears its mark
    window.hyperparameters_panel.editor("model.path")._emit()
    assert field_error.isHidden()


def test_closing_during_a_run_asks_then_stops_with_a_save(qtbot, make_window, answers):
    window = make_window(LONG_RUN)
    window.show()
    session = window.session
    start_and_wait_for_training(qtbot, window)
    pid = session.pid

    answers.reply = False  # "keep training"
    window.close()
    assert len(answers.questions) == 1 and "in progress" in answers.questions[0]
    assert window.isVisible() and session.state == SessionState.TRAINING

    answers.reply = True
    with qtbot.waitSignal(session.finished, timeout=STOP_TIMEOUT_MS) as finished:
        window.close()
    assert finished.args[0].stopped
    qtbot.waitUntil(lambda: not window.isVisible() and session.pid is None, timeout=10_000)
    assert len(answers.questions) == 2
    assert child_gone(pid)
    assert RunFolder.open(finished.args[0].run_dir).latest_checkpoint() is not None


def test_a_stopped_run_resumes_from_its_checkpoint(qtbot, make_window):
    window = make_window(LONG_RUN)
    session = window.session
    start_and_wait_for_training(qtbot, window)
    with qtbot.waitSignal(session.finished, timeout=STOP_TIMEOUT_MS) as finished:
        click(qtbot, window.controls.stop_button)
    stopped_at, run_dir = finished.args[0].step, finished.args[0].run_dir

    with qtbot.waitSignal(session.started, timeout=START_TIMEOUT_MS) as started:
        window.resume_run(run_dir)
    assert started.args[0].start_step == stopped_at
    steps = window.run_model.curves.steps
    assert steps and steps[0] < stopped_at and steps == sorted(set(steps))  # the history so far, once
    with qtbot.waitSignal(session.finished, timeout=STOP_TIMEOUT_MS) as finished:
        click(qtbot, window.controls.stop_button)
    assert finished.args[0].step >= stopped_at and finished.args[0].run_dir == run_dir

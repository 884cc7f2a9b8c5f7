"""The Runs page lists past runs, reopens their settings and resumes an interrupted one; the queue runs
real toy runs one after another and can be edited while one trains."""

from __future__ import annotations

import os
import signal

from PySide6.QtCore import Qt

from desktop_app.runs.run_history import summarize
from desktop_app.runs.run_queue import QUEUE_FILE, RunQueue
from desktop_app.stop_control import KEEP_WAITING, STOP_NOW
from tests.gui.conftest import LONG_RUN, SHORT_RUN, configured
from trainer.runfolder import RunFolder

START_TIMEOUT_MS = 120_000
STOP_TIMEOUT_MS = 60_000


def click(qtbot, button) -> None:
    assert button.isEnabled(), f"{button.objectName() or button.text()} is disabled"
    qtbot.mouseClick(button, Qt.MouseButton.LeftButton)


def test_history_lists_runs_reopens_settings_and_resumes_an_interrupted_run(qtbot, make_window, answers):
    window = make_window([*LONG_RUN, "output.checkpoint_every=20", "output.run_name=first"])
    session, page = window.session, window.extras.runs_page
    with qtbot.waitSignal(session.checkpointSaved, timeout=START_TIMEOUT_MS):
        window.start_training()
    with qtbot.waitSignal(session.failed, timeout=STOP_TIMEOUT_MS) as failed:
        os.kill(session.pid, signal.SIGKILL)  # a crash: no outputs, a checkpoint to go on from
    assert failed.args[0].kind == "crash"
    qtbot.waitUntil(lambda: session.pid is None, timeout=10_000)

    window.show_page(page)
    page.refresh()
    assert page.list.topLevelItemCount() == 1
    summary = page.selected()
    assert summary.name.startswith("first-") and summary.status == "interrupted" and summary.resumable
    assert summary.checkpoint_step >= 20 and "interrupted" in page.list.topLevelItem(0).text(3)
    assert len(page.curves.curves.train) > 0  # its curves, read from metrics.jsonl
    assert 'run_name = "first"' in page.settings_view.toPlainText()
    assert not page.open_button.isHidden() and page.open_button.isEnabled()

    with qtbot.waitSignal(session.started, timeout=START_TIMEOUT_MS) as started:
        click(qtbot, page.resume_button)
    assert started.args[0].start_step == summary.checkpoint_step and started.args[0].run_dir == str(summary.root)
    assert window.pages.currentWidget() is window.splitter  # the resumed run is watched on the Train page
    assert len(window.run_model.curves.train) > 0  # its history so far is in the live plot
    with qtbot.waitSignal(session.finished, timeout=STOP_TIMEOUT_MS):
        session.stop(save=True)
    qtbot.waitUntil(lambda: session.pid is None, timeout=10_000)
    page.refresh()
    after = page.selected()
    assert after.status == "stopped" and after.outputs and page.outputs_view.count() == len(after.outputs)

    window.config_model.set_value("training.steps", 5)  # edit, then take the old run's settings back
    click(qtbot, page.use_button)
    assert answers.questions[-1].startswith("Use these settings?")
    assert window.config_model.config == after.config
    assert window.pages.currentWidget() is window.splitter


def test_queue_runs_two_toy_runs_in_order_and_can_be_edited_mid_run(qtbot, make_window):
    window = make_window(SHORT_RUN)
    session, queue, view = window.session, window.extras.queue, window.extras.queue_view
    slow = ["toy.step_delay_ms=5", "training.steps=200"]
    for name in ("first", "second", "third"):
        queue.add(configured("toy", [*SHORT_RUN, *slow, f"output.run_name={name}"]))
    assert [e.label for e in RunQueue(window.project.root / QUEUE_FILE).entries] == ["first", "second", "third"]
    window.show_page(window.extras.runs_page)

    with qtbot.waitSignal(session.started, timeout=START_TIMEOUT_MS) as started:
        click(qtbot, view.run_button)
    assert "first-" in started.args[0].run_dir
    assert view.run_button.text() == "Pause queue" and "Running “first”" in view.hint.text()
    # Mid-run: move "third" to the front, then drop "second".
    view.select(1)
    click(qtbot, view.up_button)
    assert [e.label for e in queue.entries] == ["third", "second"]
    view.select(1)
    click(qtbot, view.remove_button)
    assert [e.label for e in queue.entries] == ["third"]
    assert [e.label for e in RunQueue(window.project.root / QUEUE_FILE).entries] == ["third"]  # persisted

    qtbot.waitUntil(lambda: not queue.running and not session.is_active() and not queue.entries,
                    timeout=2 * START_TIMEOUT_MS)
    runs = window.project.runs()
    assert [run.root.name.split("-")[0] for run in runs] == ["first", "third"]  # in queue order
    assert all(summarize(run.root).status == "finished" for run in runs)
    assert view.run_button.text() == "Run queue" and not view.run_button.isEnabled()


def test_stopping_a_queued_run_pauses_the_queue(qtbot, make_window):
    window = make_window(SHORT_RUN)
    session, queue = window.session, window.extras.queue
    queue.add(configured("toy", [*LONG_RUN, "output.run_name=long"]))
    queue.add(configured("toy", [*SHORT_RUN, "output.run_name=later"]))
    with qtbot.waitSignal(session.progress, timeout=START_TIMEOUT_MS):
        window.extras.queue_runner.start()
    with qtbot.waitSignal(session.finished, timeout=STOP_TIMEOUT_MS):
        session.stop(save=True)
    qtbot.waitUntil(lambda: session.pid is None, timeout=10_000)
    qtbot.wait(200)
    assert not queue.running and [e.label for e in queue.entries] == ["later"]  # waits for the person
    assert not session.is_active()


def test_a_queued_runs_stop_waits_for_its_save_and_stop_now_pauses_the_queue(qtbot, make_window, answers,
                                                                              monkeypatch):
    monkeypatch.setenv("KAMAAL_TEST_SLOW_SAVE", "3/0.5")  # each part of the save: 3 s, a word every 0.5 s
    window = make_window(SHORT_RUN)
    session, queue = window.session, window.extras.queue
    session.silence_timeout_s = 1.0  # scaled: a save three times longer than this, reporting all along
    for name in ("first", "second"):
        queue.add(configured("toy", [*LONG_RUN, f"output.run_name={name}"]))
    queue.add(configured("toy", [*SHORT_RUN, "output.run_name=later"]))

    with qtbot.waitSignal(session.progress, timeout=START_TIMEOUT_MS):
        window.extras.queue_runner.start()
    with qtbot.waitSignal(session.finished, timeout=STOP_TIMEOUT_MS) as finished:
        session.stop(save=True)
    run = RunFolder.open(finished.args[0].run_dir)
    assert run.root.name.startswith("first-") and run.latest_checkpoint()[0] == finished.args[0].step
    assert (run.output_dir / "first.safetensors").is_file() and not answers.offered
    qtbot.waitUntil(lambda: session.pid is None, timeout=10_000)
    assert not queue.running and [e.label for e in queue.entries] == ["second", "later"]

    with qtbot.waitSignal(session.progress, timeout=START_TIMEOUT_MS):
        window.extras.queue_runner.start()
    session.stop(save=True)
    qtbot.waitUntil(lambda: session.last_activity is not None, timeout=STOP_TIMEOUT_MS)  # it is saving
    answers.choices = [STOP_NOW]  # the person's explicit choice, after the warning
    with qtbot.waitSignal(session.failed, timeout=STOP_TIMEOUT_MS) as failed:
        window.menu_actions["stop_now"].trigger()
    assert answers.offered == [(KEEP_WAITING, STOP_NOW)] and "not finished writing is lost" in answers.questions[-1]
    assert failed.args[0].kind == "killed" and "as you chose" in failed.args[0].message
    qtbot.waitUntil(lambda: session.pid is None, timeout=10_000)
    qtbot.wait(200)
    assert not queue.running and [e.label for e in queue.entries] == ["later"]  # waits for the person
    assert not session.is_active()
    assert window.preview_panel.banner.title.text() == "Stopped without saving"


def test_sample_now_and_save_now_beside_pause_and_stop(qtbot, make_window):
    window = make_window(LONG_RUN)
    session, controls = window.session, window.controls
    assert not controls.sample_button.isEnabled() and not controls.save_button.isEnabled()
    with qtbot.waitSignal(session.progress, timeout=START_TIMEOUT_MS):
        window.start_training()
    qtbot.waitUntil(lambda: controls.sample_button.isEnabled(), timeout=10_000)
    with qtbot.waitSignal(session.checkpointSaved, timeout=STOP_TIMEOUT_MS) as saved:
        click(qtbot, controls.save_button)
    assert "checkpoints/step-" in saved.args[0].path.replace("\\", "/")
    with qtbot.waitSignal(session.weights, timeout=STOP_TIMEOUT_MS):  # the toy network's "sample" is its weights
        click(qtbot, controls.sample_button)
    with qtbot.waitSignal(session.finished, timeout=STOP_TIMEOUT_MS) as finished:
        click(qtbot, controls.stop_button)
    assert finished.args[0].stopped and finished.args[0].outputs  # Stop saves the outputs
    qtbot.waitUntil(lambda: session.pid is None, timeout=10_000)


def test_outputs_say_which_tool_each_file_is_for(tmp_path):
    from pathlib import Path

    from desktop_app.runs.runs_page import output_purpose
    from trainer.config import config_from_dict

    def config(mode: str, **sections):
        return config_from_dict({"mode": mode, "model": {"architecture": "sd15", "path": str(tmp_path)},
                                 "dataset": {"path": str(tmp_path)}, **sections})

    lora, full = config("lora"), config("dreambooth", dreambooth={"train_full_unet": True})
    assert "kohya" in output_purpose(Path("run.safetensors"), lora)
    assert "ComfyUI" in output_purpose(Path("diffusers/pytorch_lora_weights.safetensors"), lora)
    assert "single-file checkpoint" in output_purpose(Path("run.safetensors"), full)
    assert "from_pretrained" in output_purpose(Path("diffusers/model_index.json"), full)
    assert output_purpose(Path("diffusers/unet/diffusion_pytorch_model.safetensors"), full) == ""
    assert output_purpose(Path("toy.safetensors"), None) == ""

"""The window names a run folder that another trainer holds, instead of training beside it."""

from __future__ import annotations

import os

from tests.gui.conftest import SHORT_RUN
from tests.trainer.helpers import toy_config
from trainer.runfolder import RunFolder
from trainer.runlock import lock_run_folder

START_TIMEOUT_MS = 90_000  # the child imports torch: seconds on a loaded 2-core machine


def test_resuming_a_run_another_trainer_holds_is_refused_by_name(qtbot, make_window, tmp_path):
    window = make_window(SHORT_RUN)
    run = RunFolder.create(toy_config(training={"steps": 10}), tmp_path / "held-run")

    with lock_run_folder(run.root), qtbot.waitSignal(window.session.failed, timeout=START_TIMEOUT_MS) as failed:
        window.resume_run(run.root)

    event = failed.args[0]
    assert event.kind == "input"
    assert event.message.startswith(f"{run.root}: another trainer (process {os.getpid()}) is using this run folder")
    banner = window.preview_panel.banner
    assert not banner.isHidden()
    assert banner.text.text() == event.message and not banner.title.text().startswith("The trainer stopped")
    assert not window.config_model.has_trainer_errors()  # a busy folder marks no setting in the form
    qtbot.waitUntil(lambda: window.session.pid is None, timeout=10_000)
    assert window.controls.start_button.isEnabled()

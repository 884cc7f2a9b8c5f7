"""The Merge page: a checkpoint merge run through the TaskRunner, then its preview beside the inputs."""

from __future__ import annotations

import pytest

from desktop_app.merge import MergePanel
from desktop_app.merge.forms import CheckpointsForm

DONE_WITHIN_MS = 180_000  # a spawn child imports torch and diffusers first; slow on a shared 2-core box


@pytest.fixture
def panel(qtbot, tmp_path, monkeypatch):
    from PySide6.QtWidgets import QApplication

    from desktop_app.style import apply_style

    monkeypatch.setenv("KAMAAL_DATA_DIR", str(tmp_path / "data"))
    apply_style(QApplication.instance())
    panel = MergePanel(preview_root=tmp_path / "previews")
    qtbot.addWidget(panel)
    panel.resize(1280, 760)
    yield panel
    panel.shutdown()


def choose_checkpoints(panel: MergePanel, a, b, out) -> CheckpointsForm:
    panel.operation.setCurrentIndex(next(i for i, f in enumerate(panel.forms) if isinstance(f, CheckpointsForm)))
    form = panel.form
    assert isinstance(form, CheckpointsForm)
    assert not panel.run_button.isEnabled() and "models A and B" in panel.status.text()
    form.a.set_path(str(a))
    form.b.set_path(str(b))
    form.alpha.setValue(0.25)
    form.out.set_path(str(out))
    return form


def run_and_wait(qtbot, panel: MergePanel, button) -> None:
    with qtbot.waitSignal(panel.runner.busyChanged, timeout=DONE_WITHIN_MS, check_params_cb=lambda busy: not busy):
        button.click()
        assert not panel.run_button.isEnabled() and panel.cancel_button.isEnabled()


@pytest.mark.slow
def test_merge_then_preview_side_by_side(qtbot, panel, tmp_path, sd15_a, sd15_b):
    choose_checkpoints(panel, sd15_a, sd15_b, tmp_path / "merged")
    assert panel.run_button.isEnabled() and not panel.preview_button.isEnabled()
    run_and_wait(qtbot, panel, panel.run_button)
    assert (tmp_path / "merged" / "model_index.json").is_file()
    assert str(tmp_path / "merged") in panel.result_note.text()
    assert panel.preview_button.isEnabled()

    panel.prompts.setPlainText("a red circle\na blue square")
    panel.steps.setValue(2)
    run_and_wait(qtbot, panel, panel.preview_button)
    # Rows A, B and the merge; one column per prompt (one seed).
    assert len(panel.grid.images) == 3 * 2
    assert all(not image.pixmap().isNull() for image in panel.grid.images)
    assert (tmp_path / "previews").is_dir() and "Preview written to" in panel.status.text()


def test_incompatible_models_show_the_reason(qtbot, panel, tmp_path, sd15_a, sdxl_a):
    choose_checkpoints(panel, sd15_a, sdxl_a, tmp_path / "never")
    run_and_wait(qtbot, panel, panel.run_button)
    assert "Cannot do this" in panel.result_note.text() and "is SDXL but model A is" in panel.result_note.text()
    assert not (tmp_path / "never").exists() and not panel.preview_button.isEnabled()


def _write_png(path, color) -> str:
    from PIL import Image

    Image.new("RGB", (32, 32), color).save(path)
    return str(path)


def finish(panel: MergePanel, event) -> None:
    """What the runner signals when its task is done (the task itself is not run here)."""
    panel.runner.done.emit(event)
    panel.runner.busyChanged.emit(False)


def test_merge_works_after_two_previews(qtbot, panel, tmp_path, monkeypatch):
    """Showing a preview used to delete the grid's hint label with the old page, so the next Merge click
    (which clears the grid) raised "Internal C++ object (QLabel) already deleted" and did nothing."""
    from trainer.protocol import TaskDone

    started: list[str] = []
    monkeypatch.setattr(panel.runner, "start", lambda task, args: started.append(task))
    choose_checkpoints(panel, tmp_path / "a", tmp_path / "b", tmp_path / "merged")
    panel.run_button.click()
    assert started == ["merge-checkpoints"]
    finish(panel, TaskDone("merge-checkpoints", {"outputs": [str(tmp_path / "merged")]}))
    assert panel.preview_button.isEnabled()

    for n, color in enumerate(("red", "blue")):
        images = [_write_png(tmp_path / f"{n}-{row}.png", color) for row in range(3)]
        panel.preview_button.click()
        assert started[-1] == "merge-preview"
        rows = [{"label": label, "images": [path]} for label, path in zip("ABM", images, strict=True)]
        finish(panel, TaskDone("merge-preview", {"out_dir": str(tmp_path), "columns": ["p"], "rows": rows}))
        assert len(panel.grid.images) == 3 and all(not image.pixmap().isNull() for image in panel.grid.images)

    panel.run_button.click()  # the old code raised here (in the slot) and never started the task
    assert started[-1] == "merge-checkpoints" and len(started) == 4
    from PySide6.QtWidgets import QLabel

    assert panel.grid.images == [] and panel.grid.widget().findChild(QLabel, "mergePreviewHint") is not None
    panel.grid.clear()  # clearing twice is fine too


def test_the_preview_uses_the_projects_sample_prompts_unless_the_person_typed_some(panel):
    panel.suggest_prompts(["a sks shape", "a shape"])
    assert panel.prompts.toPlainText() == "a sks shape\na shape"
    panel.prompts.selectAll()
    panel.prompts.insertPlainText("my own prompt")  # typed, as a person would
    panel.suggest_prompts(["a red star"])
    assert panel.prompts.toPlainText() == "my own prompt"

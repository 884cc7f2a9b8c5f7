"""The hyperparameter form: built from the config's declarations, validated inline, autosaved."""

from __future__ import annotations

from PySide6.QtCore import Qt

from desktop_app.train.config_model import ConfigModel
from desktop_app.train.field_meta import meta_for
from desktop_app.train.hyperparameters_panel import HyperparametersPanel
from trainer.config import Config, load_config
from trainer.project import Project


def type_into(qtbot, line_edit, text: str) -> None:
    line_edit.selectAll()
    qtbot.keyClicks(line_edit, text)


def test_invalid_values_are_marked_and_block_start(qtbot, make_window):
    window = make_window()
    panel, start = window.hyperparameters_panel, window.controls.start_button
    assert start.isEnabled()

    learning_rate = panel.editor("training.learning_rate").line
    type_into(qtbot, learning_rate, "abc")
    error = panel.rows["training.learning_rate"].error
    assert not error.isHidden() and "must be a number" in error.text()
    assert learning_rate.property("invalid") is True
    assert not start.isEnabled() and not window.menu_actions["start"].isEnabled()
    assert not panel.summary.isHidden() and "1 setting to fix" in panel.summary.text()

    type_into(qtbot, learning_rate, "0")  # the config says > 0
    assert "must be > 0" in error.text()
    type_into(qtbot, learning_rate, "3e-4")
    assert error.isHidden() and start.isEnabled() and panel.summary.isHidden()
    assert window.config_model.config.training.learning_rate == 3e-4

    run_name = panel.editor("output.run_name").line
    type_into(qtbot, run_name, "my run!")
    assert "not allowed" in panel.rows["output.run_name"].error.text()
    assert not start.isEnabled()
    type_into(qtbot, run_name, "my-run")
    assert start.isEnabled()

    # A problem that spans two fields is shown on the field it names.
    panel.editor("training.warmup_steps").spin.setValue(5000)
    assert "must be ≤ training.steps" in panel.rows["training.warmup_steps"].error.text()
    assert not start.isEnabled()
    panel.editor("training.steps").spin.setValue(6000)
    assert start.isEnabled()


def test_edits_autosave_to_the_project(qtbot, make_window):
    window = make_window()
    window.hyperparameters_panel.editor("training.batch_size").spin.setValue(7)
    qtbot.waitUntil(lambda: load_config(window.project.config_path).training.batch_size == 7, timeout=3000)
    assert Project.open(window.project.root).config.training.batch_size == 7
    # An invalid edit is never written: project.toml always holds a config that loads.
    type_into(qtbot, window.hyperparameters_panel.editor("training.learning_rate").line, "x")
    window.save_settings()
    assert load_config(window.project.config_path).training.learning_rate == 0.01


def test_form_comes_from_the_config_declarations(qtbot):
    model = ConfigModel(Config())
    panel = HyperparametersPanel(model)
    qtbot.addWidget(panel)
    steps = panel.editor("training.steps")
    assert steps.spin.low == 1 and steps.spin.high == 10_000_000  # the arrows' range (typing is validated)
    assert "Number of optimizer steps" in steps.toolTip() and "Default: 1,000" in steps.toolTip()
    assert "Range: ≥ 1 and ≤ 10,000,000" in steps.toolTip()
    scheduler = panel.editor("training.scheduler").combo
    assert [scheduler.itemData(i) for i in range(scheduler.count())] == [
        "constant", "constant_with_warmup", "linear", "cosine", "cosine_with_restarts", "polynomial"]
    assert type(panel.editor("lora.train_text_encoder")).__name__ == "BoolEditor"
    assert meta_for("training.learning_rate").kind == "scientific"
    assert panel.editor("dataset.resolution").spin.singleStep() == 8  # multiple_of

    def shown() -> set[str]:
        return {name for name, group in panel.groups.items() if not group.isHidden()}

    assert shown() == {"basics", "toy", "optimizer", "output"}  # the toy network: no images, no samples
    mode = panel.editor("mode").combo
    architecture = panel.editor("model.architecture").combo
    mode.setCurrentIndex(mode.findData("lora"))  # the toy network takes a LoRA too (lesson 4): nothing to switch
    assert model.mode == "lora" and model.value("model.architecture") == "toy" and "mode" not in model.errors()
    assert shown() == {"basics", "model", "lora", "toy", "optimizer", "output"}
    mode.setCurrentIndex(mode.findData("dreambooth"))  # DreamBooth needs Stable Diffusion: the architecture follows
    mode.setCurrentIndex(mode.findData("lora"))
    assert model.mode == "lora" and model.value("model.architecture") == "sd15"
    assert architecture.currentData() == "sd15" and "mode" not in model.errors()
    assert shown() == {"basics", "model", "dataset", "lora", "embedding", "optimizer", "noise", "memory",
                       "sampling",
                       "output"}
    architecture.setCurrentIndex(architecture.findData("sdxl"))
    mode.setCurrentIndex(mode.findData("toy"))  # the toy network is its own architecture
    assert model.value("model.architecture") == "toy" and "mode" not in model.errors()
    mode.setCurrentIndex(mode.findData("dreambooth"))  # back to the SD architecture chosen before
    assert model.value("model.architecture") == "sdxl" and "mode" not in model.errors()
    mode.setCurrentIndex(mode.findData("frozen"))  # frozen works with both: nothing to switch
    assert model.value("model.architecture") == "sdxl"


def test_preset_chooser_lists_presets_and_applies_one(qtbot, make_window, answers):
    assert make_window().controls.current_preset() == "toy"  # a project made from a preset shows it
    window = make_window(["training.steps=123"])
    combo = window.controls.preset_combo
    names = [combo.itemData(i) for i in range(combo.count())]
    assert {"toy", "toy-frozen"} <= set(names)
    assert window.controls.current_preset() is None  # edited: "Custom settings"
    assert window.controls.preset_combo.currentText() == "Custom settings"

    answers.reply = True
    combo.activated.emit(combo.findData("toy-frozen"))
    assert len(answers.questions) == 1  # edited settings are only replaced after asking
    assert window.config_model.mode == "frozen"
    assert window.controls.current_preset() == "toy-frozen"
    assert not window.hyperparameters_panel.groups["frozen"].isHidden()

    combo.activated.emit(combo.findData("toy"))  # settings equal to a preset are replaced without asking
    assert len(answers.questions) == 1
    assert window.config_model.mode == "toy" and window.controls.current_preset() == "toy"


def test_wheel_does_not_change_an_unfocused_spin_box(qtbot):
    from PySide6.QtCore import QPoint, QPointF
    from PySide6.QtGui import QWheelEvent
    from PySide6.QtWidgets import QApplication

    model = ConfigModel(Config())
    panel = HyperparametersPanel(model)
    qtbot.addWidget(panel)
    spin = panel.editor("training.batch_size").spin
    event = QWheelEvent(QPointF(5, 5), QPointF(5, 5), QPoint(0, 0), QPoint(0, 120), Qt.MouseButton.NoButton,
                        Qt.KeyboardModifier.NoModifier, Qt.ScrollPhase.NoScrollPhase, False)
    QApplication.sendEvent(spin, event)
    assert model.value("training.batch_size") == 1


def test_a_config_the_trainer_would_refuse_cannot_start_and_is_still_saved(qtbot, make_window, tmp_path):
    """An SD preset without its base model: Start and Run ▸ Start stay disabled and the field says why,
    before any trainer is spawned; the settings are still saved, and fixing the file outside the window
    is noticed."""
    window = make_window(["dataset.path=" + str(tmp_path)], preset="sd15-lora-8gb")
    panel, start = window.hyperparameters_panel, window.controls.start_button
    assert not start.isEnabled() and not window.menu_actions["start"].isEnabled()
    assert not window.controls.queue_button.isEnabled() and not window.menu_actions["queue"].isEnabled()
    error = panel.rows["model.path"].error
    assert not error.isHidden() and "choose the base model" in error.text()
    assert "to fix before training can start" in panel.summary.text()
    assert window.config_model.config is not None  # still a config: autosave keeps the other edits

    model = tmp_path / "model"
    window.config_model.set_value("model.path", str(model))
    assert "not found" in panel.rows["model.path"].error.text() and not start.isEnabled()
    model.mkdir()
    (model / "model_index.json").write_text("{}")  # the person fixes it outside the window
    qtbot.waitUntil(start.isEnabled, timeout=5_000)
    assert panel.rows["model.path"].error.isHidden() and window.menu_actions["queue"].isEnabled()
    assert not window.session.is_active() and not list(window.project.runs())  # nothing was spawned


def test_an_out_of_range_number_is_kept_and_explained_not_snapped_back(qtbot, make_window):
    window = make_window()
    panel, start = window.hyperparameters_panel, window.controls.start_button
    steps = panel.editor("training.steps").spin
    steps.selectAll()
    qtbot.keyClicks(steps.lineEdit(), "0")
    steps.interpretText()
    steps.editingFinished.emit()  # what leaving the field does
    assert steps.value() == 0 and window.config_model.value("training.steps") == 0
    assert "must be ≥ 1, got 0" in panel.rows["training.steps"].error.text() and not start.isEnabled()
    steps.stepBy(-3)  # the arrows stay in the allowed range
    assert steps.value() == 1 and "must be ≥ 1" not in panel.rows["training.steps"].error.text()


def test_an_error_appearing_does_not_move_the_fields_under_the_mouse(qtbot, make_window):
    window = make_window()
    panel = window.hyperparameters_panel
    window.show()
    steps = panel.editor("training.steps")  # above the field that goes wrong

    def top_of_steps() -> int:
        return steps.mapTo(panel, steps.rect().topLeft()).y()

    before = top_of_steps()
    type_into(qtbot, panel.editor("training.learning_rate").line, "abc")
    assert not panel.summary.isHidden()
    qtbot.wait(50)  # let the layout settle
    assert top_of_steps() == before


def test_the_demo_project_shows_the_demo_preset(qtbot, make_window, tmp_path):
    """A project made from a bundled preset keeps copies of its pictures: it is still that preset."""
    from tests.conftest import PRESETS

    project = Project.create(tmp_path / "demo", PRESETS / "demo.toml")
    assert project.config.dataset.path != load_config(PRESETS / "demo.toml").dataset.path  # its own copy
    window = make_window(project=project)
    assert window.controls.current_preset() == "demo" and window.controls.preset_combo.currentText() == "demo"
    window.config_model.set_value("training.steps", 401)
    assert window.controls.current_preset() is None  # edited: custom settings

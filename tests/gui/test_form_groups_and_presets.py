"""The form's groups follow the mode; presets of your own and TOML files round-trip the whole config."""

from __future__ import annotations

import pytest

from desktop_app.paths import user_presets_dir
from desktop_app.train.config_files import load_config_file, save_config_file, save_user_preset
from desktop_app.train.config_model import ConfigModel
from desktop_app.train.form_groups import GROUPS, ungrouped_fields
from desktop_app.train.hyperparameters_panel import HyperparametersPanel
from tests.gui.conftest import configured
from trainer.config import Config, load_config
from trainer.families import family


def shown_groups(panel: HyperparametersPanel) -> list[str]:
    return [key for key, group in panel.groups.items() if not group.isHidden()]


@pytest.mark.parametrize(("preset", "expected"), [
    ("toy", ["basics", "toy", "optimizer", "output"]),
    ("toy-frozen", ["basics", "model", "frozen", "toy", "optimizer", "output"]),
    ("toy-lora", ["basics", "model", "lora", "toy", "optimizer", "output"]),
    ("sd15-lora-8gb", ["basics", "model", "dataset", "lora", "embedding", "optimizer", "noise", "memory",
                       "sampling", "output"]),
    ("sd15-dreambooth", ["basics", "model", "dataset", "lora", "dreambooth", "embedding", "optimizer", "noise",
                         "memory", "sampling", "output"]),
    ("flux-lora-24gb", ["basics", "model", "dataset", "lora", "optimizer", "noise", "memory", "sampling",
                        "output"]),
    ("sd15-frozen", ["basics", "model", "frozen", "dataset", "optimizer", "noise", "memory", "sampling", "output"]),
])
def test_only_the_groups_of_the_mode_are_shown(qtbot, preset, expected):
    panel = HyperparametersPanel(ConfigModel(configured(preset)))
    qtbot.addWidget(panel)
    assert shown_groups(panel) == expected
    titles = [panel.groups[key].title().replace("&&", "&") for key in expected]
    assert titles[0] == "Basics" and ("Memory & speed" in titles) == ("memory" in expected)
    # Diffusion-only knobs are hidden for the toy network, shown for Stable Diffusion.
    noise_layout = panel.groups["noise"].layout()
    ddpm = not preset.startswith(("toy", "flux"))  # flow-matching families hide min-SNR
    assert noise_layout.isRowVisible(panel.rows["training.min_snr_gamma"]) == ddpm


def test_a_field_that_follows_another_shows_only_when_it_means_something(qtbot):
    panel = HyperparametersPanel(ConfigModel(configured("sd15-lora-8gb")))
    qtbot.addWidget(panel)
    shown = panel.shows
    assert panel.model.value("training.scheduler") == "cosine"
    assert not shown("training.lr_cycles") and not shown("training.lr_power")  # cosine has neither
    panel.editor("training.scheduler").combo.setCurrentIndex(
        panel.editor("training.scheduler").combo.findData("cosine_with_restarts"))
    assert shown("training.lr_cycles") and not shown("training.lr_power")
    layout = panel.groups["optimizer"].layout()
    assert layout.isRowVisible(panel.rows["training.lr_cycles"])  # the row itself, not only the rule
    assert not shown("embedding.vectors") and shown("embedding.token")  # no new word: nothing else to set
    panel.model.set_value("embedding.token", "<my-dog>")
    assert shown("embedding.vectors") and panel.groups["embedding"].layout().isRowVisible(
        panel.rows["embedding.vectors"])


def test_every_field_has_a_group_and_a_tooltip_with_range_and_default(qtbot):
    assert ungrouped_fields() == []
    assert [g.key for g in GROUPS][:2] == ["basics", "model"]
    panel = HyperparametersPanel(ConfigModel(Config()))
    qtbot.addWidget(panel)
    for name, row in panel.rows.items():
        tooltip = row.editor.toolTip()
        assert "Default:" in tooltip, name
        assert len(tooltip.splitlines()[0]) > 10, f"{name} has no description"
    assert "Range: > 0 and ≤ 10" in panel.editor("training.learning_rate").toolTip()


def test_switching_mode_shows_and_hides_groups_live(qtbot):
    model = ConfigModel(configured("sd15-lora-8gb"))
    panel = HyperparametersPanel(model)
    qtbot.addWidget(panel)
    assert "dreambooth" not in shown_groups(panel)
    model.set_value("mode", "dreambooth")
    assert "dreambooth" in shown_groups(panel) and "lora" in shown_groups(panel)
    model.set_value("mode", "frozen")
    assert "frozen" in shown_groups(panel) and "lora" not in shown_groups(panel)


def test_a_saved_preset_is_offered_and_reloads_the_same_settings(qtbot, make_window, answers):
    window = make_window(["training.steps=777", "output.run_name=mine"])
    config = window.config_model.config
    path = save_user_preset(config, "My toy")
    assert path.parent == user_presets_dir() and load_config(path) == config  # `kamaal-train train` accepts it
    assert window.controls.add_preset(path)
    combo = window.controls.preset_combo
    assert combo.itemText(combo.findData("My toy")) == "My toy (mine)"
    assert window.controls.current_preset() == "My toy"  # the settings equal it now

    combo.activated.emit(combo.findData("toy"))
    assert window.config_model.config.training.steps != 777
    combo.activated.emit(combo.findData("My toy"))
    assert window.config_model.config == config

    other = make_window()  # a new window (next app start) lists it too
    assert other.controls.preset_combo.findData("My toy") >= 0
    with pytest.raises(ValueError, match="built-in"):
        save_user_preset(config, "toy")
    with pytest.raises(ValueError, match="letters"):
        save_user_preset(config, "../evil")


def test_the_whole_config_saves_and_loads_as_toml(qtbot, make_window, tmp_path):
    window = make_window(["training.steps=4321", "toy.noise=0.5"])
    target = tmp_path / "settings.toml"
    assert save_config_file(window, target)
    assert load_config(target).training.steps == 4321

    window.config_model.load(configured("toy"))
    assert window.config_model.config.training.steps != 4321
    assert load_config_file(window, target)
    assert window.config_model.config.training.steps == 4321 and window.config_model.config.toy.noise == 0.5
    assert {"load_config", "save_config", "save_preset", "queue"} <= window.menu_actions.keys()


def test_switching_family_moves_the_sampling_settings_left_at_the_old_familys_usual_values(qtbot):
    model = ConfigModel(configured("sd15-lora-8gb"))
    assert model.value("sampling.guidance_scale") == 7.5
    steps = model.value("sampling.inference_steps")
    model.set_value("model.architecture", "flux")
    assert model.value("sampling.guidance_scale") == 3.5  # Flux.1-dev draws at its distilled guidance
    assert model.value("sampling.inference_steps") == (28 if steps == 20 else steps)
    model.set_value("sampling.guidance_scale", 2.0)  # the person's own choice stays
    model.set_value("model.architecture", "sd3")
    assert model.value("sampling.guidance_scale") == 2.0
    model.set_value("sampling.guidance_scale", 4.5)
    model.set_value("model.architecture", "sdxl")
    assert model.value("sampling.guidance_scale") == 7.5  # at SD 3.5's usual value: back to SDXL's
    assert model.config is not None
    # LoRA's targets follow too: Kandinsky 5's attention is named to_query/…/out_layer, not to_q/…/to_out.0
    assert model.value("lora.target_modules") == ["to_q", "to_k", "to_v", "to_out.0"]
    model.set_value("model.architecture", "kandinsky5")
    assert model.value("lora.target_modules")[:3] == ["to_query", "to_key", "to_value"]
    assert model.config is not None and model.config.lora.target_modules == model.value("lora.target_modules")
    model.set_value("model.architecture", "sdxl")
    assert model.value("lora.target_modules") == ["to_q", "to_k", "to_v", "to_out.0"]
    targets = model.value("lora.target_modules")
    model.set_value("model.architecture", "hidream")  # its attention has no to_out.0: its own default targets
    assert model.value("lora.target_modules") == list(family("hidream").lora_target_modules)
    assert model.config is not None
    model.set_value("model.architecture", "sdxl")
    assert model.value("lora.target_modules") == targets


@pytest.mark.parametrize(("field", "file_dialog"), [("model.path", True), ("model.vae_file", True),
                                                     ("model.tokenizer_folder", False)])
def test_browse_opens_a_file_dialog_for_weight_files_and_a_folder_dialog_for_folders(qtbot, monkeypatch, field,
                                                                                    file_dialog):
    from PySide6.QtWidgets import QFileDialog

    from desktop_app.train.field_editors import make_editor
    from desktop_app.train.field_meta import meta_for

    asked: list[str] = []
    monkeypatch.setattr(QFileDialog, "getOpenFileName", lambda *a, **k: (asked.append("file"), ("/m/ae.safetensors",
                                                                                                 ""))[1])
    monkeypatch.setattr(QFileDialog, "getExistingDirectory", lambda *a, **k: (asked.append("folder"), "/m/tok")[1])
    editor = make_editor(meta_for(field))
    qtbot.addWidget(editor)
    editor._browse()
    assert asked == ["file" if file_dialog else "folder"]
    assert editor.value() == ("/m/ae.safetensors" if file_dialog else "/m/tok")


def test_the_preset_chooser_reads_its_files_after_the_first_frame_and_leaves_out_broken_ones(
        qtbot, make_project, answers, tmp_path):
    """The window's start (README ▸ Performance): the chooser lists the presets' names, reads and validates the
    files only after the window's first frame (or when asked which preset the settings are)."""
    from desktop_app.main_window import MainWindow
    from tests.conftest import PRESETS

    broken = tmp_path / "broken.toml"
    broken.write_text("[training]\nsteps = 0\n", encoding="utf-8")
    presets = [PRESETS / "toy.toml", broken, PRESETS / "toy-frozen.toml"]

    def window() -> MainWindow:
        made = MainWindow(make_project(), presets=presets, ask=answers, choose=answers.choose)
        qtbot.addWidget(made)
        return made

    shown = window()
    combo = shown.controls.preset_combo
    assert not shown.controls.presets_read() and combo.currentIndex() == -1  # listed, none read nor shown yet
    assert combo.findData("broken") >= 0
    shown.show()
    qtbot.waitUntil(shown.controls.presets_read, timeout=3000)
    assert combo.findData("broken") < 0 and combo.currentData() == "toy"

    unshown = window()  # choosing the broken preset before the files were read: it is left out, nothing changes
    unshown.controls.preset_combo.activated.emit(unshown.controls.preset_combo.findData("broken"))
    assert unshown.controls.presets_read() and unshown.controls.current_preset() == "toy" and not answers.questions
    assert unshown.config_model.config == shown.config_model.config

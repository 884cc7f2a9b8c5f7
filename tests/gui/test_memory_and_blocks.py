"""Device line, memory estimate and Measure (real steps in a trainer process); the frozen-layer block tree."""

from __future__ import annotations

import pytest
from PySide6.QtCore import Qt

from desktop_app.tasks import TaskRunner
from desktop_app.train.block_tree import BlockTree
from desktop_app.train.config_model import ConfigModel
from desktop_app.train.memory_box import MemoryBox
from tests.gui.conftest import configured
from tests.gui.tiny_sd import tiny_sd_overrides
from trainer.memory_estimate import estimate_memory

TASK_TIMEOUT_MS = 180_000  # the child imports torch (and diffusers): slow on a loaded 2-core machine


@pytest.fixture
def runner(qtbot):
    runner = TaskRunner()
    yield runner
    runner.close()


def test_measure_runs_real_steps_of_the_toy_config(qtbot, runner):
    config = configured("toy", ["toy.step_delay_ms=0"])
    with qtbot.waitSignal(runner.done, timeout=TASK_TIMEOUT_MS) as done:
        assert runner.start("measure", {"config": config.to_dict(), "steps": 6})
    result = done.args[0].result
    assert result["steps"] == 6 and result["device"] == "cpu" and result["memory_kind"] == "rss"
    assert result["it_per_s"] > 1 and result["peak_memory_bytes"] > 50 * 2**20
    # The estimate (trainer/memory_estimate.py) agrees with the measurement within a factor of two.
    estimate = estimate_memory(config, "cpu").total
    assert 0.5 < estimate / result["peak_memory_bytes"] < 2.0, (estimate, result)
    qtbot.waitUntil(lambda: not runner.is_busy(), timeout=10_000)


@pytest.mark.slow  # two trainer processes: device-info, then a few real LoRA steps
def test_memory_box_shows_the_device_the_estimate_and_a_measurement(qtbot, tmp_path, monkeypatch):
    model = ConfigModel(configured("sd15-lora-8gb", [*tiny_sd_overrides(tmp_path, monkeypatch),
                                                     "training.batch_size=2"]))
    box = MemoryBox(model)
    qtbot.addWidget(box)
    assert "standard Stable Diffusion 1.x model" in box.estimate_label.text()  # before the model's files are read
    reference = box.estimate.total
    with qtbot.waitSignal(box.device_runner.done, timeout=TASK_TIMEOUT_MS):
        box.show()  # the first look asks the trainer which device it would use
    assert "CPU only" in box.device_label.text() and "RAM free" in box.device_label.text()
    assert "read from its files" in box.estimate_label.text()
    assert box.estimate.total < reference  # the tiny demo model is far smaller than SD 1.5
    before = box.estimate.activations
    model.set_value("dataset.resolution", 128)  # 4× the pixels → 4× the activations
    assert box.estimate.activations == pytest.approx(4 * before, rel=0.01)

    with qtbot.waitSignal(box.measure_runner.done, timeout=TASK_TIMEOUT_MS):
        qtbot.mouseClick(box.measure_button, Qt.MouseButton.LeftButton)
        assert box.measure_button.text() == "Cancel"
    assert "Measured on cpu" in box.measure_label.text() and "it/s" in box.measure_label.text()
    assert box.measured["peak_memory_bytes"] > 0
    qtbot.waitUntil(lambda: not box.measure_runner.is_busy() and box.measure_button.text() == "Measure",
                    timeout=10_000)
    box.shutdown()


def test_block_tree_from_a_tiny_model_edits_the_trainable_patterns(qtbot, tmp_path, monkeypatch):
    import tqdm

    from trainer.freezing import model_blocks

    monkeypatch.setattr(tqdm.tqdm, "monitor_interval", 0)  # no tqdm monitor thread in the test process
    from trainer.models.tiny import build_tiny_model

    model_dir = tmp_path / "tiny"
    build_tiny_model(model_dir, "sd15", seed=0)
    model = ConfigModel(configured("sd15-frozen", [f"model.path={model_dir.as_posix()!r}".replace("'", '"'),
                                                   'frozen.trainable=["up_blocks.1"]']))
    tree = BlockTree(model)
    qtbot.addWidget(tree)
    counts: list = []
    tree.countsChanged.connect(lambda parameters, trainable: counts.append((parameters, trainable)))
    with qtbot.waitSignal(tree.runner.done, timeout=TASK_TIMEOUT_MS):
        assert tree.inspect()
    items = {item.data(0, Qt.ItemDataRole.UserRole): item for item in tree._items()}
    assert {"down_blocks", "up_blocks.1", "up_blocks.1.attentions", "conv_in"} <= items.keys()
    (text_encoder,) = [i for i in tree._items() if i.text(0) == "Text encoder"]
    assert text_encoder.childCount() and all(text_encoder.child(i).isDisabled()  # frozen runs train UNet blocks
                                             for i in range(text_encoder.childCount()))

    def trainer_count(patterns: list[str]) -> int:  # what the trainer itself would train
        return sum(row["trainable"] for row in model_blocks(model_dir, 1, patterns)["unet"])

    assert items["up_blocks.1"].checkState(0) == Qt.CheckState.Checked
    assert items["up_blocks.1.attentions"].checkState(0) == Qt.CheckState.Checked
    assert items["up_blocks"].checkState(0) == Qt.CheckState.PartiallyChecked
    assert counts[-1][1] == trainer_count(["up_blocks.1"]) > 0
    assert counts[-1][0]["unet"] > counts[-1][1]

    items["conv_in"].setCheckState(0, Qt.CheckState.Checked)  # tick a block: its name is added
    assert model.value("frozen.trainable") == ["up_blocks.1", "conv_in"]
    items["up_blocks.1.attentions"].setCheckState(0, Qt.CheckState.Unchecked)  # untick a child of a ticked block
    patterns = model.value("frozen.trainable")
    assert "up_blocks.1" not in patterns and "up_blocks.1.resnets" in patterns and "conv_in" in patterns
    assert not any(p.startswith("up_blocks.1.attentions") for p in patterns)
    assert counts[-1][1] == trainer_count(patterns)
    assert model.config is not None  # the edited patterns make a valid config
    tree.shutdown()

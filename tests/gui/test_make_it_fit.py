"""Memory & speed ▸ Make it fit: the plan for the device the trainer reported is set in the form, each choice
explained; a device nothing fits leaves the form as it was."""

from __future__ import annotations

import pytest
from PySide6.QtCore import Qt

from desktop_app.train.config_model import ConfigModel
from desktop_app.train.memory_box import MemoryBox
from tests.gui.conftest import configured
from trainer.memory_estimate import GB, estimate_memory
from trainer.memory_plan import DeviceFacts, plan_memory


@pytest.fixture
def reported_device(monkeypatch):
    """What the ``device-info`` task answers on a machine with this GPU (the task itself is tested with Measure)."""
    def report(vram_gb: float, ram_gb: float) -> DeviceFacts:
        monkeypatch.setattr(MemoryBox, "device_info", {
            "cuda": True, "name": "NVIDIA test card", "total_bytes": int(vram_gb * GB),
            "free_bytes": int(vram_gb * GB), "ram_bytes": int(ram_gb * GB), "cpu_count": 8})
        monkeypatch.setattr(MemoryBox, "parameter_cache", {"": {}})  # no model file: the reference model's sizes
        return DeviceFacts(int(vram_gb * GB), int(ram_gb * GB), int(vram_gb * GB), 8)
    return report


def test_make_it_fit_sets_the_plan_in_the_form(qtbot, reported_device):
    config = configured("flux-lora-24gb")
    model = ConfigModel(config)
    box = MemoryBox(model)
    qtbot.addWidget(box)
    device = reported_device(16, 64)
    box._update_buttons()
    assert box.fit_button.isEnabled()
    expected = plan_memory(config, device)
    assert expected.fits and expected.changes  # a 24 GB preset on a 16 GB card: something must change

    qtbot.mouseClick(box.fit_button, Qt.MouseButton.LeftButton)

    assert model.config.to_dict() == expected.config.to_dict()  # the form holds the planned config, and it is valid
    assert estimate_memory(model.config, "cuda").total <= device.vram_budget
    text = box.plan_label.text()
    assert "Made it fit" in text and "transformer's bf16 weights alone are 22.2 GB" in text
    assert all(reason.split(":")[0] in text for reason in expected.reasons)
    assert "fits" in box.estimate_label.text()  # the estimate beside it follows the form
    box.shutdown()


def test_a_device_nothing_fits_changes_nothing_and_says_what_the_smallest_plan_needs(qtbot, reported_device):
    config = configured("flux-lora-24gb")
    model = ConfigModel(config)
    box = MemoryBox(model)
    qtbot.addWidget(box)
    reported_device(4, 8)
    box._update_buttons()
    qtbot.mouseClick(box.fit_button, Qt.MouseButton.LeftButton)
    assert model.config == config
    assert "Does not fit: even the smallest plan needs" in box.plan_label.text()
    assert "Nothing was changed" in box.plan_label.text()
    box.shutdown()


def test_a_measured_peak_past_the_margin_re_plans_once_and_one_within_it_is_reported(qtbot, reported_device):
    """Measure's answer on a GPU (this machine has none: its result is given as the task returns it) against the
    plan: 40 % over re-plans with the estimate scaled by 1.4; within the margin it is only reported."""
    from trainer.protocol import TaskDone

    config = configured("flux-lora-24gb")
    model = ConfigModel(config)
    box = MemoryBox(model)
    qtbot.addWidget(box)
    device = reported_device(16, 64)
    box.make_it_fit()
    first = box.plan
    assert first.fits and not box.measure_runner.is_busy()  # no model files here: nothing to measure

    box._verifying = True
    box._on_measured(TaskDone("measure", {"peak_memory_bytes": int(first.vram_need * 1.02), "memory_kind": "cuda",
                                          "it_per_s": 1.0, "steps": 5, "device": "cuda:0"}))
    assert box.plan is first
    assert "<b>Checked</b>: measured" in box.plan_label.text() and "(+2%)" in box.plan_label.text()

    box._verifying = True
    box._on_measured(TaskDone("measure", {"peak_memory_bytes": int(first.vram_need * 1.4), "memory_kind": "cuda",
                                          "it_per_s": 1.0, "steps": 5, "device": "cuda:0"}))
    second = box.plan
    assert second is not first and second.fits
    assert model.config == second.config
    assert estimate_memory(second.config, "cuda").total * 1.4 <= device.vram_budget * 1.001
    assert second.relative_time > first.relative_time
    assert "Re-planned</b>: measured" in box.plan_label.text() and "(+40%)" in box.plan_label.text()
    assert not box.measure_runner.is_busy()  # adjusted once: no second Measure
    box.shutdown()


def test_the_plan_counts_the_caches_by_the_datasets_real_image_count(qtbot, reported_device, make_project,
                                                                     make_window):
    """Without the Dataset page open, the concepts' folders are counted on a worker thread (no torch in the GUI),
    and Make it fit plans the caches held in RAM for that many images."""
    from tests.gui.dataset_helpers import photos
    from trainer.memory_plan import ram_need

    project = make_project(["dataset.path=datasets/subject"], "flux-lora-24gb")
    photos(project.root / "datasets" / "subject", 5)
    window = make_window(project=project)
    box = window.extras.memory_box
    qtbot.waitUntil(lambda: box.images == 5, timeout=10_000)
    assert window.dataset_page.built_page() is None  # counted without the Dataset page
    device = reported_device(16, 64)
    config = window.config_model.config
    box.make_it_fit()
    assert box.plan == plan_memory(config, device, images=5)
    assert box.plan.ram_need == ram_need(box.plan.config, device, images=5)
    assert "dataset's size is not known" not in box.plan_label.text()

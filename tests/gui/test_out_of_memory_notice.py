"""After an out-of-memory (issue 24) the run's notice offers the next-smaller plan; "Continue with a smaller plan"
writes it into the run's config (the config as run so far kept) and resumes the run from its checkpoint."""

from __future__ import annotations

import json
from pathlib import Path

from PySide6.QtCore import Qt

from tests.gui.conftest import configured
from trainer.memory_estimate import GB, estimate_memory
from trainer.memory_plan import DeviceFacts, next_smaller_plan
from trainer.protocol import OutOfMemory
from trainer.runfolder import RunFolder


def out_of_memory_run(root: Path, saved_step: int = 3):
    """An SDXL run that ran out of memory on a 12 GB card in step ``saved_step + 1``, its state after
    ``saved_step`` saved, and the event the trainer sends with the plan it computes."""
    config = configured("sdxl-lora-12gb")
    run = RunFolder.create(config, root)
    checkpoint = run.checkpoint_dir(saved_step)
    checkpoint.mkdir(parents=True)
    (checkpoint / "state.json").write_text(json.dumps({"step": saved_step}), encoding="utf-8")
    plan = next_smaller_plan(config, DeviceFacts(12 * GB, 32 * GB), ran_out_above=12 * GB)
    assert plan is not None and plan.fits
    event = OutOfMemory(str(run.root), saved_step + 1, str(checkpoint), saved_step, "cuda",
                        "OutOfMemoryError: CUDA out of memory. Tried to allocate 1.50 GiB", 11 * GB, 12 * GB,
                        plan.changes, plan.describe(), plan.fits)
    return run, config, plan, event


def test_continue_with_a_smaller_plan_applies_it_to_the_run_and_resumes(qtbot, make_window, tmp_path, monkeypatch):
    window = make_window()
    run, config, plan, event = out_of_memory_run(tmp_path / "runs" / "sdxl")
    resumed: list[Path] = []
    monkeypatch.setattr(window.session, "resume", lambda run_dir: resumed.append(Path(run_dir)) or True)
    window.session.outOfMemory.emit(event)

    banner = window.preview_panel.banner
    assert not banner.isHidden() and banner.title.text() == "Out of memory at step 4"
    assert "The state after step 3 is saved. A smaller plan:" in banner.text.text()
    assert not banner.plan_button.isHidden()
    window.show_page(window.splitter)
    window.grab().save(str(tmp_path / "out-of-memory.png"))

    qtbot.mouseClick(banner.plan_button, Qt.MouseButton.LeftButton)
    assert resumed == [run.root]
    changed = RunFolder(run.root).load_config()
    assert changed == plan.config  # the plan, and nothing else, is what the run continues with
    assert changed != config
    assert estimate_memory(changed, "cuda").total < estimate_memory(config, "cuda").total
    kept = run.root / "config-until-step-000003.toml"
    assert RunFolder(run.root).load_config().to_toml() != kept.read_text(encoding="utf-8")
    assert kept.read_text(encoding="utf-8") == config.to_toml()  # the config as run so far


def test_without_a_smaller_plan_the_notice_says_so_and_offers_no_button(qtbot, make_window, tmp_path):
    window = make_window()
    run, _, _, event = out_of_memory_run(tmp_path / "runs" / "sdxl")
    window.session.outOfMemory.emit(OutOfMemory(event.run_dir, 4, event.checkpoint, 3, "cuda", event.message,
                                                plan_text="No smaller plan"))
    banner = window.preview_panel.banner
    assert banner.title.text() == "Out of memory at step 4" and "No smaller plan" in banner.text.text()
    assert banner.plan_button.isHidden()
    assert not (run.root / "config-until-step-000003.toml").exists()


if __name__ == "__main__":  # a screenshot of the notice, to look at
    import sys
    import tempfile

    from PySide6.QtWidgets import QApplication

    from desktop_app.preview.preview_panel import PreviewPanel
    from desktop_app.preview.run_model import RunModel
    from desktop_app.session import TrainingSession
    from desktop_app.style import apply_style

    app = QApplication(sys.argv)
    apply_style(app)
    session = TrainingSession()
    panel = PreviewPanel(RunModel(session))
    panel.resize(900, 600)
    session.outOfMemory.emit(out_of_memory_run(Path(tempfile.mkdtemp()) / "sdxl")[3])
    panel.show()
    app.processEvents()
    panel.grab().save(sys.argv[1] if len(sys.argv) > 1 else "out-of-memory.png")

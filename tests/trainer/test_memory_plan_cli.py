"""``kamaal-train plan``: prints the plan and its reasons for any machine, writes the planned config atomically
(the original untouched), refuses bad sizes with exit 2 and answers "does not fit" with exit 1."""

from __future__ import annotations

import shutil

from PIL import Image

from tests.conftest import PRESETS
from trainer.cli import main
from trainer.config import load_config
from trainer.memory_estimate import GB, estimate_memory
from trainer.memory_plan import DeviceFacts, plan_memory


def test_plans_for_a_machine_it_is_not_and_writes_the_plan(tmp_path, capsys):
    source = tmp_path / "flux.toml"
    shutil.copy(PRESETS / "flux-lora-24gb.toml", source)
    before = source.read_bytes()
    out = tmp_path / "planned.toml"

    assert main(["plan", str(source), "--vram", "16GB", "--ram", "64 GiB", "--write", str(out)]) == 0

    printed = capsys.readouterr().out
    expected = plan_memory(load_config(source), DeviceFacts(16 * GB, 64 * GB))
    assert expected.describe() in printed
    assert "transformer's bf16 weights alone are 22.2 GB" in printed
    assert source.read_bytes() == before  # the original is never modified
    written = load_config(out)
    assert written == expected.config
    assert estimate_memory(written, "cuda").total <= DeviceFacts(16 * GB, 64 * GB).vram_budget
    for key, value in expected.changes.items():
        assert f"{key} = {value!r}" in printed


def test_a_bad_size_or_config_exits_2_naming_it(tmp_path, capsys):
    assert main(["plan", str(PRESETS / "sdxl-lora-12gb.toml"), "--vram", "twelve", "--ram", "32GB"]) == 2
    assert "--vram: 'twelve' is not a size" in capsys.readouterr().err
    assert main(["plan", str(PRESETS / "sdxl-lora-12gb.toml"), "--vram", "12GB", "--ram=-3GB"]) == 2
    assert "--ram: '-3GB' is not a size" in capsys.readouterr().err
    assert main(["plan", str(tmp_path / "missing.toml"), "--vram", "12GB", "--ram", "32GB"]) == 2
    assert "missing.toml: file not found" in capsys.readouterr().err


def test_nothing_fits_exits_1_with_the_smallest_plans_need_and_writes_nothing(tmp_path, capsys):
    out = tmp_path / "planned.toml"
    assert main(["plan", str(PRESETS / "flux-lora-24gb.toml"), "--vram", "4GB", "--ram", "8GB",
                 "--write", str(out)]) == 1
    printed = capsys.readouterr().out
    assert printed.startswith("Does not fit: even the smallest plan needs")
    assert "this card leaves 3.3 GB" in printed and not out.exists()


def test_the_datasets_images_are_counted_for_the_caches_in_ram(tmp_path, capsys):
    images = tmp_path / "images"
    images.mkdir()
    for index in range(3):
        Image.new("RGB", (64, 64), (index * 80, 0, 0)).save(images / f"{index}.png")
    assert main(["plan", str(PRESETS / "sdxl-lora-12gb.toml"), "--vram", "12GB", "--ram", "32GB",
                 "--set", f'dataset.path="{images}"']) == 0
    printed = capsys.readouterr().out
    assert "size is not known" not in printed and "Latents cached in RAM" in printed


def test_detects_this_machine_when_no_size_is_given(capsys):
    assert main(["plan", str(PRESETS / "sd15-lora-8gb.toml")]) in (0, 1)
    printed = capsys.readouterr().out
    assert "Detected: " in printed and " of RAM, " in printed and " CPU cores" in printed


def test_resume_with_a_plan_refuses_a_bad_change_by_name_and_changes_nothing(tmp_path, capsys):
    """``kamaal-train resume RUN --set …`` (what an out-of-memory prints) validates before it writes."""
    from tests.trainer.helpers import toy_config
    from trainer.cli import main
    from trainer.runfolder import RunFolder

    run = RunFolder.create(toy_config(), tmp_path / "run")
    before = run.config_path.read_text(encoding="utf-8")
    assert main(["resume", str(run.root), "--set", "training.batch_size=0"]) == 2
    assert "training.batch_size" in capsys.readouterr().err
    assert run.config_path.read_text(encoding="utf-8") == before
    assert not list(run.root.glob("config-until-*"))


def test_a_run_folder_a_trainer_holds_keeps_its_config(tmp_path):
    """Changing the config of a run that trains would leave its snapshot lying about what it runs."""
    import pytest

    from tests.trainer.helpers import toy_config
    from trainer.runfolder import RunFolder
    from trainer.runlock import RunFolderBusy, lock_run_folder

    run = RunFolder.create(toy_config(), tmp_path / "run")
    before = run.config_path.read_text(encoding="utf-8")
    held = lock_run_folder(run.root)  # as the running trainer holds it
    try:
        with pytest.raises(RunFolderBusy, match=str(run.root)):
            run.change_config(["training.batch_size=8"], 0)
    finally:
        held.release()
    assert run.config_path.read_text(encoding="utf-8") == before and not list(run.root.glob("config-until-*"))
    assert run.change_config(["training.batch_size=8"], 0).training.batch_size == 8  # free again: it changes

"""A full disk while a diffusion run writes its outputs: refused naming output/, the final checkpoint kept,
no staging folder or file left behind.  (That a resume then writes the outputs: tests/trainer/test_checkpoints.py.)"""

from __future__ import annotations

import errno
from pathlib import Path

import pytest

from tests.diffusion.conftest import diffusion_config
from tests.trainer.helpers import run_in_process
from trainer.checkpoint import load_checkpoint
from trainer.protocol import EXIT_BAD_INPUT, Failed


def fill_then_fail(path: Path) -> None:
    """What a full disk leaves: part of a file written, then ENOSPC."""
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    Path(path).write_bytes(b"\0" * 4096)
    raise OSError(errno.ENOSPC, "No space left on device", str(path))


@pytest.mark.parametrize("mode", ["lora", "frozen"])
def test_a_full_disk_at_export_is_refused_and_cleaned_up(tmp_path, tiny_sd15, shapes_dataset, monkeypatch, mode):
    if mode == "lora":  # the second LoRA file (the diffusers one, into the staging folder) meets the full disk
        import trainer.lora_formats as lora_formats

        real_save = lora_formats.save_lora
        monkeypatch.setattr(lora_formats, "save_lora", lambda lora, path, fmt, *a, **k: (
            fill_then_fail(path) if fmt == "diffusers" else real_save(lora, path, fmt, *a, **k)))
    else:  # the diffusers folder of a frozen-layer run
        import trainer.models.folder_dtypes as folder_dtypes

        monkeypatch.setattr(folder_dtypes, "save_diffusers_folder",
                            lambda pipe, folder, *a, **k: fill_then_fail(Path(folder) / "unet" / "x.safetensors"))
    extra = {"frozen": {"trainable": ["up_blocks.1"]}} if mode == "frozen" else {}
    config = diffusion_config(tiny_sd15, shapes_dataset, mode=mode, training={"steps": 2, "eval_every": 100},
                              sampling={"prompts": [], "seeds": []}, **extra)
    run_dir = tmp_path / "run"
    code, rec = run_in_process(config, run_dir)

    assert code == EXIT_BAD_INPUT, rec.of(Failed)
    failed = rec.of(Failed)[0]
    assert failed.kind == "input" and not failed.traceback
    assert failed.message.startswith(f"{run_dir / 'output'}: the disk is full; writing the outputs takes about ")
    assert "The last checkpoint, step-000002, is kept" in failed.message
    leftovers = [p.name for p in (run_dir / "output").iterdir() if p.name.startswith(".")]
    assert leftovers == []  # no .diffusers.* folder, no .NAME.safetensors.tmp
    load_checkpoint(run_dir / "checkpoints" / "step-000002")

"""Resumable checkpoints, written atomically.

A checkpoint folder holds:
  weights.safetensors   the trainable weights (the whole toy net; a LoRA adapter; unfrozen blocks)
  training_state.pt     optimizer, scheduler and RNG states (loaded with weights_only=True)
  state.json            step and bookkeeping; written last, so its presence means "complete"

The folder is assembled under a temporary name and renamed into place, so a crash mid-save
never leaves a checkpoint that looks complete but is not.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file

from trainer.errors import InputError
from trainer.runfolder import CHECKPOINT_DONE_MARKER, RunFolder

WEIGHTS_FILE = "weights.safetensors"
STATE_FILE = "training_state.pt"


def save_checkpoint(run: RunFolder, step: int, weights: dict[str, torch.Tensor], training_state: dict[str, Any],
                    info: dict[str, Any], keep: int) -> Path:
    final = run.checkpoint_dir(step)
    run.checkpoints_dir.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{final.name}.", dir=run.checkpoints_dir))
    try:
        save_file({k: v.detach().contiguous().cpu() for k, v in weights.items()}, staging / WEIGHTS_FILE)
        torch.save(training_state, staging / STATE_FILE)
        state = {"step": step, "saved_at": time.strftime("%Y-%m-%dT%H:%M:%S"), **info}
        (staging / CHECKPOINT_DONE_MARKER).write_text(json.dumps(state, indent=2), encoding="utf-8")
        for child in staging.iterdir():
            with open(child, "rb") as handle:
                os.fsync(handle.fileno())
        if final.exists():  # SaveNow twice at one step: the newer one wins
            shutil.rmtree(final)
        os.replace(staging, final)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    _prune(run, keep)
    return final


def _prune(run: RunFolder, keep: int) -> None:
    for _, path in run.checkpoints()[:-keep]:
        shutil.rmtree(path, ignore_errors=True)
    for leftover in run.checkpoints_dir.glob(".step-*"):  # staging folders of a crashed save
        shutil.rmtree(leftover, ignore_errors=True)


def load_checkpoint(path: Path) -> tuple[dict[str, Any], dict[str, torch.Tensor], dict[str, Any]]:
    """(state.json contents, weights, training_state) of a complete checkpoint folder."""
    try:
        state = json.loads((path / CHECKPOINT_DONE_MARKER).read_text(encoding="utf-8"))
        weights = load_file(path / WEIGHTS_FILE)
        training_state = torch.load(path / STATE_FILE, map_location="cpu", weights_only=True)
    except Exception as exc:  # a corrupt pickle or header can raise almost any type
        raise InputError(f"checkpoint {path} cannot be read ({type(exc).__name__}: {exc}); "
                         "delete that folder to resume from the one before it") from None
    return state, weights, training_state

"""Resumable checkpoints, written atomically and read back with suspicion.

A checkpoint folder holds:
  weights.safetensors   the trainable weights (the whole toy net; a LoRA adapter; unfrozen blocks)
  training_state.pt     optimizer, scheduler and RNG states (loaded with weights_only=True)
  state.json            step and bookkeeping; written last, so its presence means "complete"

The folder is assembled under a temporary name (``.step-N.XXXX``) and renamed into place, so a
crash mid-save never leaves a checkpoint that looks complete but is not.  Saving again at a step
that already has a checkpoint (Save now) renames the old one aside before the new one moves in
(:func:`trainer.fsutil.replace_dir`): a kill at any instant leaves one whole copy, which
:meth:`RunFolder.recover_interrupted_saves` puts back.  A full disk is refused by name
(:class:`trainer.errors.DiskFullError`: the folder, the space a checkpoint needs) with the
staging files removed and the earlier checkpoints untouched.

Reading trusts nothing: ``state.json`` is checked field by field, ``training_state.pt`` is loaded
with ``weights_only=True``, and a state the job cannot take is refused naming the file.
"""

from __future__ import annotations

import json
import logging
import math
import os
import shutil
import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from safetensors.torch import load_file, save_file

from trainer.errors import InputError, refuse_full_disk
from trainer.fsutil import fsync_dir, replace_dir
from trainer.runfolder import CHECKPOINT_DONE_MARKER, RunFolder

if TYPE_CHECKING:
    from trainer.jobs.base import TrainingJob

WEIGHTS_FILE = "weights.safetensors"
STATE_FILE = "training_state.pt"
STATE_JSON_LIMIT = 1_000_000  # bytes; ours are a few hundred
_FILE_OVERHEAD = 16 * 1024  # headers, pickle framing, state.json: a generous allowance on top of the tensors


# ---------------------------------------------------------------------------------------------- saving

def save_checkpoint(run: RunFolder, step: int, weights: dict[str, torch.Tensor], training_state: dict[str, Any],
                    info: dict[str, Any], keep: int) -> Path:
    final = run.checkpoint_dir(step)
    tensors = {k: v.detach().contiguous().cpu() for k, v in weights.items()}
    needed = checkpoint_size(tensors, training_state)
    state = {"step": step, "saved_at": time.strftime("%Y-%m-%dT%H:%M:%S"), **info}
    staging: Path | None = None
    with refuse_full_disk(run.checkpoints_dir, "a checkpoint", needed, run.disk_full_advice()):
        try:
            run.checkpoints_dir.mkdir(parents=True, exist_ok=True)
            run.recover_interrupted_saves()  # never let the replacement below clobber the one whole copy of a step
            staging = Path(tempfile.mkdtemp(prefix=f".{final.name}.", dir=run.checkpoints_dir))
            _write_files(staging, tensors, training_state, state)
            replace_dir(staging, final)  # SaveNow twice at one step: the newer wins, the older is whole until then
        except BaseException:
            if staging is not None:
                shutil.rmtree(staging, ignore_errors=True)
            raise
    _prune(run, keep)
    return final


def _write_files(staging: Path, tensors: dict[str, torch.Tensor], training_state: dict[str, Any],
                 state: dict[str, Any]) -> None:
    save_file(tensors, staging / WEIGHTS_FILE)
    # Through a Python file object: a full disk then surfaces as OSError(ENOSPC), not torch's bare
    # "file write failed" (what torch.save(path) raises).
    with open(staging / STATE_FILE, "wb") as handle:
        torch.save(training_state, handle)
        handle.flush()
        os.fsync(handle.fileno())
    with open(staging / WEIGHTS_FILE, "rb") as handle:
        os.fsync(handle.fileno())
    with open(staging / CHECKPOINT_DONE_MARKER, "w", encoding="utf-8") as handle:  # last: "complete"
        handle.write(json.dumps(state, indent=2))
        handle.flush()
        os.fsync(handle.fileno())
    fsync_dir(staging)


def checkpoint_size(tensors: dict[str, torch.Tensor], training_state: Any) -> int:
    """About how many bytes a checkpoint of these weights and this state takes on disk."""
    return sum(t.nbytes for t in tensors.values()) + _tensor_bytes(training_state) + _FILE_OVERHEAD


def _tensor_bytes(value: Any) -> int:
    if isinstance(value, torch.Tensor):
        return value.nbytes
    if isinstance(value, dict):
        return sum(_tensor_bytes(v) for v in value.values())
    if isinstance(value, (list, tuple)):
        return sum(_tensor_bytes(v) for v in value)
    return 0


def _prune(run: RunFolder, keep: int) -> None:
    for _, path in run.checkpoints()[:-keep]:
        shutil.rmtree(path, ignore_errors=True)
    for leftover in run.checkpoints_dir.glob(".step-*"):  # staging folders of a crashed save
        shutil.rmtree(leftover, ignore_errors=True)


# ---------------------------------------------------------------------------------------------- resuming

def resume_point(run: RunFolder, log: logging.Logger | None = None) -> tuple[int, Path] | None:
    """The newest complete checkpoint, or None when the run has saved none yet.

    Refuses (InputError naming the folder) a run whose step folders are all incomplete: starting
    again at step 0 there would silently throw the run away.
    """
    complete = run.checkpoints()
    folders = run.checkpoint_folders()
    if not complete:
        if folders:
            names = ", ".join(path.name for _, path in folders)
            raise InputError(f"{run.checkpoints_dir}: no complete checkpoint to resume from ({names} "
                             f"{'has' if len(folders) == 1 else 'have'} no {CHECKPOINT_DONE_MARKER}); move those "
                             "folders away to start this run again from step 0")
        return None
    step, path = complete[-1]
    skipped = [p.name for s, p in folders if s > step]
    if skipped and log is not None:
        log.warning("Skipping incomplete checkpoint(s) %s (no %s); resuming from %s", ", ".join(skipped),
                    CHECKPOINT_DONE_MARKER, path.name)
    return step, path


def read_state(checkpoint: Path) -> dict[str, Any]:
    """``checkpoint/state.json``, checked: every field the loop reads has its type and range."""
    file = checkpoint / CHECKPOINT_DONE_MARKER
    try:
        if not file.is_file():
            raise InputError(f"{file}: missing or not a regular file")
        if file.stat().st_size > STATE_JSON_LIMIT:
            raise InputError(f"{file}: {file.stat().st_size:,} bytes is far too big for a checkpoint's state")
        data = json.loads(file.read_text(encoding="utf-8"))
    except InputError:
        raise
    except (OSError, UnicodeDecodeError, ValueError, RecursionError) as exc:
        raise InputError(f"{file} cannot be read ({type(exc).__name__}: {exc}); "
                         f"delete {checkpoint} to resume from the checkpoint before it") from None
    if not isinstance(data, dict):
        raise InputError(f"{file}: must be a JSON object, got {_json_type(data)}")
    problems = []
    if "step" not in data:
        problems.append("step is missing")
    elif not _is_whole(data["step"]) or data["step"] < 0:
        problems.append(f"step must be a whole number ≥ 0, got {_shown(data['step'])}")
    else:
        named = _folder_step(checkpoint)
        if named is not None and data["step"] != named:
            problems.append(f"step is {data['step']} but the folder is for step {named}")
    if "elapsed_s" in data and not (_is_number(data["elapsed_s"]) and data["elapsed_s"] >= 0):
        problems.append(f"elapsed_s must be a finite number of seconds ≥ 0, got {_shown(data['elapsed_s'])}")
    for name in ("total_steps", "processes"):
        if name in data and not (_is_whole(data[name]) and data[name] >= 1):
            problems.append(f"{name} must be a whole number ≥ 1, got {_shown(data[name])}")
    for name in ("mode", "saved_at"):
        if name in data and not isinstance(data[name], str):
            problems.append(f"{name} must be a string, got {_json_type(data[name])}")
    if problems:
        raise InputError(f"{file}: " + "; ".join(problems))
    return data


def load_checkpoint(path: Path) -> tuple[dict[str, Any], dict[str, torch.Tensor], dict[str, Any]]:
    """(checked state.json, weights, training_state) of a complete checkpoint folder."""
    state = read_state(path)
    try:
        weights = load_file(path / WEIGHTS_FILE)
    except Exception as exc:  # a corrupt header can raise almost any type
        raise InputError(f"{path / WEIGHTS_FILE} cannot be read ({type(exc).__name__}: {exc}); "
                         f"delete {path} to resume from the checkpoint before it") from None
    try:
        training_state = torch.load(path / STATE_FILE, map_location="cpu", weights_only=True)
    except Exception as exc:  # a corrupt or hostile pickle can raise almost any type
        raise InputError(f"{path / STATE_FILE} cannot be read ({type(exc).__name__}: {exc}); "
                         f"delete {path} to resume from the checkpoint before it") from None
    if not isinstance(training_state, dict) or not all(isinstance(k, str) for k in training_state):
        raise InputError(f"{path / STATE_FILE}: must hold a dict of named states, got {type(training_state).__name__}")
    return state, weights, training_state


def restore_checkpoint(job: TrainingJob, path: Path) -> dict[str, Any]:
    """Load the checkpoint at ``path`` into ``job``; returns its checked state.json.

    A state the job cannot take (a missing key, a value of the wrong type or shape) is refused
    naming the checkpoint's files instead of ending in a traceback deep in torch.
    """
    state, weights, training_state = load_checkpoint(path)
    # The job's own state right after setup is the template: same keys, same kinds of values.
    problems: list[str] = []
    _check_like(job.training_state(), training_state, "", problems)
    if problems:
        shown = "; ".join(problems[:5]) + (f"; and {len(problems) - 5} more" if len(problems) > 5 else "")
        raise InputError(f"{path / STATE_FILE}: {shown}; delete {path} to resume from the checkpoint before it")
    files = f"{path / WEIGHTS_FILE} / {path / STATE_FILE}"
    try:
        job.load_state(weights, training_state)
    except InputError as exc:
        raise InputError(f"{path}: {exc}") from None
    except KeyError as exc:
        raise InputError(f"{path / STATE_FILE}: {exc} is missing or misplaced; delete {path} to resume from the "
                         "checkpoint before it") from None
    except torch.OutOfMemoryError:
        raise
    except (TypeError, ValueError, RuntimeError, IndexError, AttributeError) as exc:
        raise InputError(f"{files} do not fit this run ({type(exc).__name__}: {_first_line(exc)}); "
                         f"delete {path} to resume from the checkpoint before it") from None
    return state


def _check_like(template: Any, value: Any, where: str, problems: list[str]) -> None:
    """Note where ``value`` differs in kind from ``template`` (a state this job saved would not).

    Only kinds are compared — a tensor, a dict with the template's keys, a list, a whole number,
    a number, a string, true/false — never sizes or contents, which legitimately change as training
    goes (the optimizer's per-parameter state is empty before the first step, for instance).
    """
    name = where or "the state"
    if template is None:
        return
    if isinstance(template, torch.Tensor):
        if not isinstance(value, torch.Tensor):
            problems.append(f"{name} must be a tensor, got {_kind(value)}")
        elif value.dtype != template.dtype:
            problems.append(f"{name} must be a {template.dtype} tensor, got {value.dtype}")
    elif isinstance(template, dict):
        if not isinstance(value, dict):
            problems.append(f"{name} must be a dict, got {_kind(value)}")
            return
        for key, inner in template.items():
            child = f"{where}.{key}" if where else str(key)
            if key not in value:
                problems.append(f"{child} is missing")
            else:
                _check_like(inner, value[key], child, problems)
    elif isinstance(template, (list, tuple)):
        if not isinstance(value, (list, tuple)):
            problems.append(f"{name} must be a list, got {_kind(value)}")
            return
        for index, (inner, item) in enumerate(zip(template, value, strict=False)):
            _check_like(inner, item, f"{where}[{index}]", problems)
    elif isinstance(template, bool):
        if not isinstance(value, bool):
            problems.append(f"{name} must be true or false, got {_kind(value)}")
    elif isinstance(template, int):
        if not _is_whole(value):
            problems.append(f"{name} must be a whole number, got {_kind(value)}")
    elif isinstance(template, float):
        if not (isinstance(value, (int, float)) and not isinstance(value, bool)):
            problems.append(f"{name} must be a number, got {_kind(value)}")
    elif isinstance(template, str) and not isinstance(value, str):
        problems.append(f"{name} must be a string, got {_kind(value)}")


def _kind(value: Any) -> str:
    if isinstance(value, torch.Tensor):
        return f"a {value.dtype} tensor"
    return {dict: "a dict", list: "a list", tuple: "a list", str: "a string", bool: "true/false",
            type(None): "None", int: "a whole number", float: "a number"}.get(type(value), type(value).__name__)


def _folder_step(checkpoint: Path) -> int | None:
    name = checkpoint.name.rsplit("step-", 1)[-1]
    return int(name) if name.isdigit() else None


def _is_whole(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _json_type(value: Any) -> str:
    names = {dict: "an object", list: "a list", str: "a string", bool: "true/false", type(None): "null",
             int: "a number", float: "a number"}
    return names.get(type(value), type(value).__name__)


def _shown(value: Any) -> str:
    text = json.dumps(value) if not isinstance(value, float) or math.isfinite(value) else str(value)
    return text if len(text) <= 40 else text[:37] + "..."


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0][:300] if text else ""

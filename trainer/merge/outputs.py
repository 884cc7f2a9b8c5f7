"""Where merge results go: the output-path guard, atomic folder publishing and provenance metadata.

Two promises: an input is never overwritten (an output equal to, inside or around an input is
refused before any work), and an output appears whole or not at all (files via temp + rename,
folders written under a hidden staging name and renamed into place).
"""

from __future__ import annotations

import json
import shutil
import tempfile
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any, Protocol

from trainer.errors import InputError

MERGE_METADATA_KEY = "kamaal.merge"
MERGE_INFO_FILE = "kamaal_merge.json"  # beside the weights in a diffusers folder output


class Reporter(Protocol):
    """What a merge tells its caller; ``trainer.tasks.runner.TaskContext`` is one."""

    def progress(self, done: int, total: int, message: str = "") -> None: ...

    def log(self, message: str, level: str = "info") -> None: ...

    def check_cancelled(self) -> None: ...


class NullReporter:
    """Says nothing and never cancels: the default, so merge code needs no ``if reporter`` branches."""

    def progress(self, done: int, total: int, message: str = "") -> None:
        pass

    def log(self, message: str, level: str = "info") -> None:
        pass

    def check_cancelled(self) -> None:
        pass


def require_input(path: Path | str, what: str) -> Path:
    """An existing input path, or ``InputError`` naming ``what`` (e.g. ``"model A"``)."""
    if not str(path).strip():
        raise InputError(f"{what}: no path given")
    resolved = Path(path).expanduser()
    if not resolved.exists():
        raise InputError(f"{what}: {resolved} does not exist")
    return resolved


def guard_output(output: Path | str, inputs: Iterable[Path | str], what: str = "output") -> Path:
    """The output path, after refusing one that would overwrite, contain or sit inside an input."""
    if not str(output).strip():
        raise InputError(f"{what}: no output path given")
    out = Path(output).expanduser()
    resolved_out = out.resolve()
    for source in inputs:
        resolved_in = Path(source).expanduser().resolve()
        if resolved_out == resolved_in:
            raise InputError(f"{what}: {out} is also an input; choose a new path (inputs are never overwritten)")
        if resolved_in.is_relative_to(resolved_out):
            raise InputError(f"{what}: {out} contains the input {source}; writing there could replace it")
        if resolved_out.is_relative_to(resolved_in):
            raise InputError(f"{what}: {out} is inside the input {source}; choose a path outside it")
    if out.exists() and out.is_dir() and any(out.iterdir()) and not (out / "model_index.json").is_file():
        # Replacing a folder means deleting it: only ever an earlier model folder, never arbitrary files.
        raise InputError(f"{what}: {out} is a folder that is not empty and holds no diffusers model; "
                         "choose an empty or new folder")
    return out


def staging_folder(target: Path) -> Path:
    """A hidden, empty folder beside ``target`` to write a folder output into."""
    target.parent.mkdir(parents=True, exist_ok=True)
    return Path(tempfile.mkdtemp(prefix=f".{target.name}.", suffix=".partial", dir=target.parent))


def publish_folder(staging: Path, target: Path) -> Path:
    """Move a finished staging folder into place, replacing an earlier output folder there."""
    if target.exists():
        retired = target.with_name(f".{target.name}.old-{time.time_ns()}")
        target.replace(retired)
        staging.replace(target)
        shutil.rmtree(retired, ignore_errors=True)
    else:
        staging.replace(target)
    return target


def discard_folder(staging: Path) -> None:
    shutil.rmtree(staging, ignore_errors=True)


def provenance(operation: str, sources: dict[str, Path | str], weights: dict[str, Any],
               extra: dict[str, str] | None = None) -> dict[str, str]:
    """safetensors metadata naming what the output was made from, and how."""
    record = {"operation": operation, "sources": {role: str(path) for role, path in sources.items()},
              "weights": weights, "made": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
    metadata = {MERGE_METADATA_KEY: json.dumps(record, sort_keys=True)}
    metadata.update(extra or {})
    return metadata

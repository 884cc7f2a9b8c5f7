"""The run folder: where one training job keeps its config, metrics, samples, checkpoints and outputs.

Layout (DESIGN.md §4)::

    RUN_DIR/
      config.toml            resolved config, as run
      metrics.jsonl          one JSON object per logged step
      tensorboard/           the same, and the previews, as TensorBoard event files (output.tensorboard)
      samples/step-000000/   preview images
      checkpoints/step-000500/  resumable state; complete once its state.json exists
      .trainer.lock          held (flock/msvcrt) by the one trainer using the folder (trainer.runlock)
      output/                final results
      log.txt

Light (standard library + config): the GUI uses it to create and list runs.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import time
from contextlib import AbstractContextManager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from trainer.config import Config, ConfigError, apply_overrides, config_from_dict, read_toml, save_config
from trainer.errors import refuse_full_disk
from trainer.fsutil import ASIDE_PREFIX, atomic_write_text
from trainer.runlock import lock_run_folder

CHECKPOINT_PATTERN = re.compile(r"^step-(\d{6,})$")
CHECKPOINT_DONE_MARKER = "state.json"  # written last: a checkpoint without it is incomplete
# A checkpoint being replaced (Save now at a step that has one) waits as ASIDE_PREFIX + its name until
# the new one is in place (trainer.fsutil.replace_dir); found beside a missing or incomplete step
# folder, it is the one whole copy of that step.


def step_dirname(step: int) -> str:
    return f"step-{step:06d}"


@dataclass(frozen=True)
class RunFolder:
    root: Path

    @property
    def config_path(self) -> Path:
        return self.root / "config.toml"

    @property
    def metrics_path(self) -> Path:
        return self.root / "metrics.jsonl"

    @property
    def tensorboard_dir(self) -> Path:
        return self.root / "tensorboard"

    @property
    def log_path(self) -> Path:
        return self.root / "log.txt"

    @property
    def samples_dir(self) -> Path:
        return self.root / "samples"

    @property
    def checkpoints_dir(self) -> Path:
        return self.root / "checkpoints"

    @property
    def output_dir(self) -> Path:
        return self.root / "output"

    def checkpoint_dir(self, step: int) -> Path:
        return self.checkpoints_dir / step_dirname(step)

    def sample_dir(self, step: int) -> Path:
        return self.samples_dir / step_dirname(step)

    # -------------------------------------------------------------------- creation

    @classmethod
    def create(cls, config: Config, run_dir: Path | None = None) -> RunFolder:
        """Make a new run folder and snapshot the resolved config into it.

        Without ``run_dir`` a fresh ``RUNS_DIR/RUN_NAME-YYYYmmdd-HHMMSS`` is chosen.  An existing
        run folder (one that holds a config.toml) is refused, so a run is never overwritten.
        """
        if run_dir is None:
            runs_dir = Path(config.output.runs_dir) if config.output.runs_dir else Path.cwd() / "runs"
            run_dir = unique_run_dir(runs_dir, config.output.run_name)
        run = cls(Path(run_dir).resolve())
        if run.config_path.exists():
            raise ConfigError([f"{run.root} already holds a run; use 'kamaal-train resume' or another --run-dir"])
        for folder in (run.root, run.samples_dir, run.checkpoints_dir, run.output_dir):
            folder.mkdir(parents=True, exist_ok=True)
        save_config(config, run.config_path)
        return run

    @classmethod
    def open(cls, run_dir: Path) -> RunFolder:
        run = cls(Path(run_dir).resolve())
        if not run.config_path.is_file():
            raise ConfigError([f"{run.root} is not a run folder (no config.toml)"])
        return run

    def load_config(self) -> Config:
        # The snapshot already holds absolute paths; load it as-is.
        return config_from_dict(read_toml(self.config_path), str(self.config_path))

    def change_config(self, overrides: list[str], from_step: int) -> Config:
        """Apply ``KEY=VALUE`` overrides to the run's config before it resumes from step ``from_step`` (a smaller
        memory plan after an out-of-memory): validated first (a refusal names the field and changes nothing), the
        config as run so far kept beside it as ``config-until-step-N.toml``, the new one written atomically.  Refused
        (:class:`~trainer.runlock.RunFolderBusy`, naming the folder) while a trainer holds it: it runs that config."""
        current = read_toml(self.config_path)
        config = config_from_dict(apply_overrides(current, overrides), f"{self.config_path} with --set")
        lock = lock_run_folder(self.root)
        try:
            kept = self.root / f"config-until-{step_dirname(from_step)}.toml"
            if not kept.exists():  # a second change at the same step keeps the first config as run
                atomic_write_text(kept, self.config_path.read_text(encoding="utf-8"))
            save_config(config, self.config_path)
        finally:
            lock.release()
        return config

    # -------------------------------------------------------------------- checkpoints

    def checkpoint_folders(self) -> list[tuple[int, Path]]:
        """Every ``step-N`` folder, complete or not, oldest first."""
        found = []
        if self.checkpoints_dir.is_dir():
            for child in self.checkpoints_dir.iterdir():
                match = CHECKPOINT_PATTERN.match(child.name)
                if match and child.is_dir():
                    found.append((int(match.group(1)), child))
        return sorted(found)

    def checkpoints(self) -> list[tuple[int, Path]]:
        """Complete checkpoints, oldest first.

        A step whose replacement was interrupted (its folder missing or incomplete, the old copy
        still aside) is listed at the aside copy: reading never renames, the trainer's
        :meth:`recover_interrupted_saves` puts it back.
        """
        found = {step: path for step, path in self.checkpoint_folders() if is_complete(path)}
        for step, aside in self._asides():
            if step not in found and is_complete(aside):
                found[step] = aside
        return sorted(found.items())

    def recover_interrupted_saves(self) -> list[str]:
        """Finish what a killed checkpoint replacement left: the whole copy of each step goes back to
        ``step-N``, stale aside copies go.  Only the trainer that holds the folder's lock calls this.
        Returns what it did, for the log."""
        done = []
        for step, aside in self._asides():
            final = self.checkpoint_dir(step)
            if is_complete(final):
                shutil.rmtree(aside, ignore_errors=True)  # the new copy made it in; the old one was going
            elif is_complete(aside):
                if final.exists():
                    shutil.rmtree(final)
                os.replace(aside, final)
                done.append(f"recovered checkpoint {final.name} (its replacement was interrupted)")
        return done

    def disk_full_advice(self, then: str = "resume the run") -> str:
        """What a full-disk refusal adds: which checkpoint is safe, and how to carry on."""
        latest = self.latest_checkpoint()
        kept = f"The last checkpoint, {latest[1].name}, is kept" if latest else "No checkpoint has been saved yet"
        return f"{kept}; free some space there, then {then} (kamaal-train resume {self.root})."

    def writing_outputs(self, needed: int | None) -> AbstractContextManager[None]:
        """Around an export into ``output/``: a full disk becomes a DiskFullError naming the folder and
        about how much the outputs need (the writer removes its own staging files first)."""
        return refuse_full_disk(self.output_dir, "the outputs", needed,
                                self.disk_full_advice("resume the run to write the outputs"))

    def _asides(self) -> list[tuple[int, Path]]:
        found = []
        if self.checkpoints_dir.is_dir():
            for child in self.checkpoints_dir.glob(f"{ASIDE_PREFIX}step-*"):
                match = CHECKPOINT_PATTERN.match(child.name[len(ASIDE_PREFIX):])
                if match and child.is_dir():
                    found.append((int(match.group(1)), child))
        return sorted(found)

    def latest_checkpoint(self) -> tuple[int, Path] | None:
        found = self.checkpoints()
        return found[-1] if found else None

    # -------------------------------------------------------------------- metrics

    def read_metrics(self) -> list[dict[str, Any]]:
        """Every metrics row; a torn last line (the process died mid-write) is skipped."""
        rows = []
        if self.metrics_path.is_file():
            for line in self.metrics_path.read_text(encoding="utf-8").splitlines():
                try:
                    rows.append(json.loads(line))
                except json.JSONDecodeError:
                    continue
        return rows


def is_complete(checkpoint: Path) -> bool:
    """A checkpoint folder is complete once its state.json (written last) is a regular file."""
    return (checkpoint / CHECKPOINT_DONE_MARKER).is_file()


def unique_run_dir(runs_dir: Path, run_name: str) -> Path:
    stamp = time.strftime("%Y%m%d-%H%M%S")
    candidate = runs_dir / f"{run_name}-{stamp}"
    suffix = 2
    while candidate.exists():
        candidate = runs_dir / f"{run_name}-{stamp}-{suffix}"
        suffix += 1
    return candidate

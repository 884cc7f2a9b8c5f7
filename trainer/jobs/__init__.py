"""Training jobs: one class per kind of training, found through a registry.

The worker loop is the same for every mode; a job supplies the model, a training step, the
previews, and what goes into checkpoints and outputs.  Register new kinds in ``JOBS``.
"""

from __future__ import annotations

import importlib
import logging

from trainer import families
from trainer.config import Config
from trainer.jobs.base import TrainingJob
from trainer.runfolder import RunFolder
from trainer.runlog import EventSink

# (architecture, mode) → "module:Class", as each family declares (trainer/families).  Imported lazily so
# a job's heavy dependencies load only when that job runs.
JOBS: dict[tuple[str, str], str] = {
    (name, mode): family.job for name, family in families.FAMILIES.items() for mode in family.modes}


def create_job(config: Config, run: RunFolder, sink: EventSink, logger: logging.Logger) -> TrainingJob:
    key = (config.model.architecture, config.mode)
    target = JOBS.get(key)
    if target is None:
        from trainer.errors import InputError

        raise InputError(f"mode: '{config.mode}' training for model.architecture "
                         f"'{config.model.architecture}' is not available in this version of Kamaal")
    module_name, class_name = target.split(":")
    job_class = getattr(importlib.import_module(module_name), class_name)
    return job_class(config, run, sink, logger)

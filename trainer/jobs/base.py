"""The contract between the worker loop and a kind of training."""

from __future__ import annotations

import logging
from abc import ABC, abstractmethod
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from trainer.config import Config
from trainer.protocol import Activity
from trainer.runfolder import RunFolder
from trainer.runlog import EventSink


@dataclass
class StepResult:
    """``loss``: a float, or a 0-d tensor still on the device: the worker turns it into a float (on a GPU, a read
    that waits for every queued kernel) only on the steps it logs, so the others never stall the GPU's queue."""

    loss: float | torch.Tensor


class TrainingJob(ABC):
    """One training run's model, data and optimizer.  The worker owns the loop around it.

    Call order: ``setup()`` → (``load_state`` when resuming) → ``preview`` / ``train_step`` /
    ``evaluate`` / ``checkpoint_*`` as the loop decides → ``export()``.
    """

    device: str = "cpu"
    supports_distributed = False  # True when the job trains correctly under accelerate launch (trainer.distributed)

    def __init__(self, config: Config, run: RunFolder, sink: EventSink, logger: logging.Logger) -> None:
        self.config = config
        self.run = run
        self.sink = sink
        self.log = logger

    @abstractmethod
    def setup(self) -> None:
        """Build the model, data, optimizer and scheduler (bad input raises InputError)."""

    @abstractmethod
    def train_step(self, step: int) -> StepResult:
        """Do optimizer step number ``step`` (0-based)."""

    def undo_failed_step(self) -> bool:
        """After a step that failed part-way (out of memory): drop its gradients and rewind what it drew (random
        streams, the data order), so that the state is the one after the last completed step.  False when that
        cannot be promised (the failure came while the weights or the optimizer were being updated, or the job
        does not support it): then nothing of the current state may be saved."""
        return False

    def image_count(self) -> int:
        """How many distinct images the run trains on (the memory plan counts its caches by it); 0: unknown."""
        return 0

    @abstractmethod
    def current_lr(self) -> float:
        """Learning rate of the next step."""

    def evaluate(self) -> float | None:
        """Held-out loss, or None when the job has no held-out set."""
        return None

    def preview_every(self) -> int:
        """Steps between previews (0 = only at start, end and on request)."""
        return self.config.sampling.every_n_steps

    def preview_at_start(self) -> bool:
        """Whether to preview before the first step (step 0 shows the base model)."""
        return True

    @abstractmethod
    def preview(self, step: int, final: bool = False) -> None:
        """Emit what the preview shows at this step (weights, or sample images on disk).

        ``final``: the samples at the end of the run, drawn after the final checkpoint and outputs.
        A preview that takes long reports each part through :meth:`report_activity`.
        """

    def report_activity(self, text: str, done: int = 0, total: int = 0) -> None:
        """Say what long work is under way ("drawing final samples", 3, 8): a Stop waits while these come."""
        self.sink.emit(Activity(text, done, total))

    @abstractmethod
    def checkpoint_weights(self) -> dict[str, torch.Tensor]:
        """The trainable weights, as a flat tensor dict (saved as safetensors)."""

    @abstractmethod
    def training_state(self) -> dict[str, Any]:
        """Optimizer, scheduler and RNG states: tensors and plain Python values only."""

    @abstractmethod
    def load_state(self, weights: dict[str, torch.Tensor], training_state: dict[str, Any]) -> None:
        """Restore what checkpoint_weights and training_state returned."""

    @abstractmethod
    def export(self, output_dir: Path) -> list[Path]:
        """Write the final results; return their paths."""

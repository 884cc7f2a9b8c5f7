"""TensorBoard event files beside ``metrics.jsonl`` (``output.tensorboard``): the losses, the learning rate, the
held-out loss and speed as scalars, and every preview image under its prompt and seed, in ``RUN_DIR/tensorboard``
— what kohya's and OneTrainer's users open with ``tensorboard --logdir RUN_DIR``.  ``metrics.jsonl`` stays the
record the app reads; these files are written beside it, and a resumed run purges the events after its
checkpoint's step (as ``MetricsWriter`` truncates its rows), so the curves do not fold back on themselves.

Written by torch's ``SummaryWriter`` (the ``tensorboard`` package).  A writer that cannot work (the package
missing, a full disk) says so once in the log and stops; training never fails for it.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

SCALARS = {"loss": "loss/train", "heldout_loss": "loss/held_out", "lr": "learning_rate", "it_per_s": "speed/it_per_s"}


class TensorBoardLog:
    def __init__(self, folder: Path, logger: logging.Logger, resume_from_step: int | None = None) -> None:
        self.log = logger
        self.writer: Any = None
        try:
            from torch.utils.tensorboard import SummaryWriter

            # TensorBoard purges the events at purge_step and after: those after the checkpoint's step.
            purge = None if resume_from_step is None else resume_from_step + 1
            self.writer = SummaryWriter(log_dir=str(folder), purge_step=purge, flush_secs=30)
        except Exception as error:  # any failure of an optional log (a protobuf clash, a
            self._give_up(error)      # read-only folder) turns it off; the run goes on

    def _give_up(self, error: BaseException) -> None:
        self.log.warning("TensorBoard logging is off for this run (%s); metrics.jsonl has everything",
                         str(error).splitlines()[0] if str(error) else type(error).__name__)
        if self.writer is not None:
            try:
                self.writer.close()
            except OSError:
                pass
        self.writer = None

    def write(self, row: dict[str, Any]) -> None:
        if self.writer is None:
            return
        try:
            for key, tag in SCALARS.items():
                value = row.get(key)
                if value is not None:
                    self.writer.add_scalar(tag, float(value), int(row["step"]))
        except Exception as error:  # see __init__
            self._give_up(error)

    def images(self, step: int, paths: tuple[str, ...], prompts: tuple[str, ...], seeds: tuple[int, ...]) -> None:
        if self.writer is None:
            return
        import numpy as np
        from PIL import Image

        try:
            for path, prompt, seed in zip(paths, prompts, seeds, strict=True):
                with Image.open(path) as image:
                    pixels = np.asarray(image.convert("RGB"))
                self.writer.add_image(f"samples/{Path(path).stem}", pixels, step, dataformats="HWC")
                self.writer.add_text(f"samples/{Path(path).stem}", f"{prompt} (seed {seed})", step)
        except Exception as error:  # see __init__ (an unreadable image too)
            self._give_up(error)

    def flush(self) -> None:
        if self.writer is not None:
            try:
                self.writer.flush()
            except OSError as error:
                self._give_up(error)

    def close(self) -> None:
        if self.writer is not None:
            try:
                self.writer.close()
            except OSError:
                pass
            self.writer = None

"""Children for the failure tests: the real trainer child with a bug planted in it.

They run in a spawn child (the target is imported there by name), so the bug is planted in that
process only: the worker's own guard or the child's last-resort guard must turn it into ``Failed``.
"""

from __future__ import annotations

from typing import Any

from trainer.process import child_main


def train_with_a_bug(where: str, run_dir: str, commands: Any, events: Any) -> None:
    """``child_main`` with an exception planted ``"in_the_loop"`` (a training step) or ``"outside_the_worker"``."""
    import trainer.worker
    from trainer.jobs.toy import ToyJob

    def broken_step(self: ToyJob, step: int) -> float:
        raise RuntimeError("disk on fire")

    def broken_worker(*args: Any, **kwargs: Any) -> int:
        raise RuntimeError("disk on fire")

    if where == "in_the_loop":
        ToyJob.train_step = broken_step  # type: ignore[method-assign]
    else:
        trainer.worker.run_worker = broken_worker  # type: ignore[assignment]
    child_main(run_dir, False, commands, events)

"""One process or several: what the loop needs to know when ``accelerate launch`` starts N copies.

``accelerate launch --multi_gpu --num_processes N -m trainer train CONFIG`` (or ``torchrun
--nproc_per_node N -m trainer train CONFIG``) starts N processes with ``RANK``/``WORLD_SIZE`` set;
without CUDA they train on the CPU over gloo.  (accelerate's ``--cpu`` flag alone starts a single
process unless MPI is set up.)  All of them train in lockstep — same
steps, same global batches, gradients averaged — but only the main process (rank 0) creates the
run folder, reports events, writes log.txt, metrics.jsonl, samples, checkpoints and outputs.

Lockstep is the rule every collective call here relies on: each process calls the same methods
in the same order.  That is why commands (Stop, Pause, SampleNow…) are read by the main process
only and broadcast at each step boundary (:class:`SyncedCommands`), instead of each process
reading its own keyboard.

Without a launcher this is :data:`SINGLE`: every method is a no-op, so the single-process path
(the GUI, the plain CLI, the tests) runs the very same loop code.
"""

from __future__ import annotations

import os
from datetime import timedelta
from typing import Any, SupportsFloat

from trainer.protocol import Command
from trainer.runlog import CommandSource

# Long enough for the main process to generate class images or sample while the others wait.
COLLECTIVE_TIMEOUT = timedelta(hours=6)


def launched_world_size() -> int:
    """How many processes a launcher started (1 when run directly)."""
    try:
        return max(1, int(os.environ.get("WORLD_SIZE", "1")))
    except ValueError:
        return 1


class Distributed:
    """The single-process case; :class:`TorchDistributed` overrides each method."""

    rank = 0
    world_size = 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def broadcast(self, value: Any) -> Any:
        """The main process's ``value``, on every process."""
        return value

    def gather(self, value: Any) -> list[Any] | None:
        """Every process's ``value``, in rank order, on the main process (None elsewhere)."""
        return [value]

    def mean(self, value: SupportsFloat) -> SupportsFloat:
        """The mean of ``value`` (a float or a 0-d tensor) over all processes, on every process.  One process: the
        value as it is, so a tensor on the GPU is not read (a read waits for the GPU) until someone needs it."""
        return value

    def barrier(self) -> None:
        """Wait until every process has got here."""


SINGLE = Distributed()


class TorchDistributed(Distributed):
    """Several processes under ``accelerate launch`` (gloo on the CPU, NCCL on GPUs)."""

    def __init__(self) -> None:
        import torch
        import torch.distributed as dist
        from accelerate import PartialState

        # The first PartialState sets up the process group; the job's Accelerator reuses it.  Without
        # CUDA it must be told "cpu", or it sees no accelerator and quietly trains N separate copies.
        cpu = os.environ.get("ACCELERATE_USE_CPU", "").lower() in ("1", "true") or not torch.cuda.is_available()
        state = PartialState(cpu=cpu, timeout=COLLECTIVE_TIMEOUT)
        if state.num_processes != launched_world_size():
            raise RuntimeError(f"accelerate set up {state.num_processes} process(es) but the launcher started "
                               f"{launched_world_size()}")
        self._dist = dist
        self._device = state.device
        self.rank, self.world_size = state.process_index, state.num_processes

    def broadcast(self, value: Any) -> Any:
        box = [value if self.is_main else None]
        self._dist.broadcast_object_list(box, src=0)
        return box[0]

    def gather(self, value: Any) -> list[Any] | None:
        everything: list[Any] = [None] * self.world_size
        self._dist.all_gather_object(everything, value)  # all_gather: NCCL has no gather_object to CPU lists
        return everything if self.is_main else None

    def mean(self, value: SupportsFloat) -> SupportsFloat:
        import torch

        total = torch.tensor([float(value)], device=self._device)
        self._dist.all_reduce(total)
        return float(total) / self.world_size

    def barrier(self) -> None:
        self._dist.barrier()


def current() -> Distributed:
    """:data:`SINGLE`, or the process group of an ``accelerate launch`` (set up on first call)."""
    global _current
    if _current is None:
        _current = TorchDistributed() if launched_world_size() > 1 else SINGLE
    return _current


_current: Distributed | None = None


class SyncedCommands:
    """Commands read by the main process and handed to all, so every process obeys them at the same step."""

    def __init__(self, commands: CommandSource, dist: Distributed) -> None:
        self._commands, self._dist = commands, dist

    def poll(self) -> Command | None:
        return self._dist.broadcast(self._commands.poll() if self._dist.is_main else None)

    def wait(self, timeout: float) -> Command | None:
        return self._dist.broadcast(self._commands.wait(timeout) if self._dist.is_main else None)

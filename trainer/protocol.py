"""Typed messages between the GUI and the trainer process.

Small, frozen, picklable dataclasses that travel over two multiprocessing queues:
commands GUI → trainer, events trainer → GUI.  Images travel as file paths, never as
pixels or tensors; weights for the toy preview travel as plain tuples of floats.
Standard library only, so either side can import it cheaply.
"""

from __future__ import annotations

from dataclasses import dataclass, field

# ----------------------------------------------------------------------------- commands


@dataclass(frozen=True)
class Stop:
    """Stop at the next step boundary; with ``save`` write a checkpoint and the outputs first."""

    save: bool = True


@dataclass(frozen=True)
class Pause:
    """Hold at the next step boundary; the model and optimizer stay in memory."""


@dataclass(frozen=True)
class Resume:
    """Continue after a Pause."""


@dataclass(frozen=True)
class SampleNow:
    """Draw samples (or, for the toy network, send its weights) at the next step boundary."""


@dataclass(frozen=True)
class SaveNow:
    """Write a resumable checkpoint at the next step boundary."""


Command = Stop | Pause | Resume | SampleNow | SaveNow

# ----------------------------------------------------------------------------- events


@dataclass(frozen=True)
class Started:
    run_dir: str
    mode: str
    start_step: int  # > 0 when resuming
    total_steps: int
    device: str
    pid: int


@dataclass(frozen=True)
class Progress:
    """Training progress; at step 0 (before any step) ``loss`` is NaN and only ``heldout_loss`` is set."""

    step: int  # steps completed
    total_steps: int
    loss: float
    lr: float
    it_per_s: float
    eta_s: float
    elapsed_s: float
    memory_bytes: int  # CUDA allocated, or the process RSS on the CPU
    memory_kind: str  # "cuda" or "rss"
    peak_memory_bytes: int = 0
    heldout_loss: float | None = None  # present on the steps where it was measured


@dataclass(frozen=True)
class LayerSnapshot:
    """One layer of a small network, for the weights/bias preview."""

    name: str
    shape: tuple[int, int]  # (out_features, in_features)
    weight: tuple[float, ...]  # row-major, len = out * in
    bias: tuple[float, ...]
    frozen: bool


@dataclass(frozen=True)
class LayerWeights:
    step: int
    layers: tuple[LayerSnapshot, ...]


@dataclass(frozen=True)
class Sample:
    step: int
    paths: tuple[str, ...]
    prompts: tuple[str, ...]
    seeds: tuple[int, ...]


@dataclass(frozen=True)
class CheckpointSaved:
    step: int
    path: str


@dataclass(frozen=True)
class Paused:
    step: int


@dataclass(frozen=True)
class Resumed:
    step: int


@dataclass(frozen=True)
class Activity:
    """What the trainer is busy with outside the training steps: "saving checkpoint", "writing outputs",
    "drawing final samples" (``done`` of ``total``; ``total`` 0 when it is one piece).

    Sent before each piece of long work and after each part of a loop, so a silence means "one piece
    is taking long", never "finished": the GUI keeps waiting for a Stop as long as these arrive.
    """

    text: str
    done: int = 0
    total: int = 0


@dataclass(frozen=True)
class Log:
    level: str  # "info", "warning", "error"
    message: str


@dataclass(frozen=True)
class Failed:
    """The run could not go on.  ``kind`` is "input" for bad input the user can fix
    (config, dataset, model file; the message names it) and "error" for anything else."""

    kind: str
    message: str
    traceback: str = ""


@dataclass(frozen=True)
class Finished:
    run_dir: str
    step: int
    stopped: bool  # True when a Stop command ended the run early
    outputs: tuple[str, ...] = field(default_factory=tuple)
    warnings: tuple[str, ...] = field(default_factory=tuple)  # what went wrong after the save (final samples)


@dataclass(frozen=True)
class OutOfMemory:
    """The run ran out of memory in step ``step`` (1-based: the step that failed) and ended cleanly, its state saved.

    ``checkpoint`` is where it continues from ("" when nothing was saved yet): the state after step
    ``checkpoint_step``, the failed step undone.  ``peak_bytes``/``limit_bytes``: the memory held at the peak and what
    the run could hold (0: unknown).  ``plan_changes`` ("section.field" → value; empty: no smaller plan exists) is
    the next-smaller memory plan, which ``plan_text`` explains; ``plan_fits`` says whether its estimate fits.
    """

    run_dir: str
    step: int
    checkpoint: str
    checkpoint_step: int
    device: str  # "cuda" or "cpu"
    message: str  # the allocator's own words, first line
    peak_bytes: int = 0
    limit_bytes: int = 0
    plan_changes: dict = field(default_factory=dict)
    plan_text: str = ""
    plan_fits: bool = False


@dataclass(frozen=True)
class TaskProgress:
    """Progress of a short task (not a training run): ``done`` of ``total`` units; ``total`` 0 when unknown.
    ``data``: plain data the task hands over with this unit (the captioning task: each image's caption), so
    the GUI can use a unit's result as it arrives and keep it when the task is cancelled later."""

    done: int
    total: int
    message: str = ""
    data: dict = field(default_factory=dict)


@dataclass(frozen=True)
class TaskDone:
    """A task finished; ``result`` is plain data (dicts, lists, strings, numbers), its shape set by the task."""

    task: str
    result: dict = field(default_factory=dict)


Event = (Started | Progress | LayerWeights | Sample | CheckpointSaved | Paused | Resumed | Activity
         | Log | Failed | Finished | OutOfMemory | TaskProgress | TaskDone)

# Exit codes of the CLI and of the trainer process.
EXIT_OK = 0
EXIT_ERROR = 1
EXIT_BAD_INPUT = 2
EXIT_OUT_OF_MEMORY = 4  # ended cleanly after running out of memory (3: the trainer process's orphan exit)

"""``kamaal-train``: the headless command line.

It runs the very same worker as the app, in-process, with a terminal progress bar instead
of the GUI.  Exit codes: 0 done (or stopped with a save), 2 bad input (config, dataset,
model file — the message names it), 4 out of memory (the state saved, a smaller plan printed),
1 anything else.
"""

from __future__ import annotations

import argparse
import math
import os
import queue
import shlex
import signal
import sys
from collections.abc import Sequence
from pathlib import Path
from types import FrameType

from trainer import families, threads
from trainer.config import load_config
from trainer.errors import BAD_INPUT_ERRORS
from trainer.fsutil import is_disk_full
from trainer.memory_plan import gb, plan_overrides
from trainer.memory_plan_cli import add_plan_parser
from trainer.merge.cli import add_merge_parser
from trainer.preflight import check_inputs
from trainer.process import QueueCommands
from trainer.protocol import (
    EXIT_BAD_INPUT,
    EXIT_ERROR,
    Activity,
    CheckpointSaved,
    Event,
    Failed,
    Finished,
    Log,
    OutOfMemory,
    Progress,
    Sample,
    Started,
    Stop,
)
from trainer.runfolder import RunFolder


def detach_stdout() -> None:
    """The reader of stdout has gone (``kamaal-train … | head``): point stdout at the null device, so that later
    prints and the interpreter's last flush write nowhere instead of raising BrokenPipeError again."""
    try:
        fd = sys.stdout.fileno()
    except (AttributeError, OSError, ValueError):  # not a real file (a test's capture): replace the object
        sys.stdout = open(os.devnull, "w", encoding="utf-8")  # open for the rest of the process
        return
    null = os.open(os.devnull, os.O_WRONLY)
    os.dup2(null, fd)
    os.close(null)


def _print_out(text: str, flush: bool = False) -> None:
    """A line on stdout for whoever reads it; a reader that has gone stops nothing (the run goes on and ends as
    it would have: its outputs and log.txt are what count, not the lines a ``| head`` did not want)."""
    try:
        print(text, flush=flush)
    except BrokenPipeError:
        detach_stdout()


class TerminalEvents:
    """Shows worker events in a terminal: a tqdm bar for progress, lines for the rest."""

    def __init__(self) -> None:
        self._bar = None
        self._mode = ""
        self.failed: Failed | None = None
        self.finished: Finished | None = None
        self.out_of_memory: OutOfMemory | None = None

    def emit(self, event: Event) -> None:
        from tqdm import tqdm

        if isinstance(event, Started):
            _print_out(f"Run folder: {event.run_dir}", flush=True)
            self._mode = event.mode
            self._bar = tqdm(total=event.total_steps, initial=event.start_step, unit="step", dynamic_ncols=True,
                             desc=event.mode, file=sys.stderr)
        elif isinstance(event, Activity) and self._bar is not None:  # the bar says what the trainer is doing
            count = f" {event.done}/{event.total}" if event.total else ""
            self._bar.set_description_str(f"{self._mode}: {event.text}{count}")
        elif isinstance(event, Progress) and self._bar is not None:
            if self._bar.desc != self._mode:
                self._bar.set_description_str(self._mode, refresh=False)
            self._bar.update(event.step - self._bar.n)
            postfix = {"loss": f"{event.loss:.4g}", "lr": f"{event.lr:.2e}"} if math.isfinite(event.loss) \
                else {"lr": f"{event.lr:.2e}"}  # no loss yet (the first logged step can have none): say nothing
            if event.heldout_loss is not None:
                postfix["held-out"] = f"{event.heldout_loss:.4g}"
            self._bar.set_postfix(postfix, refresh=False)
        elif isinstance(event, Log):
            self._write(f"[{event.level}] {event.message}")
        elif isinstance(event, Sample):
            folder = Path(event.paths[0]).parent if event.paths else None
            self._write(f"samples at step {event.step}: {len(event.paths)} image{'s' if len(event.paths) != 1 else ''}"
                        + (f" in {folder}" if folder else ""))
        elif isinstance(event, CheckpointSaved):
            pass  # already logged by the worker
        elif isinstance(event, Failed):
            self.failed = event
            self._close()
            if event.kind != "input" and event.traceback:
                print(event.traceback, file=sys.stderr)
            print(f"error: {event.message}", file=sys.stderr)
        elif isinstance(event, OutOfMemory):
            self.out_of_memory = event
            self._close()
            print(describe_out_of_memory(event), file=sys.stderr, flush=True)
        elif isinstance(event, Finished):
            self.finished = event
            self._close()
            _print_out(f"{'Stopped' if event.stopped else 'Finished'} at step {event.step}.")
            for path in event.outputs:
                _print_out(f"Output: {path}")
            for warning in event.warnings:
                print(f"warning: {warning}", file=sys.stderr)
            _print_out(f"Run folder: {event.run_dir}", flush=True)

    def _write(self, text: str) -> None:
        if self._bar is not None:
            self._bar.write(text, file=sys.stderr)
        else:
            print(text, file=sys.stderr)

    def _close(self) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None


def describe_out_of_memory(event: OutOfMemory) -> str:
    """What happened, what was saved, the next-smaller plan and the command that continues with it."""
    held = [f"held {gb(event.peak_bytes)} at its peak"] if event.peak_bytes else []
    held += [f"could hold {gb(event.limit_bytes)}"] if event.limit_bytes else []
    lines = [f"error: out of memory in step {event.step} on {event.device} ({event.message})."
             + (f" The run {' and '.join(held)}." if held else "")]
    if event.checkpoint:
        lines.append(f"Saved: the state after step {event.checkpoint_step}, in {event.checkpoint}.")
    else:
        lines.append("Nothing could be saved: no checkpoint holds this run yet.")
    lines += ["Next-smaller plan:" if event.plan_changes else "Plan:", event.plan_text]
    if event.plan_changes:
        command = " ".join(["kamaal-train", "resume", shlex.quote(event.run_dir),
                            *(f"--set {shlex.quote(item)}" for item in plan_overrides(event.plan_changes))])
        lines += ["To continue with it:", f"  {command}"]
    return "\n".join(lines)


class InterruptCommands(QueueCommands):
    """Commands from the keyboard: the first Ctrl-C asks for a Stop with save; a second only says that it is
    still saving (people press it again out of impatience, and the save may take minutes); the third aborts
    without saving."""

    ABORT_AT = 3

    def __init__(self) -> None:
        super().__init__(queue.SimpleQueue())
        self._interrupts = 0
        self._previous = None

    def __enter__(self) -> InterruptCommands:
        self._previous = signal.signal(signal.SIGINT, self._on_interrupt)
        return self

    def __exit__(self, *exc: object) -> None:
        signal.signal(signal.SIGINT, self._previous)

    def _on_interrupt(self, signum: int, frame: FrameType | None) -> None:
        self._interrupts += 1
        if self._interrupts >= self.ABORT_AT:
            raise KeyboardInterrupt
        if self._interrupts == 1:
            print("\nStopping after this step and saving a checkpoint and the outputs…",
                  file=sys.stderr, flush=True)
            self._queue.put(Stop(save=True))
        else:
            print("\nStill stopping: the checkpoint and the outputs are being saved. Press Ctrl-C once more to "
                  "abort without saving (what is not saved yet is lost).", file=sys.stderr, flush=True)


def quiet_libraries() -> None:
    """The terminal shows Kamaal's own lines: diffusers' and transformers' info chatter and loading bars
    (several per model load) would bury the progress bar; their errors still show."""
    import diffusers
    import transformers

    for library in (diffusers.utils.logging, transformers.utils.logging):
        library.set_verbosity_error()
        library.disable_progress_bar()


def _run(run_dir: Path, resume: bool) -> int:
    from trainer.worker import run_worker  # heavy import only when training

    quiet_libraries()
    with InterruptCommands() as commands:
        try:
            return run_worker(run_dir, commands, TerminalEvents(), resume=resume)
        except KeyboardInterrupt:
            print("Aborted without saving.", file=sys.stderr)
            return 130


def cmd_train(args: argparse.Namespace) -> int:
    from trainer import distributed

    config = load_config(Path(args.config), args.set or [])
    check_inputs(config, str(args.config))  # a missing model or image folder: refused before a run folder exists
    threads.apply_policy()  # before torch loads (distributed.current() may load it): see trainer/threads.py
    dist = distributed.current()  # several processes under `accelerate launch`: only the main one creates
    created: str | None = None
    if dist.is_main:
        try:
            created = str(RunFolder.create(config, Path(args.run_dir) if args.run_dir else None).root)
        finally:
            created = dist.broadcast(created)  # None tells the others that it failed (the error shows on main)
    else:
        created = dist.broadcast(None)
        if created is None:
            return EXIT_BAD_INPUT
    return _run(Path(created), resume=False)


def cmd_resume(args: argparse.Namespace) -> int:
    run = RunFolder.open(Path(args.run_dir))
    if args.set:
        latest = run.latest_checkpoint()
        run.change_config(args.set, latest[0] if latest else 0)
        print(f"Changed {run.config_path}: {', '.join(args.set)}", flush=True)
    threads.apply_policy()  # before torch loads: see trainer/threads.py
    return _run(run.root, resume=True)


def cmd_tiny_model(args: argparse.Namespace) -> int:
    from trainer.models.tiny import build_tiny_model

    path = build_tiny_model(Path(args.out_dir), args.arch, args.seed)
    print(f"Wrote a tiny {args.arch} model to {path}")
    return 0


def cmd_build_shapes_model(args: argparse.Namespace) -> int:
    from dataclasses import replace

    from tqdm import tqdm

    from trainer.shapes.build import BuildSettings, build_shapes_model, total_progress_steps

    settings = replace(BuildSettings(), seed=args.seed, threads=args.threads, snapshot_every=args.snapshot_every)
    with tqdm(total=total_progress_steps(settings), unit="step", dynamic_ncols=True, file=sys.stderr) as bar:
        def progress(steps: int, info: dict) -> None:
            bar.update(steps)
            bar.set_postfix(info, refresh=False)

        path = build_shapes_model(Path(args.out_dir), settings, progress)
    print(f"Wrote the shapes model to {path}")
    return 0


def cmd_blocks(args: argparse.Namespace) -> int:
    import json

    from trainer.freezing import model_blocks

    report = model_blocks(Path(args.model), args.depth, args.trainable or [])
    if args.json:
        print(json.dumps(report, indent=2))
        return 0
    for name, rows in report.items():
        print(f"{name}:")
        for row in rows:
            indent = "  " * row["block"].count(".")
            trained = f"  (trainable {row['trainable']:,})" if row["trainable"] else ""
            print(f"  {indent}{row['block']:<{40 - len(indent)}} {row['parameters']:>14,}{trained}")
    return 0


def cmd_dataset(args: argparse.Namespace) -> int:
    from trainer.dataset.cli import dataset_main

    return dataset_main(args.dataset_args)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="kamaal-train", description="Kamaal's headless trainer.")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    train = commands.add_parser("train", help="run one training job from a config file",
                                description="Run one training job. Ctrl-C stops after the current step "
                                            "and saves a resumable checkpoint and the outputs.")
    train.add_argument("config", metavar="CONFIG.toml", help="config file, e.g. resources/presets/toy.toml")
    train.add_argument("--run-dir", metavar="DIR",
                       help="run folder to create (default: RUNS_DIR/RUN_NAME-TIMESTAMP, RUNS_DIR from "
                            "output.runs_dir or ./runs)")
    train.add_argument("--set", metavar="KEY=VALUE", action="append",
                       help="override a config value, e.g. --set training.learning_rate=1e-4 (repeatable)")
    train.set_defaults(handler=cmd_train)

    resume = commands.add_parser("resume", help="continue a run from its last checkpoint",
                                 description="Continue a run from its newest complete checkpoint, with its own "
                                             "config.toml; the step count, optimizer, scheduler and RNG carry on. "
                                             "Refused (exit 2) while another trainer uses RUN_DIR, and when its "
                                             "checkpoints/ holds step folders but none is complete.")
    resume.add_argument("run_dir", metavar="RUN_DIR", help="the run folder to continue")
    resume.add_argument("--set", metavar="KEY=VALUE", action="append",
                        help="change the run's config before it continues (the memory options of a smaller plan "
                             "after an out-of-memory, e.g. --set training.gradient_checkpointing=true; repeatable); "
                             "the config as run so far is kept as config-until-step-N.toml")
    resume.set_defaults(handler=cmd_resume)

    tiny = commands.add_parser("tiny-model", help="write a tiny offline Stable Diffusion model (for tests and demos)",
                               description="Write a tiny, randomly initialised diffusers model, the same bytes for "
                                           "the same seed. It trains in seconds on a CPU; its samples are noise.")
    tiny.add_argument("out_dir", metavar="OUT_DIR", help="folder to write the diffusers model into")
    tiny.add_argument("--arch", choices=families.TINY_FAMILIES, default=families.TINY_FAMILIES[0],
                      help=f"model family (default: {families.TINY_FAMILIES[0]}; " + ", ".join(
                          f"{name}: {families.family(name).display_name}" for name in families.TINY_FAMILIES) + ")")
    tiny.add_argument("--seed", type=int, default=0, help="seed of the random weights (default: 0)")
    tiny.set_defaults(handler=cmd_tiny_model)

    shapes = commands.add_parser(
        "build-shapes-model", help="pretrain the miniature shapes-world Stable Diffusion (CPU, about an hour)",
        description="Pretrain the miniature SD 1.x model of the shapes world from a seed and write it as a "
                    "diffusers folder (the shipped one is resources/models/shapes-sd).")
    shapes.add_argument("out_dir", metavar="OUT_DIR", help="folder to write the diffusers model into")
    shapes.add_argument("--seed", type=int, default=0, help="seed of the world and the training (default: 0)")
    shapes.add_argument("--threads", type=int, default=1,
                        help="CPU threads (default: 1; more only helps on otherwise idle cores)")
    shapes.add_argument("--snapshot-every", type=int, default=0, metavar="N",
                        help="also save the averaged weights every N UNet steps to OUT_DIR/snapshots/step-N, to "
                             "judge a build while it runs (default: 0, none)")
    shapes.set_defaults(handler=cmd_build_shapes_model)

    blocks = commands.add_parser("blocks", help="list a model's blocks with parameter counts (for frozen mode)",
                                 description="List the UNet and text-encoder blocks of a model with their parameter "
                                             "counts; with --trainable, also how many parameters frozen-layer "
                                             "training would train in each block.")
    blocks.add_argument("model", metavar="MODEL", help="a diffusers folder or a single-file checkpoint")
    blocks.add_argument("--depth", type=int, default=2, help="how many name levels deep to list (default: 2)")
    blocks.add_argument("--trainable", metavar="PATTERN", action="append",
                        help="a block name or glob that frozen.trainable would hold (repeatable)")
    blocks.add_argument("--json", action="store_true", help="print JSON instead of a table")
    blocks.set_defaults(handler=cmd_blocks)

    dataset = commands.add_parser("dataset", help="dataset tools: 'dataset check DIR [--json]'", add_help=False)
    dataset.add_argument("dataset_args", nargs=argparse.REMAINDER, help="arguments of the dataset tool")
    dataset.set_defaults(handler=cmd_dataset)
    add_merge_parser(commands)  # trainer/merge/cli.py: light to import; the merge code loads when it runs
    add_plan_parser(commands)  # trainer/memory_plan_cli.py: light; torch loads only to detect the machine
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Runs one command; output cut short by its reader (``kamaal-train … | head``) ends it quietly with exit 1,
    as Python itself exits on a broken pipe, instead of a traceback or an "error: [Errno 32] Broken pipe"."""
    try:
        code = _main(argv)
        sys.stdout.flush()  # here, not in the interpreter's last flush, where the error could not be caught
    except BrokenPipeError:
        detach_stdout()
        return EXIT_ERROR
    return code


def _main(argv: Sequence[str] | None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["dataset"]:  # its own parser, help included (argparse's REMAINDER would swallow --help)
        from trainer.dataset.cli import dataset_main

        return dataset_main(argv[1:])
    args = build_parser().parse_args(argv)
    try:
        return int(args.handler(args))
    except BAD_INPUT_ERRORS as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except BrokenPipeError:
        raise  # main's to handle: not a problem to report
    except OSError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT if is_disk_full(exc) else EXIT_ERROR  # a full disk is the user's to fix


if __name__ == "__main__":
    raise SystemExit(main())

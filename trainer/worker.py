"""The training loop every mode shares, run in the trainer process or in-process by the CLI.

One linear loop: obey commands at step boundaries → one step → metrics → preview,
held-out loss and checkpoints when due.  The job (trainer/jobs) supplies the model-specific
parts; the loop owns timing, commands, the run folder and the event stream.  Bad input ends
the run with ``Failed(kind="input")`` and exit code 2, anything else with ``Failed("error")``
and exit code 1 — never with an unreported traceback.
"""

from __future__ import annotations

import logging
import math
import os
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

from trainer import distributed, threads
from trainer.checkpoint import restore_checkpoint, resume_point, save_checkpoint
from trainer.distributed import SyncedCommands
from trainer.errors import BAD_INPUT_ERRORS, InputError, disk_full_refusal
from trainer.jobs import create_job
from trainer.jobs.base import TrainingJob
from trainer.memory_plan import describe_changes
from trainer.oom import first_line, free_memory, is_out_of_memory, memory_at_failure, plan_after
from trainer.protocol import (
    EXIT_BAD_INPUT,
    EXIT_ERROR,
    EXIT_OK,
    EXIT_OUT_OF_MEMORY,
    Activity,
    CheckpointSaved,
    Event,
    Failed,
    Finished,
    OutOfMemory,
    Pause,
    Paused,
    Progress,
    Resume,
    Resumed,
    Sample,
    SampleNow,
    SaveNow,
    Started,
    Stop,
)
from trainer.runfolder import RunFolder
from trainer.runlock import RunLock, lock_run_folder
from trainer.runlog import CommandSource, EventSink, MetricsWriter, close_logger, run_logger
from trainer.telemetry import MemoryMeter, Speedometer

PAUSE_POLL_S = 0.1
SLOW_SAVE_ENV = "KAMAAL_TEST_SLOW_SAVE"  # test hook, see _slow_save_for_tests


def go_offline() -> None:
    """No code path in the trainer may reach for a model hub."""
    for name in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", "HF_DATASETS_OFFLINE", "DIFFUSERS_OFFLINE"):
        os.environ[name] = "1"
    os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")


def run_worker(run_dir: Path, commands: CommandSource, sink: EventSink, resume: bool = False) -> int:
    """Train the run in ``run_dir`` (its config.toml is the snapshot).  Returns the exit code.

    Under ``accelerate launch`` every process calls this; only the main one reports and writes
    (see :mod:`trainer.distributed`): the others keep just their failures.
    """
    go_offline()
    dist = distributed.current()
    if not dist.is_main:
        sink = FailuresOnly(sink)
    try:
        run = RunFolder.open(run_dir)
    except BAD_INPUT_ERRORS as exc:
        sink.emit(Failed("input", str(exc)))
        return EXIT_BAD_INPUT
    lock, refusal, notes = _claim_run_folder(run, dist)  # one trainer per run folder, before anything is written
    if refusal is not None:
        sink.emit(Failed("input", refusal))
        return EXIT_BAD_INPUT
    logger = run_logger(run.log_path if dist.is_main else None, sink)
    for note in notes:
        logger.warning(note)
    if dist.world_size > 1:
        commands = SyncedCommands(commands, dist)
    try:
        return _Loop(run, commands, sink, logger, dist).run(resume)
    except BAD_INPUT_ERRORS as exc:
        logger.error("Refused: %s", exc)
        sink.emit(Failed("input", str(exc)))
        return EXIT_BAD_INPUT
    except Exception as exc:
        full = disk_full_refusal(exc, run.root)  # a full disk met outside the checkpoint and output writers
        if full is not None:
            logger.error("Refused: %s", full)
            sink.emit(Failed("input", str(full)))
            return EXIT_BAD_INPUT
        details = traceback.format_exc()
        logger.error("Training failed:\n%s", details)
        sink.emit(Failed("error", f"{type(exc).__name__}: {exc}", details))
        return EXIT_ERROR
    finally:
        close_logger(logger)
        if lock is not None:
            lock.release()


def _claim_run_folder(run: RunFolder, dist: distributed.Distributed) -> tuple[RunLock | None, str | None, list[str]]:
    """The main process takes the folder's lock (trainer.runlock) and finishes any checkpoint replacement a
    kill interrupted; every process learns whether that worked, so a refused main leaves no one waiting.
    Returns (the lock, the refusal or None, notes for the log)."""
    lock, refusal, notes = None, None, []
    if dist.is_main:
        try:
            lock = lock_run_folder(run.root)
            if lock.unsupported:
                notes.append(f"{lock.unsupported}: make sure no other trainer uses {run.root}")
            notes += run.recover_interrupted_saves()
        except BAD_INPUT_ERRORS as exc:
            refusal = str(exc)
        except BaseException:
            if lock is not None:
                lock.release()
            raise
    if dist.world_size > 1:
        refusal = dist.broadcast(refusal)
    return lock, refusal, notes


def _slow_save_for_tests(report: Callable[[str, int, int], None], text: str) -> None:
    """Test hook: with ``KAMAAL_TEST_SLOW_SAVE="SECONDS[/EVERY]"`` in the environment each part of the end-of-run
    save takes SECONDS longer, announcing ``text`` every EVERY seconds (default: once, then silence).  GUI tests
    play a save of many minutes in seconds this way, against session timeouts scaled the same way."""
    spec = os.environ.get(SLOW_SAVE_ENV, "")
    if not spec:
        return
    seconds_text, _, every_text = spec.partition("/")
    seconds = float(seconds_text)
    parts = max(1, math.ceil(seconds / float(every_text))) if every_text else 1
    for done in range(parts):
        report(text, done, parts)
        time.sleep(seconds / parts)


class FailuresOnly:
    """The event sink of a non-main process: its failures still reach the terminal, nothing else does."""

    def __init__(self, sink: EventSink) -> None:
        self._sink = sink

    def emit(self, event: Event) -> None:
        if isinstance(event, Failed):
            self._sink.emit(event)


class _SampleTap:
    """The job's event sink: every event goes on to the run's sink; previews are also logged to TensorBoard."""

    def __init__(self, sink: EventSink) -> None:
        self._sink = sink
        self.tensorboard: Any = None

    def emit(self, event: Event) -> None:
        if isinstance(event, Sample) and self.tensorboard is not None:
            self.tensorboard.images(event.step, event.paths, event.prompts, event.seeds)
        self._sink.emit(event)


class _NoMetrics:
    def write(self, row: dict) -> None:
        pass

    def close(self) -> None:
        pass


PREVIEWS, EVALUATION = "samples", "held-out evaluation"
SIDE_FAILURES_ALLOWED = 2  # a mid-run preview or evaluation that fails this often is left off for the run


class _Loop:
    def __init__(self, run: RunFolder, commands: CommandSource, sink: EventSink, logger: logging.Logger,
                 dist: distributed.Distributed) -> None:
        self.run_folder, self.commands, self.sink, self.log, self.dist = run, commands, sink, logger, dist
        self.stop_requested: Stop | None = None
        self.last_checkpoint_step = -1
        self.side_failures = {PREVIEWS: 0, EVALUATION: 0}  # see _side_work
        self.side_warnings: list[str] = []  # what the finished run reports of them

    def run(self, resume: bool) -> int:
        config = self.run_folder.load_config()
        self.config = config
        total = config.training.steps
        self.samples_tap = _SampleTap(self.sink)  # the previews reach TensorBoard too, once it is open
        job = create_job(config, self.run_folder, self.samples_tap, self.log)
        if self.dist.world_size > 1 and not job.supports_distributed:
            raise InputError(f"mode: {config.mode} training runs in one process; start it without accelerate launch")
        self.log.info("Setting up %s training (%s) in %s", config.mode, config.model.architecture, self.run_folder.root)
        job.setup()
        self.log.info(threads.describe())

        step, elapsed = 0, 0.0
        if resume:
            latest = resume_point(self.run_folder, self.log)  # step folders but none complete: refused
            if latest is None:
                self.log.warning("No checkpoint to resume from yet; starting at step 0")
            else:
                state = restore_checkpoint(job, latest[1])  # state.json and training_state.pt checked by name
                step, elapsed = state["step"], float(state.get("elapsed_s", 0.0))
                self.last_checkpoint_step = step
                self.log.info("Resumed from %s at step %d", latest[1].name, step)
        metrics = (MetricsWriter(self.run_folder.metrics_path, resume_from_step=step if resume else None)
                   if self.dist.is_main else _NoMetrics())
        self.tensorboard = None
        if self.dist.is_main and config.output.tensorboard:
            from trainer.tensorboard_log import TensorBoardLog

            self.tensorboard = TensorBoardLog(self.run_folder.tensorboard_dir, self.log,
                                              resume_from_step=step if resume else None)
            self.samples_tap.tensorboard = self.tensorboard
        speed = Speedometer(total_steps=total, start_step=step, elapsed_s=elapsed)
        memory = MemoryMeter(job.device)
        device = job.device if self.dist.world_size == 1 else f"{job.device} × {self.dist.world_size} processes"
        self.sink.emit(Started(str(self.run_folder.root), config.mode, step, total, device, os.getpid()))

        try:
            if step == 0:
                if job.preview_at_start():
                    self._side_work(PREVIEWS, 0, lambda: job.preview(0), job.device)
                # Where the curve starts: the held-out loss of the untrained (base) model.
                heldout = self._side_work(EVALUATION, 0, job.evaluate, job.device)
                if heldout is not None:
                    self._report(metrics, speed, memory, 0, math.nan, job.current_lr(), heldout)
            preview_every = job.preview_every()
            while step < total:
                self._obey_commands(job, step, speed, memory)
                if self.stop_requested:
                    break
                lr = job.current_lr()
                failure = None
                try:
                    result = job.train_step(step)
                except Exception as exc:
                    if not is_out_of_memory(exc) or self.dist.world_size > 1:
                        raise
                    failure = first_line(exc)  # the exception (and the failed step's tensors it holds) goes here
                if failure is not None:
                    return self._out_of_memory(job, step, failure, speed)
                step += 1
                speed.tick()
                heldout = (self._side_work(EVALUATION, step, job.evaluate, job.device)
                           if step % config.training.eval_every == 0 or step == total else None)
                if step % config.training.log_every == 0 or heldout is not None or step == total:
                    self._report(metrics, speed, memory, step, float(result.loss), lr, heldout)
                if preview_every and step % preview_every == 0 and step != total:
                    self._side_work(PREVIEWS, step, lambda step=step: job.preview(step), job.device)
                if config.output.checkpoint_every and step % config.output.checkpoint_every == 0:
                    self._checkpoint(job, step, speed)
        finally:
            metrics.close()
            if self.tensorboard is not None:
                self.tensorboard.flush()

        stopped = self.stop_requested is not None
        save = not stopped or self.stop_requested.save  # type: ignore[union-attr]
        outputs: list[Path] = []
        warnings: list[str] = []
        if save:
            # Save first, then sample: the checkpoint and the outputs never hang on the final samples
            # (a sampler failure used to lose the whole run).  Each part is announced (Activity), so a
            # Stop in the GUI waits for as long as this takes.
            if self.last_checkpoint_step != step:
                _slow_save_for_tests(self._activity, "saving checkpoint")
                self._checkpoint(job, step, speed)
            _slow_save_for_tests(self._activity, "writing outputs")
            self._activity("writing outputs")
            outputs = job.export(self.run_folder.output_dir) if self.dist.is_main else []
            self.log.info("Wrote %s", ", ".join(str(p) for p in outputs))
            warnings += self._final_samples(job, step)
        warnings = self.side_warnings + warnings
        self.dist.barrier()  # the others wait until the main process has written everything
        self.log.info("%s at step %d of %d", "Stopped" if stopped else "Finished", step, total)
        if self.tensorboard is not None:
            self.tensorboard.close()
        self.sink.emit(Finished(str(self.run_folder.root), step, stopped, tuple(str(p) for p in outputs),
                                tuple(warnings)))
        return EXIT_OK

    def _out_of_memory(self, job: TrainingJob, step: int, message: str, speed: Speedometer) -> int:
        """Step ``step + 1`` ran out of memory: undo it, free its memory, save the state after ``step`` (when the
        job can promise the failed step touched nothing; else the last checkpoint stays the one to continue from),
        and end the run with the next-smaller plan for this device."""
        measured = memory_at_failure(job.device)  # before freeing: what the run could hold
        undone = job.undo_failed_step()
        free_memory(job.device)
        if undone and self.last_checkpoint_step != step:
            self._checkpoint(job, step, speed)
        latest = self.run_folder.latest_checkpoint()
        saved_step, saved = latest if latest is not None else (0, None)
        plan = plan_after(self.config, measured, job.image_count())
        if plan is None:
            plan_text = ("No smaller plan: every memory option Kamaal can change is already at its smallest for "
                         "this config (a lower resolution, rank or batch would change what is trained).")
        else:
            plan_text = plan.describe() if plan.fits else \
                "No plan smaller than the one that ran out is expected to fit; the smallest may still run out. " \
                + plan.describe()
        event = OutOfMemory(str(self.run_folder.root), step + 1, str(saved or ""), saved_step, job.device, message,
                            measured.peak, measured.limit, dict(plan.changes) if plan else {}, plan_text,
                            bool(plan and plan.fits))
        where = f"the checkpoint of step {saved_step} ({saved})" if saved else "no checkpoint (none was saved)"
        plan_line = f"next-smaller plan: {describe_changes(plan.changes)}" if plan and plan.changes else plan_text
        self.log.error("Out of memory in step %d (%s); the run ends here and continues from %s; %s", step + 1,
                       message, where, plan_line)
        if self.tensorboard is not None:
            self.tensorboard.close()
        self.sink.emit(event)
        return EXIT_OUT_OF_MEMORY

    def _side_work(self, part: str, step: int, work: Callable[[], Any], device: str, asked: bool = False) -> Any:
        """A preview or a held-out evaluation during the run.  Its failure costs its result, not the run: out of
        memory above all (sampling and evaluation add to what training holds: a preview at full size with guidance
        can need more than a step), but any other failure too — hours of training are never lost to a picture.
        The failure is logged with its traceback, its memory freed, and training goes on; after
        :data:`SIDE_FAILURES_ALLOWED` failures the part is left off for the rest of the run.  The finished run
        reports what was skipped.  With several processes the failure ends the run, as before (the others would
        wait for the main process)."""
        if self.side_failures[part] >= SIDE_FAILURES_ALLOWED and not asked:
            return None
        failure, memory = "", False
        try:
            return work()
        except Exception as exc:
            if self.dist.world_size > 1:
                raise
            failure = first_line(exc)
            memory = is_out_of_memory(exc)
            self.log.error("The %s at step %d failed; training goes on:\n%s", part, step, traceback.format_exc())
        # Outside the handler: the exception and the tensors its frames hold are gone, so their memory can be freed.
        free_memory(device)
        self.side_failures[part] += 1
        cause = "out of memory" if memory else failure  # the log has the allocator's words and the traceback
        if self.side_failures[part] == SIDE_FAILURES_ALLOWED:
            advice = " (lower sampling.width/height, or fewer sampling.seeds or prompts)" if part == PREVIEWS \
                and memory else ""
            warning = (f"The {part} failed {SIDE_FAILURES_ALLOWED} times (at step {step}: {cause}), so the run went on "
                       f"without {part}{advice}.")
        else:
            skipped = "were" if part == PREVIEWS else "was"
            warning = f"The {part} at step {step} {skipped} skipped ({cause}); training went on."
        self.log.warning(warning)
        self.side_warnings.append(warning)
        return None

    def _final_samples(self, job: TrainingJob, step: int) -> list[str]:
        """Draw the finished model's samples; everything is saved by now, so a failure costs only the pictures."""
        try:
            job.preview(step, final=True)
        except Exception as exc:  # any failure here: the saved run stays
            self.log.error("The final samples failed (the checkpoint and outputs are saved):\n%s",
                           traceback.format_exc())
            return [f"The final samples failed: {type(exc).__name__}: {exc}. "
                    "The checkpoint and the outputs were saved before them."]
        return []

    # ------------------------------------------------------------------ commands

    def _obey_commands(self, job: TrainingJob, step: int, speed: Speedometer, memory: MemoryMeter) -> None:
        """Handle every pending command; block here while paused (the model stays in memory)."""
        paused = False
        command = self.commands.poll()
        while command is not None or paused:
            if isinstance(command, Stop):
                self.stop_requested = command
                self.log.info("Stop requested at step %d (%s)", step, "saving" if command.save else "not saving")
                return
            if isinstance(command, Pause) and not paused:
                paused = True
                speed.pause()
                self.log.info("Paused at step %d", step)
                self.sink.emit(Paused(step))
            elif isinstance(command, Resume) and paused:
                paused = False
                speed.resume()
                self.log.info("Resumed at step %d", step)
                self.sink.emit(Resumed(step))
            elif isinstance(command, SampleNow):  # asked for: tried even after previews were left off
                self._side_work(PREVIEWS, step, lambda: job.preview(step), job.device, asked=True)
            elif isinstance(command, SaveNow):
                self._checkpoint(job, step, speed)
            command = self.commands.wait(PAUSE_POLL_S) if paused else self.commands.poll()

    # ------------------------------------------------------------------ reporting and saving

    def _report(self, metrics: MetricsWriter, speed: Speedometer, memory: MemoryMeter, step: int, loss: float,
                lr: float, heldout: float | None) -> None:
        if not self.dist.is_main:
            return
        used, peak = memory.read()
        row = {"step": step, "loss": loss if math.isfinite(loss) else None, "lr": lr,
               "seconds": round(speed.elapsed_s, 4), "it_per_s": round(speed.it_per_s, 3), "memory_bytes": used}
        if heldout is not None:
            row["heldout_loss"] = heldout
        metrics.write(row)
        if self.tensorboard is not None:
            self.tensorboard.write(row)
        self.sink.emit(Progress(step=step, total_steps=speed.total_steps, loss=loss, lr=lr, it_per_s=speed.it_per_s,
                                eta_s=speed.eta_s(step), elapsed_s=speed.elapsed_s, memory_bytes=used,
                                memory_kind=memory.kind, peak_memory_bytes=peak, heldout_loss=heldout))

    def _activity(self, text: str, done: int = 0, total: int = 0) -> None:
        if self.dist.is_main:
            self.sink.emit(Activity(text, done, total))

    def _checkpoint(self, job: TrainingJob, step: int, speed: Speedometer) -> None:
        self._activity("saving checkpoint")
        info = {"mode": self.config.mode, "total_steps": self.config.training.steps, "elapsed_s": speed.elapsed_s,
                "processes": self.dist.world_size}
        weights, training_state = job.checkpoint_weights(), job.training_state()  # collective: every process
        if not self.dist.is_main:
            self.last_checkpoint_step = step
            return
        path = save_checkpoint(self.run_folder, step, weights, training_state, info,
                               keep=self.config.output.keep_checkpoints)
        self.last_checkpoint_step = step
        self.log.info("Saved checkpoint %s", path.name)
        self.sink.emit(CheckpointSaved(step, str(path)))

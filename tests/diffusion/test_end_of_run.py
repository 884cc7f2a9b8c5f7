"""The end of a run saves before it samples: the final checkpoint and outputs are written first, and a
failure while drawing the final samples leaves them in place (reported as a warning, not a lost run)."""

from __future__ import annotations

from tests.diffusion.conftest import diffusion_config
from tests.trainer.helpers import run_in_process
from trainer.protocol import EXIT_OK, Activity, CheckpointSaved, Failed, Finished, Sample
from trainer.runfolder import RunFolder


def test_final_samples_that_fail_leave_the_checkpoint_and_outputs(tmp_path, tiny_sd15, shapes_dataset,
                                                                  monkeypatch):
    from trainer.jobs.diffusion import DiffusionJob

    steps = 3
    real_preview = DiffusionJob.preview

    def preview_that_fails_at_the_end(self, step, *args, **kwargs):
        if step == steps:
            raise RuntimeError("the sampler ran out of luck")
        return real_preview(self, step, *args, **kwargs)

    monkeypatch.setattr(DiffusionJob, "preview", preview_that_fails_at_the_end)
    config = diffusion_config(tiny_sd15, shapes_dataset, training={"steps": steps},
                              output={"checkpoint_every": 0})
    code, recorder = run_in_process(config, tmp_path / "run")

    assert code == EXIT_OK and not recorder.of(Failed)
    run = RunFolder(tmp_path / "run")
    assert run.latest_checkpoint() is not None and run.latest_checkpoint()[0] == steps
    assert (run.output_dir / "tiny.safetensors").is_file()
    [finished] = recorder.of(Finished)
    assert finished.outputs and all(path.startswith(str(run.output_dir)) for path in finished.outputs)
    assert finished.warnings and "final samples" in finished.warnings[0] and "out of luck" in finished.warnings[0]
    assert "out of luck" in run.log_path.read_text(encoding="utf-8")  # the traceback is in log.txt


def test_the_end_of_a_run_saves_first_then_draws_and_says_so(tmp_path, tiny_sd15, shapes_dataset):
    config = diffusion_config(tiny_sd15, shapes_dataset, training={"steps": 2},
                              sampling={"prompts": ["a red circle", "a blue circle"], "seeds": [7],
                                        "inference_steps": 2, "at_start": False},
                              output={"checkpoint_every": 0})
    code, recorder = run_in_process(config, tmp_path / "run")
    assert code == EXIT_OK

    after_training = recorder.events[max(i for i, e in enumerate(recorder.events)
                                         if type(e).__name__ == "Progress"):]
    story = [(e.text, e.done, e.total) if isinstance(e, Activity) else type(e).__name__ for e in after_training
             if isinstance(e, Activity | CheckpointSaved | Sample | Finished)]
    assert story == [("saving checkpoint", 0, 0), "CheckpointSaved", ("writing outputs", 0, 0),
                     ("drawing final samples", 0, 2), ("drawing final samples", 1, 2),
                     ("drawing final samples", 2, 2), "Sample", "Finished"]
    [finished] = recorder.of(Finished)
    assert not finished.warnings


def test_set_up_says_what_it_is_doing_before_the_first_step(tmp_path, tiny_sd15, shapes_dataset):
    """Loading the model and the rest of set-up used to be a silent 'Starting the trainer…'."""
    config = diffusion_config(tiny_sd15, shapes_dataset, training={"steps": 1},
                              sampling={"prompts": ["a red circle"], "seeds": [7], "inference_steps": 2,
                                        "at_start": True}, output={"checkpoint_every": 0})
    code, recorder = run_in_process(config, tmp_path / "run")
    assert code == EXIT_OK
    names = [e.text if isinstance(e, Activity) else type(e).__name__ for e in recorder.events]
    started = names.index("Started")
    assert names.index("loading the base model") < names.index("encoding the evaluation images") < started
    assert "drawing samples" in names[started:]  # the step-0 samples, counted


def test_a_failed_preview_or_evaluation_mid_run_costs_its_result_not_the_run(tmp_path, tiny_sd15, shapes_dataset,
                                                                             monkeypatch):
    """Previews and held-out evaluation add to what training holds, so they are where a run at the edge of its
    memory runs out.  Such a failure (or any other) skips that preview or evaluation, says so, and training goes
    on to the same weights as a run without it; a preview that fails twice is left off for the rest of the run."""
    import torch
    from safetensors.torch import load_file

    from trainer.jobs.diffusion import DiffusionJob
    from trainer.protocol import Log

    steps = 8
    config = diffusion_config(tiny_sd15, shapes_dataset, training={"steps": steps, "eval_every": 3},
                              sampling={"every_n_steps": 2}, output={"checkpoint_every": 0})
    code, straight = run_in_process(config, tmp_path / "straight")
    assert code == EXIT_OK, straight.of(Failed)

    real_preview, real_evaluate = DiffusionJob.preview, DiffusionJob.evaluate
    previews: list[int] = []
    evaluations = {"calls": 0}

    def failing_preview(self, step, *args, **kwargs):
        previews.append(step)
        if step == 2:
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 6.00 GiB (injected by the test)")
        if step == 4:
            raise ValueError("the sampler tripped (injected by the test)")
        return real_preview(self, step, *args, **kwargs)

    def failing_evaluate(self):
        evaluations["calls"] += 1
        if evaluations["calls"] == 2:  # step 0, then step 3
            raise torch.OutOfMemoryError("CUDA out of memory (injected by the test)")
        return real_evaluate(self)

    monkeypatch.setattr(DiffusionJob, "preview", failing_preview)
    monkeypatch.setattr(DiffusionJob, "evaluate", failing_evaluate)
    code, recorder = run_in_process(config, tmp_path / "failing")
    assert code == EXIT_OK and not recorder.of(Failed)

    # Step 6's preview was not tried: two failures left previews off.  The final samples still were drawn.
    assert previews == [2, 4, steps]
    assert [sample.step for sample in recorder.of(Sample)] == [steps]
    run = RunFolder(tmp_path / "failing")
    heldout = [row["step"] for row in run.read_metrics() if row.get("heldout_loss") is not None]
    assert heldout == [0, 6, steps]
    [finished] = recorder.of(Finished)
    assert len(finished.warnings) == 3, finished.warnings
    samples_skipped, samples_off, evaluation_skipped = sorted(finished.warnings, key=lambda w: ("step 3" in w, w))
    assert "samples at step 2 were skipped (out of memory)" in samples_skipped
    assert "failed 2 times (at step 4: ValueError: the sampler tripped" in samples_off
    assert "went on without samples" in samples_off
    assert "held-out evaluation at step 3 was skipped (out of memory)" in evaluation_skipped
    assert any(event.level == "warning" and "step 2" in event.message for event in recorder.of(Log))
    assert "the sampler tripped" in run.log_path.read_text(encoding="utf-8")  # with its traceback

    # Nothing of training changed: the same weights as the run whose previews and evaluations all worked.
    ours = load_file(run.output_dir / "tiny.safetensors")
    theirs = load_file(RunFolder(tmp_path / "straight").output_dir / "tiny.safetensors")
    assert ours.keys() == theirs.keys() and all(torch.equal(ours[key], theirs[key]) for key in ours)

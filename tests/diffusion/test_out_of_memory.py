"""Out of memory at step N (issue 24): the run saves the state after step N − 1 — bitwise the state an
uninterrupted run had there — reports the next-smaller plan, and resuming with that plan ends where the
uninterrupted run ends.

The failure is injected narrowly: the UNet's forward, patched for the one in-process run, raises
torch.OutOfMemoryError (as CUDA's allocator does) on its Nth training call, after the graph is built."""

from __future__ import annotations

import pytest
import torch
from diffusers import UNet2DConditionModel
from safetensors.torch import load_file

from desktop_app.runs.run_history import summarize
from tests.diffusion.conftest import diffusion_config
from tests.trainer.helpers import run_in_process
from trainer.checkpoint import STATE_FILE, WEIGHTS_FILE
from trainer.cli import describe_out_of_memory
from trainer.diffusion.data import BucketBatches, Example
from trainer.memory_estimate import estimate_memory
from trainer.memory_plan import plan_overrides
from trainer.protocol import EXIT_OK, EXIT_OUT_OF_MEMORY, Failed, Finished, OutOfMemory, Started
from trainer.runfolder import RunFolder

FAIL_AT = 4  # the step that runs out of memory (1-based)


def fail_at_training_call(monkeypatch, call: int) -> None:
    forward = UNet2DConditionModel.forward
    calls = {"training": 0}

    def failing(self, *args, **kwargs):
        out = forward(self, *args, **kwargs)
        if torch.is_grad_enabled():  # a training step (evaluation and previews run without gradients)
            calls["training"] += 1
            if calls["training"] == call:
                raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB (injected by the test)")
        return out

    monkeypatch.setattr(UNet2DConditionModel, "forward", failing)


def test_out_of_memory_saves_step_n_minus_1_and_the_smaller_plan_resumes_to_the_same_weights(
        tmp_path, tiny_sd15, shapes_dataset, monkeypatch):
    config = diffusion_config(tiny_sd15, shapes_dataset, training={"steps": 6, "batch_size": 1, "eval_every": 6},
                              output={"run_name": "tiny", "checkpoint_every": 0})
    straight_config = config.model_copy(update={"output": config.output.model_copy(update={"checkpoint_every": 3})})
    code, straight = run_in_process(straight_config, tmp_path / "straight")
    assert code == EXIT_OK, straight.of(Failed)

    with monkeypatch.context() as patch:
        fail_at_training_call(patch, FAIL_AT)
        code, failed = run_in_process(config, tmp_path / "oom")
    assert code == EXIT_OUT_OF_MEMORY, failed.of(Failed)
    [event] = failed.of(OutOfMemory)
    assert not failed.of(Finished) and not failed.of(Failed)
    assert (event.step, event.checkpoint_step, event.device) == (FAIL_AT, FAIL_AT - 1, "cpu")
    assert "OutOfMemoryError" in event.message and event.peak_bytes > 0 and event.limit_bytes > event.peak_bytes

    # The checkpoint is the state after step N − 1, bit for bit: the failed step changed nothing it saves.
    ours, theirs = RunFolder(tmp_path / "oom").checkpoint_dir(FAIL_AT - 1), RunFolder(
        tmp_path / "straight").checkpoint_dir(FAIL_AT - 1)
    assert str(ours) == event.checkpoint
    a, b = load_file(ours / WEIGHTS_FILE), load_file(theirs / WEIGHTS_FILE)
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    state_a, state_b = (torch.load(path / STATE_FILE, weights_only=True) for path in (ours, theirs))
    assert_same(state_a, state_b)

    summary = summarize(tmp_path / "oom")  # the Runs page's word for it
    assert summary.status == "out of memory" and summary.resumable and summary.checkpoint_step == FAIL_AT - 1
    assert summary.problem.startswith(f"Out of memory in step {FAIL_AT}")

    # The next-smaller plan is strictly smaller by the estimate, and says so in words.
    assert event.plan_changes and event.plan_text
    planned = RunFolder(tmp_path / "oom").change_config(plan_overrides(event.plan_changes), event.checkpoint_step)
    assert estimate_memory(planned, "cpu").total < estimate_memory(config, "cpu").total
    assert (tmp_path / "oom" / "config-until-step-000003.toml").is_file()
    assert "kamaal-train resume" in describe_out_of_memory(event)

    code, resumed = run_in_process(planned, tmp_path / "oom", resume=True)
    assert code == EXIT_OK, resumed.of(Failed)
    assert resumed.of(Started)[0].start_step == FAIL_AT - 1  # it continues with step N
    end, reference = (load_file(r.of(Finished)[0].outputs[0]) for r in (resumed, straight))
    assert end.keys() == reference.keys()
    for key in end:  # the plan changes how memory is spent (recomputed activations, a cache on disk), not the maths
        torch.testing.assert_close(end[key], reference[key], rtol=1e-5, atol=1e-6)


def assert_same(a, b, where: str = "state") -> None:
    if isinstance(a, torch.Tensor):
        assert torch.equal(a, b), where
    elif isinstance(a, dict):
        assert a.keys() == b.keys(), where
        for key in a:
            assert_same(a[key], b[key], f"{where}.{key}")
    elif isinstance(a, (list, tuple)):
        assert len(a) == len(b), where
        for index, (x, y) in enumerate(zip(a, b, strict=True)):
            assert_same(x, y, f"{where}[{index}]")
    else:
        assert a == b, where


@pytest.mark.parametrize("smaller", [1, 2])
def test_a_batch_saved_larger_is_split_in_order_when_the_plan_halves_it(tmp_path, smaller):
    examples = [Example(image=tmp_path / f"{i}.png", caption="", bucket=(64, 64), size=(64, 64)) for i in range(8)]
    saved = BucketBatches(examples, 4, 1, seed=5)
    saved.next()
    state = saved.state()
    reference = [i for _ in range(3) for i in saved.next()]  # the rest of the epoch and beyond, as drawn at 4
    resumed = BucketBatches(examples, smaller, 1, seed=5)
    resumed.load(state)
    drawn = []
    while len(drawn) < 4:  # the rest of the saved epoch
        batch = resumed.next()
        assert len(batch) == smaller
        drawn += batch
    assert drawn == reference[:4]


def test_the_cpu_allocators_failure_counts_as_out_of_memory_and_other_errors_do_not():
    from trainer.oom import is_out_of_memory

    try:
        torch.empty(2**60, dtype=torch.uint8)  # more than any computer has: the CPU allocator's real failure
    except RuntimeError as exc:
        assert is_out_of_memory(exc), exc
    else:
        pytest.fail("the allocation did not fail")
    assert is_out_of_memory(torch.OutOfMemoryError("CUDA out of memory")) and is_out_of_memory(MemoryError())
    assert not is_out_of_memory(RuntimeError("mat1 and mat2 shapes cannot be multiplied"))

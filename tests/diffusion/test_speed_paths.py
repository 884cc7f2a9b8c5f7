"""The faster paths of the training step (issue 23) train exactly what the plain paths trained.

Logging, evaluating and sampling between steps must not change a single weight: the loss is read only on logged
steps, ``train()`` runs only after something set ``eval()``, and the trained parameters are listed once.  Latents
cached before step 1 train exactly as latents encoded every step; AdamW's foreach kernels step exactly as its loop.
"""

from __future__ import annotations

import pytest
import torch
from safetensors.torch import load_file

from tests.diffusion.conftest import diffusion_config
from tests.trainer.helpers import run_in_process
from trainer.protocol import EXIT_OK, Failed, Finished, Progress


def test_logging_and_evaluation_between_steps_change_no_weight(tmp_path, tiny_sd15, shapes_dataset, monkeypatch):
    from trainer.jobs.diffusion import DiffusionJob

    original = DiffusionJob.train_step
    in_training: list[bool] = []
    unread: list[bool] = []

    def watched(self, step):
        result = original(self, step)
        in_training.append(all(m.training for m in self.parts.unet.modules()))
        unread.append(isinstance(result.loss, torch.Tensor))
        return result

    monkeypatch.setattr(DiffusionJob, "train_step", watched)
    runs = {}
    # Often: a loss read and a held-out evaluation (eval() on the UNet) every 2 steps; rarely: only at the end.
    for name, log_every, eval_every in (("often", 1, 2), ("rarely", 3, 6)):
        config = diffusion_config(tiny_sd15, shapes_dataset, training={"steps": 6, "log_every": log_every,
                                                                       "eval_every": eval_every,
                                                                       "max_grad_norm": 1.0})
        code, rec = run_in_process(config, tmp_path / name)
        assert code == EXIT_OK, rec.of(Failed)
        runs[name] = ({e.step: e.loss for e in rec.of(Progress) if e.step > 0},
                      load_file(rec.of(Finished)[0].outputs[0]))
    (often_losses, often), (rarely_losses, rarely) = runs["often"], runs["rarely"]
    assert sorted(often_losses) == [1, 2, 3, 4, 5, 6] and sorted(rarely_losses) == [3, 6]
    assert all(often_losses[step] == rarely_losses[step] for step in (3, 6))
    assert often.keys() == rarely.keys() and all(torch.equal(often[k], rarely[k]) for k in often)
    assert len(in_training) == 12 and all(in_training)  # back in training mode after every evaluation
    assert all(unread)  # the step hands the loss over unread; the worker reads it when it logs


def test_images_cached_before_step_one_train_as_images_encoded_each_step(tmp_path, tiny_sd15, shapes_dataset):
    from trainer.protocol import Activity

    losses, weights = {}, {}
    for cache in ("memory", "off"):
        config = diffusion_config(tiny_sd15, shapes_dataset, dataset={"cache_latents": cache, "cache_text": "on"},
                                  training={"steps": 6, "eval_every": 6})
        code, rec = run_in_process(config, tmp_path / cache)
        assert code == EXIT_OK, rec.of(Failed)
        losses[cache] = [e.loss for e in rec.of(Progress) if e.step > 0]
        weights[cache] = load_file(rec.of(Finished)[0].outputs[0])
        encoding = [(e.done, e.total) for e in rec.of(Activity) if e.text == "encoding images"]
        assert encoding == ([(0, 6), (2, 6), (4, 6), (6, 6)] if cache == "memory" else [])  # progress, before step 1
    short = diffusion_config(tiny_sd15, shapes_dataset, dataset={"cache_latents": "memory"},
                             training={"steps": 2, "eval_every": 2})  # 4 draws of 6 images: only those encoded
    code, rec = run_in_process(short, tmp_path / "short")
    assert code == EXIT_OK and not [e for e in rec.of(Activity) if e.text == "encoding images"]
    # Each image is encoded alone either way (a batched VAE call sums in another order): bit for bit the same run.
    assert losses["memory"] == losses["off"]
    assert weights["off"].keys() == weights["memory"].keys()
    assert all(torch.equal(weights["memory"][key], weights["off"][key]) for key in weights["off"])


def test_adamw_multi_tensor_steps_are_the_single_tensor_steps():
    """build_optimizer's AdamW runs torch's foreach kernels (its CUDA default) on the CPU too: bit-identical steps."""
    from trainer.config import TrainingConfig
    from trainer.optim import build_optimizer

    def trained(make):
        torch.manual_seed(0)
        weights = [torch.nn.Parameter(torch.randn(shape)) for shape in ((32, 4), (4, 32), (8,))]
        optimizer = make(weights)
        generator = torch.Generator().manual_seed(1)
        for _ in range(5):
            for weight in weights:
                weight.grad = torch.randn(weight.shape, generator=generator)
            optimizer.step()
        return weights

    training = TrainingConfig(optimizer="adamw", learning_rate=1e-2, weight_decay=1e-2)
    fast = trained(lambda weights: build_optimizer(weights, training, "cpu"))
    plain = trained(lambda weights: torch.optim.AdamW(weights, lr=1e-2, weight_decay=1e-2, foreach=False))
    assert all(torch.equal(a, b) for a, b in zip(fast, plain, strict=True))
    torch.manual_seed(0)
    assert not torch.equal(fast[0], torch.randn((32, 4)))  # the steps moved the weights


def test_with_gradient_accumulation_the_logged_loss_is_the_mean_of_the_micro_batches(tmp_path, tiny_sd15,
                                                                                       shapes_dataset, monkeypatch):
    """The step sums its micro-batches' losses on the device, unread; the logged loss is still their mean, to the
    last bit of Python's float arithmetic."""
    from trainer.jobs.diffusion import DiffusionJob

    original = DiffusionJob._batch_loss
    micro: list[float] = []

    def recorded(self, examples, is_class, indices):
        loss = original(self, examples, is_class, indices)
        micro.append(float(loss.detach()))
        return loss

    monkeypatch.setattr(DiffusionJob, "_batch_loss", recorded)
    config = diffusion_config(tiny_sd15, shapes_dataset, training={"steps": 3, "eval_every": 3,
                                                                   "gradient_accumulation_steps": 2})
    code, rec = run_in_process(config, tmp_path / "run")
    assert code == EXIT_OK, rec.of(Failed)
    assert len(micro) == 6  # two per step (the held-out evaluation does not go through _batch_loss)
    logged = [e.loss for e in rec.of(Progress) if e.step > 0]
    assert logged == [(micro[0] + micro[1]) / 2, (micro[2] + micro[3]) / 2, (micro[4] + micro[5]) / 2]


def test_torch_compile_trains_what_the_plain_forward_trains(tmp_path, tiny_sd15, shapes_dataset, monkeypatch):
    """training.torch_compile sends the training forward through torch.compile (dynamo traces it; here with its
    ``eager`` backend, which runs the captured graphs as they are: inductor's code generation takes minutes on the
    CPU), while evaluation and previews call the plain UNet: the same losses and the same exported weights."""
    compile_ = torch.compile
    graphs: list[int] = []

    def counting_backend(graph, example_inputs):
        graphs.append(len(graph.graph.nodes))
        return graph.forward

    monkeypatch.setattr(torch, "compile", lambda model, **kwargs: compile_(model, backend=counting_backend))
    losses, weights = {}, {}
    for name, compiled in (("plain", False), ("compiled", True)):
        torch._dynamo.reset()
        config = diffusion_config(tiny_sd15, shapes_dataset, training={"steps": 3, "eval_every": 3,
                                                                       "torch_compile": compiled})
        code, rec = run_in_process(config, tmp_path / name)
        assert code == EXIT_OK, rec.of(Failed)
        assert bool(graphs) == compiled  # the plain run compiled nothing, the compiled one its forward
        losses[name] = [(e.loss, e.heldout_loss) for e in rec.of(Progress) if e.step > 0]
        weights[name] = load_file(rec.of(Finished)[0].outputs[0])
    torch._dynamo.reset()
    assert losses["compiled"] == losses["plain"]  # the eager backend runs the same kernels
    assert weights["compiled"].keys() == weights["plain"].keys()  # no "_orig_mod." in the exported names
    assert all(torch.equal(weights["compiled"][key], weights["plain"][key]) for key in weights["plain"])


@pytest.mark.cuda
def test_on_cuda_the_latent_cache_is_pinned_and_trains_as_latents_encoded_each_step(tmp_path, tiny_sd15,
                                                                                   shapes_dataset, monkeypatch):
    """On CUDA the cached latents wait in page-locked memory and reach the GPU with non_blocking copies: the run
    trains as one that encodes every image each step (within fp32 rounding: some CUDA kernels sum in any order)."""
    from trainer.jobs.diffusion import EncodedImage

    monkeypatch.setattr("trainer.models.pick_device", lambda: torch.device("cuda"))
    original = EncodedImage.on_host
    pinned: list[bool] = []

    def watched(self, pinned_memory=False):
        kept = original(self, pinned_memory)
        pinned.append(kept.latent.is_pinned())
        return kept

    monkeypatch.setattr(EncodedImage, "on_host", watched)
    weights = {}
    for cache in ("memory", "off"):
        config = diffusion_config(tiny_sd15, shapes_dataset, dataset={"cache_latents": cache, "cache_text": "on"},
                                  training={"steps": 6, "eval_every": 6})
        code, rec = run_in_process(config, tmp_path / cache)
        assert code == EXIT_OK, rec.of(Failed)
        weights[cache] = load_file(rec.of(Finished)[0].outputs[0])
    assert len(pinned) == 6 and all(pinned)  # every image cached once, pinned; the uncached run cached none
    for key, value in weights["off"].items():
        torch.testing.assert_close(weights["memory"][key], value, rtol=1e-4, atol=1e-6, msg=key)

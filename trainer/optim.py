"""Optimizers and learning-rate schedules, from well-kept packages.

Optimizers (``training.optimizer``):

* ``adamw`` — torch's AdamW;
* ``adamw8bit`` — bitsandbytes' 8-bit AdamW (CUDA; its states in 8 bits);
* ``prodigy`` — Prodigy (``prodigyopt``, its authors' package): finds the step size itself, so
  ``learning_rate`` is a multiplier (1.0, as its authors advise);
* ``adafactor`` — torch's Adafactor (factored second moments: little state);
* ``lion`` — Lion (``pytorch_optimizer``): sign updates, one state; wants a learning rate 3–10× smaller
  than AdamW's;
* ``came`` — CAME (``pytorch_optimizer``): Adafactor's memory with a confidence-guided update;
* ``adamw_schedulefree`` — schedule-free AdamW (``schedulefree``, Meta's package): no schedule; its
  weights are an average (``x``) kept apart from where gradients are taken (``y``): ``optimizer.eval()``
  puts the average in the model for evaluation, samples and saving, ``optimizer.train()`` takes it back
  (:func:`averaged_weights`).  Its warm-up is its own (``warmup_steps``); the schedule stays constant.

Schedules (``training.scheduler``) are diffusers' (``diffusers.optimization``): constant (with the warm-up
when ``warmup_steps`` > 0), constant_with_warmup, linear, cosine, cosine_with_restarts (``lr_cycles``),
polynomial (``lr_power``, to 0).  Warm-up rises linearly from 0 over ``warmup_steps``.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

import torch

from trainer.config import TrainingConfig
from trainer.errors import InputError


def build_optimizer(parameters: list[torch.nn.Parameter] | list[dict[str, Any]], training: TrainingConfig,
                    device_type: str) -> torch.optim.Optimizer:
    """``parameters``: the trained parameters, or torch's parameter groups (a group may set its own ``lr``)."""
    kind, lr, decay = training.optimizer, training.learning_rate, training.weight_decay
    if kind == "adamw":
        # foreach: one multi-tensor kernel per update instead of a Python loop over every LoRA tensor.  torch picks
        # it by itself on CUDA only; on the CPU it is the same arithmetic (bit-identical steps), just faster.
        return torch.optim.AdamW(parameters, lr=lr, weight_decay=decay, foreach=True)
    if kind == "adamw8bit":
        if device_type != "cuda":
            raise InputError("training.optimizer: adamw8bit needs a CUDA GPU; use adamw on this machine")
        import bitsandbytes as bnb

        return bnb.optim.AdamW8bit(parameters, lr=lr, weight_decay=decay)
    if kind == "prodigy":
        from prodigyopt import Prodigy

        # Bias correction and the warm-up safeguard, as the diffusion trainers run it (kohya's and
        # OneTrainer's recommended settings for Prodigy).
        return Prodigy(parameters, lr=lr, weight_decay=decay, use_bias_correction=True,
                       safeguard_warmup=training.warmup_steps > 0)
    if kind == "adafactor":
        return torch.optim.Adafactor(parameters, lr=lr, weight_decay=decay)
    if kind == "lion":
        from pytorch_optimizer import Lion

        return Lion(parameters, lr=lr, weight_decay=decay)
    if kind == "came":
        from pytorch_optimizer import CAME

        return CAME(parameters, lr=lr, weight_decay=decay)
    if kind == "adamw_schedulefree":
        from schedulefree import AdamWScheduleFree

        optimizer = AdamWScheduleFree(parameters, lr=lr, weight_decay=decay, warmup_steps=training.warmup_steps)
        optimizer.train()
        return optimizer
    raise ValueError(f"unknown optimizer {kind!r}")


def is_schedule_free(optimizer: torch.optim.Optimizer) -> bool:
    return hasattr(optimizer, "train") and hasattr(optimizer, "eval") and any(
        "train_mode" in group for group in optimizer.param_groups)


@contextlib.contextmanager
def averaged_weights(optimizer: torch.optim.Optimizer | None) -> Iterator[None]:
    """The weights to evaluate, sample and save with: a schedule-free optimizer's average, put in the model for
    the duration (and taken back after, so training goes on from where it was); any other optimizer's, as
    they are."""
    if optimizer is None or not is_schedule_free(optimizer):
        yield
        return
    # train() undoes eval() only up to rounding: the weights training goes on from are kept aside and put back
    # exactly, so a run that evaluated, sampled or saved goes on bit for bit as one that did not.
    parameters = [p for group in optimizer.param_groups for p in group["params"]]
    kept = [p.detach().to("cpu", copy=True) for p in parameters]
    optimizer.eval()
    try:
        yield
    finally:
        optimizer.train()
        with torch.no_grad():
            for parameter, value in zip(parameters, kept, strict=True):
                parameter.copy_(value)


def build_scheduler(optimizer: torch.optim.Optimizer, training: TrainingConfig) -> torch.optim.lr_scheduler.LambdaLR:
    kind = training.scheduler
    if is_schedule_free(optimizer):
        kind = "constant"  # schedule-free: no schedule, the optimizer warms up itself
    elif kind == "constant" and training.warmup_steps > 0:
        kind = "constant_with_warmup"
    if kind == "constant":  # diffusers' constant schedule, without importing diffusers (the toy network's)
        return torch.optim.lr_scheduler.LambdaLR(optimizer, lambda _: 1.0)
    from diffusers.optimization import get_scheduler

    options: dict[str, Any] = {"num_warmup_steps": training.warmup_steps, "num_training_steps": training.steps}
    if kind == "cosine_with_restarts":
        options["num_cycles"] = training.lr_cycles
    if kind == "polynomial":
        options["power"] = training.lr_power
    return get_scheduler(kind, optimizer, **options)


class Ema:
    """An exponential moving average of the trained weights (``training.ema_decay``), by diffusers' ``EMAModel``
    (its decay warms up as (1 + n) / (10 + n) until it reaches ``ema_decay``).  ``ema_on_cpu`` keeps the average
    in the computer's memory: each update then averages a CPU copy of the weights in (the GPU keeps one set)."""

    def __init__(self, parameters: list[torch.nn.Parameter], decay: float, on_cpu: bool) -> None:
        from diffusers.training_utils import EMAModel

        self.parameters, self.on_cpu = parameters, on_cpu
        self.model = EMAModel(self._sources(), decay=decay)

    def _sources(self) -> list[torch.nn.Parameter]:
        if not self.on_cpu:
            return self.parameters
        # EMAModel averages parameters that require grad, on their own device: CPU copies that do.
        return [torch.nn.Parameter(p.detach().to("cpu", copy=True)) for p in self.parameters]

    def update(self) -> None:
        self.model.step(self._sources())

    def state_dict(self) -> dict[str, Any]:
        return self.model.state_dict()

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.model.load_state_dict(state)


def make_ema(parameters: list[torch.nn.Parameter], training: TrainingConfig, logger: Any = None) -> Ema | None:
    if not training.ema_decay:
        return None
    if logger is not None:
        logger.info("EMA of the trained weights, decay %g, kept %s; samples use it, and its files are written to "
                    "output/ema beside the raw ones", training.ema_decay,
                    "in the computer's memory" if training.ema_on_cpu else "beside them")
    return Ema(parameters, training.ema_decay, training.ema_on_cpu)


@contextlib.contextmanager
def ema_weights(ema: Ema | None) -> Iterator[None]:
    """The EMA in the model for the duration; the trained weights put back exactly after."""
    if ema is None:
        yield
        return
    ema.model.store(ema.parameters)
    ema.model.copy_to(ema.parameters)
    try:
        yield
    finally:
        ema.model.restore(ema.parameters)

"""Learning-rate schedules shared by every training mode.

Warm-up rises linearly from 0 to the peak over ``warmup_steps``; after it the rate stays
(constant), falls linearly to 0 (linear) or follows half a cosine to 0 (cosine).
"""

from __future__ import annotations

import math

import torch

from trainer.config import TrainingConfig


def lr_factor(step: int, kind: str, warmup_steps: int, total_steps: int) -> float:
    """Multiplier of the peak learning rate for the step about to be taken (0-based)."""
    if warmup_steps > 0 and step < warmup_steps:
        return (step + 1) / warmup_steps
    if kind == "constant":
        return 1.0
    decay_steps = max(1, total_steps - warmup_steps)
    progress = min(1.0, (step - warmup_steps) / decay_steps)
    if kind == "linear":
        return 1.0 - progress
    if kind == "cosine":
        return 0.5 * (1.0 + math.cos(math.pi * progress))
    raise ValueError(f"unknown scheduler {kind!r}")


def build_scheduler(optimizer: torch.optim.Optimizer, training: TrainingConfig) -> torch.optim.lr_scheduler.LambdaLR:
    return torch.optim.lr_scheduler.LambdaLR(
        optimizer,
        lambda step: lr_factor(step, training.scheduler, training.warmup_steps, training.steps),
    )
